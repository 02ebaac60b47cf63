"""The recall solver's continuation step computed from its band structure (exact).

One backward step of :func:`ttamer.solvers.recall.solve_recall` computes, per ``lam``,

    C[g, s] = sum_s' T[s, s'] V'(min(X_g, lam l'(s')), s')          (G x K from G x K' and K x K')

where ``V'`` is the next stage's value table. Read column ``s'`` of the gathered table along
the grid rows ``g`` (``pos[s']`` is the row of ``lam l'(s')``, ``k[s']`` the last of the leading
rows where the next stage stops, ``V' = X``):

- rows ``g <= min(k, pos)``: ``V' = X_g`` (stop): their sum is ``X_g`` times the mass of the
  columns still in that region, a cumulative sum over the columns sorted by ``min(k, pos)``;
- rows ``g > pos``: ``V'(lam l'(s'), s')``, a constant: a cumulative sum over the columns sorted by
  ``pos``;
- the band ``k < g <= pos`` (the next stage would continue from a best loss between its index
  and its own loss): the only part that needs the table, a blocked product over the columns
  whose band meets each block of rows.

So the cost is O(K K' + G K) plus ``K`` per band entry instead of ``G K' K``: the dense matrix
product is replaced by one over the band. The band is empty when every state of the next stage
stops at once (costly stages, small ``lam``) and at most half the table when it never stops
before its own loss (``lam -> 1``). Results equal the dense step's up to the summation order.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

BLOCK_ROWS = 64


def leading_stop_rows(x: FloatArray, cont: FloatArray) -> IntArray:
    """Per ``(lam, state)``, the last row ``g`` such that every row up to it stops
    (``X <= C``, exactly, so that ``V = X`` there): ``x`` (L, G, 1), ``cont`` (L, G, K) -> (L, K);
    -1 when row 0 already continues."""
    stops = x <= cont
    first_continue = np.argmin(stops, axis=1)
    return np.where(stops.all(axis=1), cont.shape[1] - 1, first_continue - 1).astype(np.int64)


def _prefix_mass(trans: FloatArray, order: NDArray[np.intp], weights: FloatArray | None) -> FloatArray:
    """(K, K'+1): cumulative sums of the columns of ``trans`` (times ``weights``) in ``order``,
    with a leading column of zeros."""
    cols = trans[:, order] if weights is None else trans[:, order] * weights[order][None, :]
    out = np.zeros((trans.shape[0], order.size + 1))
    np.cumsum(cols, axis=1, out=out[:, 1:])
    return out


def _band_product(
    table: FloatArray, trans: FloatArray, first: IntArray, last: IntArray, out: FloatArray, block: int
) -> None:
    """``out[g] += sum over s' with first[s'] <= g <= last[s'] of table[g, s'] T[:, s']``."""
    n_rows = table.shape[0]
    for g0 in range(0, n_rows, block):
        g1 = min(n_rows, g0 + block)
        cols = np.flatnonzero((first < g1) & (last >= g0) & (first <= last))
        if cols.size == 0:
            continue
        rows = np.arange(g0, g1)[:, None]
        inside = (rows >= first[cols][None, :]) & (rows <= last[cols][None, :])
        band = np.where(inside, table[g0:g1][:, cols], 0.0)
        out[g0:g1] += band @ trans[:, cols].T


def banded_continuation(
    value: FloatArray,
    x: FloatArray,
    pos: NDArray[np.intp],
    trans: FloatArray,
    stop_rows: IntArray,
    block: int = BLOCK_ROWS,
) -> FloatArray:
    """The continuation table before costs, (L, G, K), from the next stage's value table
    ``value`` (L, G, K'), the scaled grid ``x`` (L, G, 1), the grid rows ``pos`` (K',) of the
    next stage's losses, its transition ``trans`` (K, K') and its leading stopping rows
    ``stop_rows`` (L, K') (:func:`leading_stop_rows`)."""
    n_lam, n_rows, _ = value.shape
    out = np.empty((n_lam, n_rows, trans.shape[0]))
    by_pos = np.argsort(pos, kind="stable")
    below = np.searchsorted(pos[by_pos], np.arange(n_rows), side="left")  # #{s': pos < g}
    cols = np.arange(pos.size)
    for j in range(n_lam):
        a = np.minimum(stop_rows[j], pos)
        by_a = np.argsort(-a, kind="stable")
        # #{s': a[s'] >= g}: columns whose stopping region still covers row g
        covering = pos.size - np.searchsorted(np.sort(a), np.arange(n_rows), side="left")
        np.multiply(x[j], _prefix_mass(trans, by_a, None)[:, covering].T, out=out[j])
        top = value[j, pos, cols]  # V'(lam l'(s'), s')
        out[j] += _prefix_mass(trans, by_pos, top)[:, below].T
        _band_product(value[j], trans, stop_rows[j] + 1, pos.astype(np.int64), out[j], block)
    return out
