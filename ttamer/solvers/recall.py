"""The optimal recall policy: the dynamic index (README: model; the paper's Theorem 4.5).

Backward induction over ``(b, s)`` with ``b`` on the loss support grid, for a vector of
trade-off weights ``lam`` at once. Per stage: one gather and one dense matrix product of shape
``(L*G, K_{i+1}) @ (K_{i+1}, K_i)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ttamer.errors import FieldError
from ttamer.model.chain import Chain, check_lambda
from ttamer.solvers.banded import banded_continuation, leading_stop_rows
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
    # X <= C (1 + tol) + tol, with the slack moved onto the small X array (no table temporary)
    x_slack = (x - TIE_TOLERANCE) / (1.0 + TIE_TOLERANCE)
    k = np.maximum(np.count_nonzero(x_slack <= cont, axis=1) - 1, 0)  # (L, K)
    return np.take_along_axis(np.broadcast_to(x, cont.shape), k[:, None, :], axis=1)[:, 0]


METHODS = ("dense", "banded")
ROWS = ("all", "reachable")


def stage_rows(chain: Chain, grid: FloatArray, rows: str) -> list[NDArray[np.intp]]:
    """The grid rows of each stage's table: every row (``"all"``) or only the values the best
    loss can take after that stage, 0 and the losses of stages ``0..i`` (``"reachable"``)."""
    if rows == "all":
        return [np.arange(grid.size)] * chain.n_stages
    seen = np.zeros(1)
    out = []
    for losses in chain.losses:
        seen = np.union1d(seen, losses)
        out.append(np.searchsorted(grid, seen).astype(np.intp))
    return out


def _gather_rows(
    value: FloatArray, here: NDArray[np.intp], there: NDArray[np.intp], pos: NDArray[np.intp]
) -> FloatArray:
    """``V'(min(X, lam l'(s')), s')`` on the rows ``here`` of this stage, from the next stage's
    table ``value`` (L, G', K') on its rows ``there`` (``here`` and ``pos`` are among them)."""
    if here.size == there.size == there[-1] + 1:  # every grid row: the plain gather, in place
        return gather_after_min(value, pos, inplace=True)
    top = value[..., np.searchsorted(there, pos), np.arange(pos.size)]  # (L, K')
    below = here[:, None] <= pos[None, :]
    return np.where(below, value[..., np.searchsorted(there, here), :], top[..., None, :])


LAMBDA_CHUNK_BYTES = 32 * 2**20  # lam values are solved in chunks whose value table fits this


def solve_recall(chain: Chain, lam: ArrayLike, method: str = "dense", rows: str = "all") -> RecallSolution:
    """Solve the recall problem exactly for every ``lam`` (scalar or vector in [0, 1]).

    ``method``: ``"dense"`` (one gather and one dense matrix product per stage) or
    ``"banded"`` (the same step from its band structure, :mod:`ttamer.solvers.banded`; equal up
    to summation order). ``rows``: ``"all"`` solves every stage on the whole loss grid;
    ``"reachable"`` (dense only) only on the best-loss values reachable after the stage
    (:func:`stage_rows`), which halves the work when stages have their own supports; the
    policy is the same on every reachable state, and the index is then the largest *reachable*
    stopping value."""
    if method not in METHODS:
        raise FieldError("method", f"must be one of {' | '.join(METHODS)}, got {method!r}")
    if rows not in ROWS or (rows == "reachable" and method != "dense"):
        raise FieldError("rows", f"must be all, or reachable with method=dense; got {rows!r} ({method})")
    lams = check_lambda(lam)
    grid = chain.support()
    pos = support_positions(chain, grid)
    where = stage_rows(chain, grid, rows)
    # every lam is solved independently: in chunks, so the tables stay cache-sized and the peak
    # memory is that of one chunk, whatever the number of lam values
    per_lam = 8 * grid.size * max(chain.n_states)
    size = max(1, LAMBDA_CHUNK_BYTES // per_lam)
    parts = [
        _solve_chunk(chain, lams[a : a + size], method, grid, pos, where) for a in range(0, lams.size, size)
    ]
    if len(parts) == 1:
        return parts[0]
    index = tuple(np.concatenate([p.index[i] for p in parts]) for i in range(chain.n_stages))
    return RecallSolution(lams, np.concatenate([p.value for p in parts]), index)


def _solve_chunk(
    chain: Chain,
    lams: FloatArray,
    method: str,
    grid: FloatArray,
    pos: tuple[NDArray[np.intp], ...],
    where: list[NDArray[np.intp]],
) -> RecallSolution:
    """:func:`solve_recall` for the weights ``lams`` (L,) at once, on the loss ``grid`` with the
    grid rows ``pos`` of every stage's losses and the rows ``where`` of every stage's table."""
    n = chain.n_stages
    x = lams[:, None, None] * grid[where[-1]][None, :, None]  # scaled best loss, (L, G, 1)
    value = np.repeat(x, chain.n_states[-1], axis=2)  # V_n(X, s) = X
    stop_rows = np.full((lams.size, chain.n_states[-1]), grid.size - 1, dtype=np.int64)
    index: list[FloatArray] = [np.full((lams.size, chain.n_states[-1]), np.inf)]
    for i in range(n - 2, -1, -1):
        x = lams[:, None, None] * grid[where[i]][None, :, None]
        if method == "dense":  # one gather and one matrix product (L*G, K_{i+1}) @ (K_{i+1}, K_i)
            nxt = _gather_rows(value, where[i], where[i + 1], pos[i + 1])
            del value  # at most two tables alive at a time
            cont = (nxt.reshape(-1, nxt.shape[-1]) @ chain.transitions[i].T).reshape(
                lams.size, x.shape[1], -1
            )
            del nxt
        else:
            cont = banded_continuation(value, x, pos[i + 1], chain.transitions[i], stop_rows)
            del value
        cont += ((1.0 - lams) * chain.costs[i + 1])[:, None, None]
        index.append(_largest_stopping_x(x, cont))
        if method == "banded":
            stop_rows = leading_stop_rows(x, cont)
        value = np.minimum(x, cont, out=cont)
    index.reverse()
    first = value[:, np.searchsorted(where[0], pos[0]), np.arange(chain.n_states[0])]  # (L, K_1)
    total = (1.0 - lams) * chain.costs[0] + first @ chain.initial
    return RecallSolution(lams, total, tuple(index))
