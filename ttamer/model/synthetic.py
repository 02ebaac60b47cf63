"""Seeded synthetic chains (README: workloads) and the lower-bound family (README: synthetic study).

States are confidence bins ``0..K-1`` (higher bin, more confident); a stage's loss table is the
error probability per bin, so losses lie in [0, 1]. Costs are positive and sum to 1 (the full
chain's cost), so expected costs read as fractions of the full chain."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ttamer.model.chain import Chain

FloatArray = NDArray[np.float64]

FAMILIES = ("improving", "overthinking", "independent", "correlated", "dirichlet")


@dataclass(frozen=True)
class SyntheticSpec:
    """One random chain: ``family`` in :data:`FAMILIES`, ``n_stages`` stages of ``n_states``."""

    family: str = "improving"
    n_stages: int = 4
    n_states: int = 5


def _banded(k: int, width: float, drift: float, rng: np.random.Generator) -> FloatArray:
    """Row-stochastic ``(k, k)``: from bin s, mass concentrated near bin s + drift."""
    s = np.arange(k)
    logits = -((s[None, :] - s[:, None] - drift) ** 2) / (2.0 * width**2)
    t = np.exp(logits) * rng.uniform(0.5, 1.5, size=(k, k))
    return t / t.sum(axis=1, keepdims=True)


def _losses(quality: FloatArray, k: int, rng: np.random.Generator) -> list[FloatArray]:
    """Per-stage error rate per confidence bin: ``quality[i]`` scaled by a decreasing profile."""
    profile = 2.0 * (k - np.arange(k)) / (k + 1)
    return [np.clip(q * profile * rng.uniform(0.7, 1.3, size=k), 0.0, 1.0) for q in quality]


def _costs(n: int, rng: np.random.Generator) -> FloatArray:
    c = rng.uniform(0.5, 1.5, size=n)
    return c / c.sum()


def random_chain(spec: SyntheticSpec, rng: np.random.Generator) -> Chain:
    """Draw one chain of the given family."""
    n, k = spec.n_stages, spec.n_states
    improving = np.sort(rng.uniform(0.03, 0.45, size=n))[::-1]
    initial = rng.dirichlet(np.full(k, 2.0))
    if spec.family == "improving":
        losses = _losses(improving, k, rng)
        trans = [_banded(k, 1.2, 0.5, rng) for _ in range(n - 1)]
    elif spec.family == "overthinking":
        # later stages are better on average but some are worse, and confident bins can drop
        losses = _losses(improving * rng.uniform(0.5, 2.0, size=n), k, rng)
        trans = [_banded(k, 2.0, rng.uniform(-1.0, 1.0), rng) for _ in range(n - 1)]
    elif spec.family == "independent":
        losses = _losses(improving, k, rng)
        trans = [np.tile(rng.dirichlet(np.full(k, 2.0)), (k, 1)) for _ in range(n - 1)]
    elif spec.family == "correlated":
        losses = _losses(improving, k, rng)
        trans = [_banded(k, 0.35, 0.0, rng) for _ in range(n - 1)]
    elif spec.family == "dirichlet":
        losses = [rng.uniform(0.0, 1.0, size=k) for _ in range(n)]
        trans = [rng.dirichlet(np.ones(k), size=k) for _ in range(n - 1)]
    else:
        raise ValueError(f"family: unknown synthetic family {spec.family!r}; choose from {FAMILIES}")
    name = f"{spec.family}-n{n}-k{k}"
    return Chain.build(losses, initial, trans, _costs(n, rng), name)


def random_chains(spec: SyntheticSpec, count: int, seed: int) -> list[Chain]:
    rng = np.random.default_rng(seed)
    return [random_chain(spec, rng) for _ in range(count)]


def shared_support_chain(n_stages: int, n_values: int, seed: int, sparsity: int = 0) -> Chain:
    """A large chain whose stages share one support of ``n_values`` loss values (benchmarks).

    Each stage has ``n_values`` states whose losses are a permutation of the shared support;
    transitions are dense random (or, with ``sparsity > 0``, banded of that half-width)."""
    rng = np.random.default_rng(seed)
    support = np.sort(rng.uniform(0.0, 1.0, size=n_values))
    losses = [rng.permutation(support) for _ in range(n_stages)]
    trans = []
    for _ in range(n_stages - 1):
        t = rng.random((n_values, n_values))
        if sparsity:
            i = np.arange(n_values)
            t *= np.abs(i[:, None] - i[None, :]) <= sparsity
        trans.append(t / t.sum(axis=1, keepdims=True))
    return Chain.build(
        losses, rng.dirichlet(np.ones(n_values)), trans, _costs(n_stages, rng), "shared-support"
    )


def per_stage_support_chain(n_stages: int, n_values: int, seed: int) -> Chain:
    """Like :func:`shared_support_chain`, but every stage draws its own ``n_values`` loss values
    (as fitted traces do), so the loss grid has about ``n_stages * n_values`` rows."""
    rng = np.random.default_rng(seed)
    losses = [rng.uniform(0.0, 1.0, size=n_values) for _ in range(n_stages)]
    trans = [rng.random((n_values, n_values)) for _ in range(n_stages - 1)]
    trans = [t / t.sum(axis=1, keepdims=True) for t in trans]
    return Chain.build(
        losses, rng.dirichlet(np.ones(n_values)), trans, _costs(n_stages, rng), "per-stage-support"
    )


# ------------------------------------------------------------------ lower-bound family


def lower_bound_chain(alpha: float, n_stages: int = 2, cost_scale: float = 0.0) -> Chain:
    """The Theorem 3.4 instance, generalised to ``n_stages >= 2`` and non-zero costs.

    Stages ``1..n-1`` are safe: one state, loss ``alpha**-2``. Stage ``n`` is a gamble: loss 0
    with probability ``1 - 1/alpha``, ``1/alpha`` otherwise, independent of the rest. Every
    stage costs ``cost_scale * alpha**-3 / n``. With ``n = 2, cost_scale = 0, lam = 1`` this is
    exactly the paper's instance. See :func:`lower_bound_values` for the closed forms."""
    if alpha <= 1:
        raise ValueError(f"alpha: must exceed 1, got {alpha}")
    if n_stages < 2:
        raise ValueError(f"n_stages: the family needs at least 2 stages, got {n_stages}")
    safe = [np.array([alpha**-2.0]) for _ in range(n_stages - 1)]
    gamble = np.array([0.0, 1.0 / alpha])
    trans = [np.ones((1, 1)) for _ in range(n_stages - 2)] + [np.array([[1.0 - 1.0 / alpha, 1.0 / alpha]])]
    costs = np.full(n_stages, cost_scale * alpha**-3.0 / n_stages)
    return Chain.build([*safe, gamble], [1.0], trans, costs, f"lower-bound-a{alpha:g}-n{n_stages}")


def lower_bound_values(alpha: float, n_stages: int, cost_scale: float, lam: float) -> tuple[float, float]:
    """Closed-form optimal objectives ``(no_recall, recall)`` of :func:`lower_bound_chain`.

    Safe stages carry no information, so a policy only chooses how far to go. Without recall,
    reaching the gamble has expected loss ``alpha**-2``, no better than stopping at once: the
    optimum stops after stage 1. With recall, running everything yields ``E[min] = alpha**-3``.
    With ``c = cost_scale*alpha**-3/n``: no-recall ``lam*alpha**-2 + (1-lam)*c``; recall the smaller
    of that and ``lam*alpha**-3 + (1-lam)*n*c``. For fixed ``lam > 0``, ``n``, ``cost_scale`` the
    ratio is ``(lam*alpha + (1-lam)*cost_scale/n) / (lam + (1-lam)*cost_scale)`` once alpha is
    large enough: it grows linearly in alpha, without bound."""
    c = cost_scale * alpha**-3.0 / n_stages
    stop_first = lam * alpha**-2.0 + (1.0 - lam) * c
    run_all = lam * alpha**-3.0 + (1.0 - lam) * n_stages * c
    return stop_first, min(stop_first, run_all)
