"""The prophet: knows every stage's state in advance and stops at the stage minimising
``lam*l_i(s_i) + (1-lam)*(c_1 + ... + c_i)``; a lower bound on every policy (README: model).

Forward propagation over ``(m, s)`` where ``m`` is the current minimiser: a row of a table of
distinct ``(value, stage)`` pairs sorted by value, then stage (ties keep the earlier stage).
Each row knows its stage's loss and cumulative cost, so the expected loss and cost come out of
the same single table. One dense matrix product per stage."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ttamer.model.chain import Chain, check_lambda
from ttamer.solvers.evaluate import PolicyEvaluation
from ttamer.solvers.grid import collapse_after_min

FloatArray = NDArray[np.float64]


def _distinct_rows(values: FloatArray, losses: FloatArray) -> tuple[FloatArray, NDArray[np.intp]]:
    """Distinct ``(value, loss)`` pairs of one stage (values tie across losses when lam = 0),
    sorted by value, and the row of each state."""
    rows, inv = np.unique(np.stack([values, losses], axis=1), axis=0, return_inverse=True)
    return rows, inv.reshape(-1)


def _merge_rows(
    keys: tuple[FloatArray, FloatArray, FloatArray], new: tuple[FloatArray, FloatArray, FloatArray]
) -> tuple[tuple[FloatArray, FloatArray, FloatArray], NDArray[np.intp]]:
    """Merge row keys ``(value, stage, loss)``; returns the merged keys and, for every old and
    new row, its position in the merged order."""
    merged = tuple(np.concatenate([a, b]) for a, b in zip(keys, new, strict=True))
    order = np.lexsort((merged[1], merged[0]))
    where = np.empty_like(order)
    where[order] = np.arange(order.size)
    return (merged[0][order], merged[1][order], merged[2][order]), where


def _prophet_one(chain: Chain, lam: float) -> tuple[float, float, float]:
    cum = np.cumsum(chain.costs)
    vals = [lam * x + (1.0 - lam) * cum[i] for i, x in enumerate(chain.losses)]
    cap = vals[0].max()  # the running minimum never exceeds the first stage's value
    rows0, inv0 = _distinct_rows(vals[0], chain.losses[0])
    keys = (rows0[:, 0], np.zeros(rows0.shape[0]), rows0[:, 1])
    mass = np.zeros((rows0.shape[0], chain.n_states[0]))
    mass[inv0, np.arange(chain.n_states[0])] = chain.initial
    for i, t in enumerate(chain.transitions):
        moved = mass @ t
        vi = vals[i + 1]
        live = vi <= cap  # larger values can never beat the first stage's value
        rows, inv = _distinct_rows(vi[live], chain.losses[i + 1][live])
        new = (rows[:, 0], np.full(rows.shape[0], i + 1.0), rows[:, 1])
        keys, where = _merge_rows(keys, new)
        mass = np.zeros((keys[0].size, t.shape[1]))
        mass[where[: moved.shape[0]]] = moved
        pos = np.full(t.shape[1], keys[0].size - 1)  # last row: collapsing there changes nothing
        pos[live] = where[moved.shape[0] + inv]
        mass = collapse_after_min(mass, pos)
    row_mass = mass.sum(axis=1)
    stage_cost = cum[keys[1].astype(np.intp)]
    return float(row_mass @ keys[0]), float(row_mass @ keys[2]), float(row_mass @ stage_cost)


def solve_prophet(chain: Chain, lam: ArrayLike) -> PolicyEvaluation:
    """Prophet value, expected loss and expected cost for each ``lam``. The stop distribution
    is not tracked (NaN)."""
    lams = check_lambda(lam)
    out = np.array([_prophet_one(chain, float(x)) for x in lams]).reshape(-1, 3)
    nan = np.full((lams.size, chain.n_stages), np.nan)
    return PolicyEvaluation(lams, out[:, 1], out[:, 2], out[:, 0], nan)
