"""Exact evaluation of policies on a chain: expected loss, expected cost, objective, and the
distribution of the stage at which the policy stops. Forward propagation of probability mass,
one dense matrix product per stage."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ttamer.model.chain import Chain, check_lambda
from ttamer.solvers.grid import collapse_after_min, support_positions
from ttamer.solvers.no_recall import NoRecallSolution
from ttamer.solvers.policy import ChainPolicy
from ttamer.solvers.recall import RecallSolution

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True)
class PolicyEvaluation:
    """Exact performance of ``L`` policies (or one policy at ``L`` trade-off weights).

    ``expected_loss``, ``expected_cost`` (cost units of the chain), ``objective``
    (= lam*loss + (1-lam)*cost): shape ``(L,)``. ``stop_distribution``: ``(L, n)``, entry
    ``i`` the probability of stopping after stage ``i`` (0-based), i.e. of running ``i+1``."""

    lam: FloatArray
    expected_loss: FloatArray
    expected_cost: FloatArray
    objective: FloatArray
    stop_distribution: FloatArray

    def row(self, j: int = 0) -> dict[str, float]:
        return {
            "lam": float(self.lam[j]),
            "objective": float(self.objective[j]),
            "expected_loss": float(self.expected_loss[j]),
            "expected_cost": float(self.expected_cost[j]),
        }


def _result(lams: FloatArray, loss: FloatArray, cost: FloatArray, dist: FloatArray) -> PolicyEvaluation:
    return PolicyEvaluation(lams, loss, cost, lams * loss + (1.0 - lams) * cost, dist)


def _forward_on_grid(
    chain: Chain, lams: FloatArray, stop_table: Callable[[int, FloatArray], BoolArray], recall: bool
) -> PolicyEvaluation:
    """Propagate mass over ``(best loss row g, state s)``; ``stop_table(i, grid)`` gives
    ``(L, G, K_i)`` stop decisions."""
    grid = chain.support()
    pos = support_positions(chain, grid)
    n, n_lam = chain.n_stages, lams.size
    mass = np.zeros((n_lam, grid.size, chain.n_states[0]))
    mass[:, pos[0], np.arange(chain.n_states[0])] = chain.initial
    loss = np.zeros(n_lam)
    cost = np.full(n_lam, chain.costs[0])
    dist = np.zeros((n_lam, n))
    for i in range(n):
        stop = (
            np.ones_like(mass, dtype=bool) if i == n - 1 else np.broadcast_to(stop_table(i, grid), mass.shape)
        )
        stopped = np.where(stop, mass, 0.0)
        dist[:, i] = stopped.sum(axis=(1, 2))
        if recall:
            loss += stopped.sum(axis=2) @ grid
        else:
            loss += stopped.sum(axis=1) @ chain.losses[i]
        if i == n - 1:
            break
        going = (mass - stopped).reshape(-1, chain.n_states[i]) @ chain.transitions[i]
        going = going.reshape(n_lam, grid.size, -1)
        cost += chain.costs[i + 1] * going.sum(axis=(1, 2))
        mass = collapse_after_min(going, pos[i + 1])
    return _result(lams, loss, cost, dist)


def evaluate_policy(chain: Chain, policy: ChainPolicy, lam: float) -> PolicyEvaluation:
    """Exact performance of any :class:`ChainPolicy` at one trade-off weight (``L = 1``)."""
    lams = check_lambda(lam)
    if lams.size != 1:
        raise ValueError("evaluate_policy takes one lam; use the batched evaluators for vectors")
    states = [np.arange(k)[None, :] for k in chain.n_states]

    def table(i: int, grid: FloatArray) -> BoolArray:
        return np.asarray(policy.stop(i, grid[:, None], states[i]), dtype=bool)[None]

    return _forward_on_grid(chain, lams, table, policy.recall)


def evaluate_recall_solution(chain: Chain, sol: RecallSolution) -> PolicyEvaluation:
    """Exact performance of the index policies of ``sol``, all ``L`` weights at once."""

    def table(i: int, grid: FloatArray) -> BoolArray:
        return sol.lam[:, None, None] * grid[None, :, None] <= sol.index[i][:, None, :]

    return _forward_on_grid(chain, sol.lam, table, recall=True)


def evaluate_stop_sets(chain: Chain, stop_sets: tuple[BoolArray, ...], lam: ArrayLike) -> PolicyEvaluation:
    """Exact performance of ``M`` recall-free rules given by stop sets ``stop_sets[i]`` of shape
    ``(M, K_i)`` (the last stage always stops). ``lam``: scalar or shape ``(M,)``."""
    m = stop_sets[0].shape[0]
    lams = np.broadcast_to(check_lambda(lam), (m,)).astype(np.float64)
    n = chain.n_stages
    mass = np.broadcast_to(chain.initial, (m, chain.n_states[0])).copy()
    loss, cost, dist = np.zeros(m), np.full(m, chain.costs[0]), np.zeros((m, n))
    for i in range(n):
        stop = np.ones_like(mass, dtype=bool) if i == n - 1 else stop_sets[i]
        stopped = np.where(stop, mass, 0.0)
        dist[:, i] = stopped.sum(axis=1)
        loss += stopped @ chain.losses[i]
        if i < n - 1:
            mass = (mass - stopped) @ chain.transitions[i]
            cost += chain.costs[i + 1] * mass.sum(axis=1)
    return _result(lams, loss, cost, dist)


def evaluate_no_recall_solution(chain: Chain, sol: NoRecallSolution) -> PolicyEvaluation:
    return evaluate_stop_sets(chain, sol.stop, sol.lam)
