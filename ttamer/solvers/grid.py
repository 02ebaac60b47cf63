"""The finite grid of "best loss so far" values on which recall policies are solved.

With recall the state of the decision problem after stage ``i`` is ``(b, s_i)`` where ``b`` is
the smallest loss seen. ``b`` only takes values in the chain's loss support, so every table
over ``b`` is indexed by the sorted support ``grid`` (0 prepended, shape ``(G,)``).
Running stage ``i+1`` in state ``s'`` turns ``b`` into ``min(b, loss_{i+1}(s'))``: on the sorted
grid, row ``g`` goes to row ``min(g, pos[s'])``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ttamer.model.chain import Chain

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]


def support_positions(chain: Chain, grid: FloatArray) -> tuple[IntArray, ...]:
    """For each stage, the row of ``grid`` holding each state's loss: shapes ``(K_i,)``."""
    return tuple(np.searchsorted(grid, x).astype(np.intp) for x in chain.losses)


def gather_after_min(table: FloatArray, pos: IntArray, inplace: bool = False) -> FloatArray:
    """``out[..., g, s'] = table[..., min(g, pos[s']), s']`` for a table of shape ``(..., G, K')``.

    With ``inplace`` the rows above ``pos[s']`` are overwritten in ``table`` itself (no new
    table; the caller must not need ``table`` any more)."""
    # rows above pos[s'] all take row pos[s']: a streaming select, not a random-access gather
    top = table[..., pos, np.arange(pos.size)][..., None, :]  # (..., 1, K')
    above = np.arange(table.shape[-2])[:, None] > pos[None, :]
    if inplace:
        np.copyto(table, top, where=above)
        return table
    return np.where(above, top, table)


def collapse_after_min(mass: FloatArray, pos: IntArray) -> FloatArray:
    """Push probability mass of shape ``(..., G, K')`` along ``b -> min(b, loss(s'))``.

    Rows ``g > pos[s']`` are added into row ``pos[s']``; rows below are unchanged."""
    g = np.arange(mass.shape[-2])[:, None]
    suffix = np.flip(np.cumsum(np.flip(mass, axis=-2), axis=-2), axis=-2)
    out = np.where(g < pos[None, :], mass, 0.0)
    cols = np.arange(pos.size)
    out[..., pos, cols] = suffix[..., pos, cols]
    return out
