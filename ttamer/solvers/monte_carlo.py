"""Monte Carlo simulation of a policy on a chain, vectorised over sampled requests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ttamer.model.chain import Chain, check_lambda
from ttamer.solvers.policy import ChainPolicy

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class MonteCarloResult:
    """Sample means and their standard errors over ``n_samples`` simulated requests."""

    lam: float
    n_samples: int
    objective: float
    objective_se: float
    expected_loss: float
    expected_loss_se: float
    expected_cost: float
    expected_cost_se: float
    stop_distribution: FloatArray


def sample_states(chain: Chain, n_samples: int, rng: np.random.Generator) -> IntArray:
    """Sample state paths: shape ``(n_samples, n)``, column ``i`` the state of stage ``i``."""
    paths = np.empty((n_samples, chain.n_stages), dtype=np.int64)
    paths[:, 0] = _draw(np.cumsum(chain.initial)[None, :], np.zeros(n_samples, dtype=np.int64), rng)
    for i, t in enumerate(chain.transitions):
        paths[:, i + 1] = _draw(np.cumsum(t, axis=1), paths[:, i], rng)
    return paths


def _draw(cum_rows: FloatArray, rows: IntArray, rng: np.random.Generator) -> IntArray:
    u = rng.random(rows.size)
    out = np.empty(rows.size, dtype=np.int64)
    for r in np.unique(rows):  # loop over distinct rows (states), not samples
        sel = rows == r
        # scale u by the row total: rows may sum to 1 only within the validation tolerance
        out[sel] = np.searchsorted(cum_rows[r], u[sel] * cum_rows[r, -1], side="right")
    return np.minimum(out, cum_rows.shape[1] - 1)


def simulate(
    chain: Chain, policy: ChainPolicy, lam: float, n_samples: int, seed: int = 0
) -> MonteCarloResult:
    """Simulate ``policy`` on ``n_samples`` requests drawn from ``chain``."""
    lam_v = float(check_lambda(lam)[0])
    rng = np.random.default_rng(seed)
    paths = sample_states(chain, n_samples, rng)
    n = chain.n_stages
    losses = np.stack([chain.losses[i][paths[:, i]] for i in range(n)], axis=1)  # (N, n)
    active = np.ones(n_samples, dtype=bool)
    best = np.full(n_samples, np.inf)
    stopped_at = np.full(n_samples, n - 1)
    returned_loss = np.zeros(n_samples)
    for i in range(n):
        best = np.minimum(best, losses[:, i])
        stop = active & (np.asarray(policy.stop(i, best, paths[:, i]), dtype=bool) | (i == n - 1))
        returned_loss[stop] = best[stop] if policy.recall else losses[stop, i]
        stopped_at[stop] = i
        active &= ~stop
    cost = np.cumsum(chain.costs)[stopped_at]
    obj = lam_v * returned_loss + (1.0 - lam_v) * cost
    se = np.sqrt(n_samples)
    dist = np.bincount(stopped_at, minlength=n) / n_samples
    return MonteCarloResult(
        lam_v,
        n_samples,
        float(obj.mean()),
        float(obj.std(ddof=1) / se),
        float(returned_loss.mean()),
        float(returned_loss.std(ddof=1) / se),
        float(cost.mean()),
        float(cost.std(ddof=1) / se),
        dist,
    )
