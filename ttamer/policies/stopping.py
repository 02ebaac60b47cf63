"""Vectorised stopping primitives shared by the trace policies.

Every function works on whole arrays of samples (``N``) and knob values (``M``); the Python
loops are over stages (``n``) and over blocks of :data:`BLOCK` samples, so that the (M, block)
work arrays stay in cache and no (M, N, n) array is ever built: the only (M, N) arrays are the
results. Stage indices are 0-based.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
G = TypeVar("G", bound=np.generic)

BLOCK = 4096  # samples per block


def sample_blocks(n_samples: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive blocks of at most :data:`BLOCK` samples."""
    for a in range(0, n_samples, BLOCK):
        yield a, min(a + BLOCK, n_samples)


def _counter(shape: tuple[int, int], n_stages: int) -> NDArray[np.integer]:
    """A zeroed array able to count up to ``n_stages`` (uint8 when it fits: less to move)."""
    return np.zeros(shape, dtype=np.uint8 if n_stages <= np.iinfo(np.uint8).max else np.int64)


def leading_no_exit(
    n_knobs: int, n_rows: int, n_stages: int, exits: Callable[[int], NDArray[np.bool_]]
) -> NDArray[np.integer]:
    """For one block of ``n_rows`` samples: (n_rows, M) the number of leading stages whose exit
    test fails, at most ``n - 1`` (the stop stage: the last stage always exits).

    ``exits(i)``: (n_rows, M) whether stage ``i < n - 1`` exits; once every (sample, knob)
    pair has exited, no later stage is asked."""
    running = np.ones((n_rows, n_knobs), dtype=bool)  # no exit so far
    count = _counter((n_rows, n_knobs), n_stages)
    for i in range(n_stages - 1):
        running &= ~exits(i)
        if not running.any():
            break
        count += running
    return count


def _block_exits(
    exits: Callable[[int, int, int], NDArray[np.bool_]], a: int, b: int, i: int
) -> NDArray[np.bool_]:
    return exits(i, a, b)


def first_exit(
    n_knobs: int, n_samples: int, n_stages: int, exits: Callable[[int, int, int], NDArray[np.bool_]]
) -> IntArray:
    """Stop at the first stage whose exit test passes, the last stage when none does: (M, N).

    ``exits(i, a, b)``: (b - a, M) whether stage ``i < n - 1`` exits, for the samples ``a:b``
    and every knob value (the last stage always exits, so it is never asked). Counted block
    by block with :func:`leading_no_exit`; equal to ``first_true`` of the stacked tests."""
    stop = np.empty((n_knobs, n_samples), dtype=np.int64)
    for a, b in sample_blocks(n_samples):
        stop[:, a:b] = leading_no_exit(n_knobs, b - a, n_stages, partial(_block_exits, exits, a, b)).T
    return stop


def first_at_least(score: ArrayLike, thresholds: ArrayLike) -> IntArray:
    """Stop at the first stage whose score is ``>= t``, the last stage when there is none.

    ``score``: (N, n); ``thresholds``: (M,) -> (M, N). The first stage with ``score >= t`` is
    the number of stages before it whose running maximum is still ``< t`` (the running maximum
    is non-decreasing), counted block by block of samples."""
    return _first_at_least(score, thresholds, False)[0]


def first_at_least_with_argmax(score: ArrayLike, thresholds: ArrayLike) -> tuple[IntArray, IntArray]:
    """:func:`first_at_least` and, (M, N), the stage of the largest score among the stages run
    (earliest on ties): ``at_stage(running_argmax(score), stop)``, block by block."""
    stop, best = _first_at_least(score, thresholds, True)
    assert best is not None
    return stop, best


def _first_at_least(
    score: ArrayLike, thresholds: ArrayLike, argmax: bool
) -> tuple[IntArray, IntArray | None]:
    values = np.asarray(score)
    t = np.asarray(thresholds, dtype=np.float64)[:, None]
    n_samples, n = values.shape
    stop = np.empty((t.shape[0], n_samples), dtype=np.int64)
    best = np.empty((t.shape[0], n_samples), dtype=np.int64) if argmax else None
    below = np.empty((t.shape[0], min(n_samples, BLOCK)), dtype=bool)
    for a, b in sample_blocks(n_samples):
        block = np.asarray(values[a:b], dtype=np.float64)
        running = np.maximum.accumulate(block, axis=1).T  # (n, w)
        count = _counter((t.shape[0], b - a), n)
        flag = below[:, : b - a]
        for i in range(n - 1):
            np.less(running[i], t, out=flag)
            if not flag.any():  # the running maximum only grows: no later stage is below either
                break
            count += flag
        stop[:, a:b] = count
        if best is not None:
            best[:, a:b] = np.take_along_axis(running_argmax(block), count.T, axis=1).T
    return stop, best


def running_argmax(values: NDArray[np.floating]) -> IntArray:
    """(N, n) -> (N, n): the stage of the largest value among stages ``0..i`` (earliest on ties)."""
    v = np.asarray(values, dtype=np.float64)
    best = np.maximum.accumulate(v, axis=1)
    improves = np.ones(v.shape, dtype=bool)
    np.greater(v[:, 1:], best[:, :-1], out=improves[:, 1:])
    del best
    stages = np.where(improves, np.arange(v.shape[1], dtype=np.int64)[None, :], np.int64(0))
    del improves
    return np.maximum.accumulate(stages, axis=1, out=stages)


def running_argmin(values: NDArray[np.floating]) -> IntArray:
    """(N, n) -> (N, n): the stage of the smallest value among stages ``0..i`` (earliest on ties)."""
    return running_argmax(-np.asarray(values, dtype=np.float64))


def at_stage(table: NDArray[G], stage: IntArray) -> NDArray[G]:
    """``table[k, stage[m, k]]``: per-sample values (N, n) read at stages (M, N) -> (M, N)."""
    out = np.empty(stage.shape, dtype=table.dtype)
    rows = np.arange(min(table.shape[0], BLOCK))[None, :]
    for a, b in sample_blocks(table.shape[0]):
        out[:, a:b] = table[a:b][rows[:, : b - a], stage[:, a:b]]
    return out
