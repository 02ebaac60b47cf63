"""The optimal recall policy: the dynamic index of SPEC §1.1 (the paper's Theorem 4.5).

Backward induction over ``(b, s)`` with ``b`` on the loss support grid, for a vector of
trade-off weights ``lam`` at once. Per stage: one gather and one dense matrix product of shape
``(L*G, K_{i+1}) @ (K_{i+1}, K_i)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ttamer.chain import Chain, check_lambda
from ttamer.solvers.grid import gather_after_min, support_positions

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class RecallIndexPolicy:
    """Stop after stage ``i`` iff ``lam * best_loss <= index[i][s_i]``; return the best stage.

    ``index[i]`` has shape ``(K_i,)`` in scaled-loss units (``lam`` times the loss): the largest
    value of ``X = lam * best loss``, among the values ``X`` can take (0 and ``lam`` times every
    loss of the chain), at which stopping is optimal. The last stage's entries are ``+inf``.
    Deciding costs one comparison per stage."""

    lam: float
    index: tuple[FloatArray, ...]
    recall: bool = True

    def stop(self, stage: int, best_loss: FloatArray, state: NDArray[np.int64]) -> NDArray[np.bool_]:
        return np.asarray(self.lam * best_loss <= self.index[stage][state])

    def run(self, states: ArrayLike, losses: ArrayLike) -> tuple[int, int]:
        """Online use on one request: ``states[i]`` and ``losses[i]`` are revealed stage by stage.

        Returns ``(stages_run, returned_stage)`` (0-based returned stage)."""
        st = np.asarray(states)
        ls = np.asarray(losses, dtype=np.float64)
        best, arg = np.inf, 0
        for i in range(len(self.index)):
            if ls[i] < best:
                best, arg = float(ls[i]), i
            if self.lam * best <= self.index[i][st[i]]:
                return i + 1, arg
        return len(self.index), arg


@dataclass(frozen=True)
class RecallSolution:
    """Optimal recall values and indices for each ``lam[j]``.

    ``value``: shape ``(L,)``, the optimal objective J*. ``index[i]``: shape ``(L, K_i)``."""

    lam: FloatArray
    value: FloatArray
    index: tuple[FloatArray, ...]

    def policy(self, j: int = 0) -> RecallIndexPolicy:
        return RecallIndexPolicy(float(self.lam[j]), tuple(x[j] for x in self.index))


TIE_TOLERANCE = 1e-12


def _largest_stopping_x(x: FloatArray, cont: FloatArray) -> FloatArray:
    """The index: the largest grid value ``X`` at which stopping is optimal (``X <= C(X)``;
    ties stop), per ``(lam, state)``.

    ``x``: scaled grid, shape ``(L, G, 1)``; ``cont``: continuation values ``C``, shape
    ``(L, G, K)``. ``X - C(X)`` is non-decreasing in ``X`` (``C`` has slope at most 1), so the
    stopping rows are a prefix; row 0 (``X = 0``) always stops since ``C >= 0``."""
    stops = x <= cont * (1.0 + TIE_TOLERANCE) + TIE_TOLERANCE  # cont >= 0: relative + absolute slack
    k = np.maximum(stops.sum(axis=1) - 1, 0)  # (L, K)
    return np.take_along_axis(np.broadcast_to(x, cont.shape), k[:, None, :], axis=1)[:, 0]


def solve_recall(chain: Chain, lam: ArrayLike) -> RecallSolution:
    """Solve the recall problem exactly for every ``lam`` (scalar or vector in [0, 1])."""
    lams = check_lambda(lam)
    grid = chain.support()
    pos = support_positions(chain, grid)
    n = chain.n_stages
    x = lams[:, None, None] * grid[None, :, None]  # scaled best loss, (L, G, 1)
    value = np.repeat(x, chain.n_states[-1], axis=2)  # V_n(X, s) = X
    index: list[FloatArray] = [np.full((lams.size, chain.n_states[-1]), np.inf)]
    for i in range(n - 2, -1, -1):
        nxt = gather_after_min(value, pos[i + 1])  # V_{i+1}(min(X, lam*l_{i+1}(s')), s')
        del value
        k_next = nxt.shape[-1]
        cont = (nxt.reshape(-1, k_next) @ chain.transitions[i].T).reshape(lams.size, grid.size, -1)
        del nxt
        cont += ((1.0 - lams) * chain.costs[i + 1])[:, None, None]
        index.append(_largest_stopping_x(x, cont))
        value = np.minimum(x, cont, out=cont)
    index.reverse()
    first = value[:, pos[0], np.arange(chain.n_states[0])]  # (L, K_1)
    total = (1.0 - lams) * chain.costs[0] + first @ chain.initial
    return RecallSolution(lams, total, tuple(index))
