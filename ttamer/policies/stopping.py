"""Vectorised stopping primitives shared by the trace policies.

Every function works on whole arrays of samples (``N``) and knob values (``M``); the only
Python loops are over stages (``n``). Stage indices are 0-based.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
G = TypeVar("G", bound=np.generic)


def first_at_least(score: ArrayLike, thresholds: ArrayLike) -> IntArray:
    """Stop at the first stage whose score is ``>= t``, the last stage when there is none.

    ``score``: (N, n); ``thresholds``: (M,) -> (M, N). The first stage with ``score >= t`` is
    the number of stages before it whose running maximum is still ``< t`` (the running maximum
    is non-decreasing), so no (M, N, n) array is built."""
    running = np.maximum.accumulate(np.asarray(score, dtype=np.float64), axis=1)
    t = np.asarray(thresholds, dtype=np.float64)[:, None]
    stop = np.zeros((t.shape[0], running.shape[0]), dtype=np.int64)
    for i in range(running.shape[1] - 1):
        stop += running[None, :, i] < t
    return stop


def running_argmax(values: NDArray[np.floating]) -> IntArray:
    """(N, n) -> (N, n): the stage of the largest value among stages ``0..i`` (earliest on ties)."""
    v = np.asarray(values, dtype=np.float64)
    best = np.maximum.accumulate(v, axis=1)
    improves = np.ones(v.shape, dtype=bool)
    improves[:, 1:] = v[:, 1:] > best[:, :-1]
    stages = np.where(improves, np.arange(v.shape[1])[None, :], 0)
    return np.maximum.accumulate(stages, axis=1).astype(np.int64)


def running_argmin(values: NDArray[np.floating]) -> IntArray:
    """(N, n) -> (N, n): the stage of the smallest value among stages ``0..i`` (earliest on ties)."""
    return running_argmax(-np.asarray(values, dtype=np.float64))


def at_stage(table: NDArray[G], stage: IntArray) -> NDArray[G]:
    """``table[k, stage[m, k]]``: per-sample values (N, n) read at stages (M, N) -> (M, N)."""
    return table[np.arange(table.shape[0])[None, :], stage]
