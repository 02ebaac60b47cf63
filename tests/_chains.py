"""Random chain instances shared by the tests (generation only: no solver code here).

The generator deliberately produces awkward instances: tied and zero losses, transition rows
and initial distributions with zero entries, zero costs.
"""

from __future__ import annotations

import numpy as np

from ttamer.model.chain import Chain

TIE_LEVELS = np.array([0.0, 0.25, 0.5, 1.0])


def random_distribution(rng: np.random.Generator, k: int, zero_prob: float = 0.3) -> np.ndarray:
    """A Dirichlet vector of length ``k``, some entries zeroed (at least one stays positive)."""
    p = rng.dirichlet(np.full(k, rng.choice([0.3, 1.0, 3.0])))
    if k > 1 and rng.random() < 0.5:
        keep = rng.random(k) >= zero_prob
        keep[rng.integers(k)] = True
        p = np.where(keep, p, 0.0)
    if p.sum() <= 0:  # Dirichlet underflow with tiny concentration: fall back to a point mass
        p = np.zeros(k)
        p[rng.integers(k)] = 1.0
    return p / p.sum()


def random_losses(rng: np.random.Generator, k: int, tie_mode: bool) -> np.ndarray:
    if tie_mode:
        return rng.choice(TIE_LEVELS, size=k)
    x = rng.random(k)
    return np.where(rng.random(k) < 0.15, 0.0, x)


def random_costs(rng: np.random.Generator, n: int) -> np.ndarray:
    mode = rng.integers(4)
    if mode == 0:
        return np.zeros(n)
    c = rng.random(n) * rng.choice([0.05, 0.3, 1.0])
    if mode == 1:
        c = np.where(rng.random(n) < 0.4, 0.0, c)
    return c


def random_chain(rng: np.random.Generator, n: int, ks: list[int] | np.ndarray) -> Chain:
    """A random chain with ``n`` stages and ``ks[i]`` states at stage ``i``."""
    tie_mode = bool(rng.random() < 0.4)
    losses = [random_losses(rng, int(k), tie_mode) for k in ks]
    initial = random_distribution(rng, int(ks[0]))
    transitions = [
        np.stack([random_distribution(rng, int(ks[i + 1])) for _ in range(int(ks[i]))]) for i in range(n - 1)
    ]
    return Chain.build(losses, initial, transitions, random_costs(rng, n), name="random")


def random_sized_chain(rng: np.random.Generator, n_max: int, k_max: int) -> Chain:
    n = int(rng.integers(1, n_max + 1))
    return random_chain(rng, n, rng.integers(1, k_max + 1, size=n))


def assert_close(actual, expected, tol: float = 1e-12, what: str = "") -> None:
    """Relative-plus-absolute closeness: ``|a - e| <= tol * (1 + |e|)`` elementwise."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    ok = np.abs(a - e) <= tol * (1.0 + np.abs(e))
    assert ok.all(), f"{what}: got {a}, expected {e} (tol {tol:g})"
