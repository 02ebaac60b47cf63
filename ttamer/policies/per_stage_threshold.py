"""``per_stage_threshold``: Apparate-style per-exit confidence thresholds, tuned greedily on the
fit split. Knob = the accuracy budget, in accuracy points (percent) below the last stage.

Stage ``i < n-1`` exits when ``conf_i >= theta_i``; the last stage always exits. Tuning starts
from "never exit early" (every ``theta_i = +inf``). A *move* lowers one stage's threshold to
its next candidate: the candidates of stage ``i`` are the distinct quantiles (``n_levels + 1``
evenly spaced levels, 0 and 1 included) of that stage's fit confidence, taken in decreasing
order. Each round evaluates every stage's next move on the fit split at once, keeps the moves
that leave fit accuracy ``>=`` the last stage's fit accuracy minus the budget, and takes the
one with the largest cost saving per accuracy point lost (a move that loses nothing has ratio
``+inf``); ties go to the larger saving, then to the earlier stage. It stops when no move is
feasible (or none is left).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ttamer.errors import FieldError
from ttamer.policies.base import Decisions, ScoringContext, first_true
from ttamer.traces import Trace

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

DEFAULT_BUDGETS: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0)
FEASIBILITY_TOLERANCE = 1e-9  # in correct-sample counts


@dataclass(frozen=True)
class TunedThresholds:
    """One budget's tuning result.

    ``thresholds``: (n,) confidence thresholds (``+inf`` = never exits, the last is ``-inf``).
    ``candidates[i]``: (C_i,) stage ``i``'s candidate thresholds, decreasing (``i < n-1``).
    ``steps``: (n-1,) how many candidates each stage moved through (0 = still ``+inf``).
    ``fit_accuracy``: fit-split accuracy with these thresholds (fraction).
    ``moves``: the stage lowered at each greedy step, in order (0-based)."""

    budget: float
    thresholds: FloatArray
    candidates: tuple[FloatArray, ...]
    steps: IntArray
    fit_accuracy: float
    moves: tuple[int, ...]


def stage_candidates(conf: FloatArray, n_levels: int) -> tuple[FloatArray, ...]:
    """Decreasing distinct quantiles of each non-last stage's confidence: conf (N, n) -> n-1 arrays."""
    levels = np.linspace(0.0, 1.0, n_levels + 1)
    return tuple(np.unique(np.quantile(conf[:, i], levels))[::-1].copy() for i in range(conf.shape[1] - 1))


def thresholds_at(candidates: tuple[FloatArray, ...], steps: IntArray) -> FloatArray:
    """(n,) thresholds after ``steps[i]`` moves at each stage (``+inf`` before any, ``-inf`` last)."""
    early = [c[s - 1] if s > 0 else np.inf for c, s in zip(candidates, steps, strict=True)]
    return np.asarray([*early, -np.inf], dtype=np.float64)


def exit_stages(conf: FloatArray, thresholds: FloatArray) -> IntArray:
    """Stop stages (M, N) for threshold vectors (M, n) on confidences (N, n)."""
    return first_true(conf[None, :, :] >= thresholds[:, None, :])


@dataclass(frozen=True)
class _Bands:
    """Per non-last stage ``j``: ``order[j]`` (N,) the fit samples by decreasing confidence, and
    ``bounds[j]`` (C_j + 1,) with ``bounds[j][s]`` = how many have ``conf >= candidates[j][s-1]``
    (``bounds[j][0] = 0``). Lowering stage ``j`` from step ``s`` to ``s + 1`` can only move the
    samples ``order[j][bounds[j][s]:bounds[j][s+1]]``: those above the current threshold
    already stop at ``j`` or earlier."""

    order: tuple[IntArray, ...]
    bounds: tuple[IntArray, ...]

    def band(self, j: int, step: int) -> IntArray:
        """The samples the move from ``step`` to ``step + 1`` at stage ``j`` may move (none past the end)."""
        b = self.bounds[j]
        return self.order[j][b[step] : b[step + 1]] if step + 1 < b.size else self.order[j][:0]


def _stage_bands(conf: FloatArray, candidates: tuple[FloatArray, ...]) -> _Bands:
    """Sort each non-last stage's fit samples by confidence and locate every candidate."""
    orders, bounds = [], []
    for j, cand in enumerate(candidates):
        order = np.argsort(-conf[:, j], kind="stable")
        counts = np.searchsorted(-conf[order, j], -cand, side="right")  # conf >= t <=> -conf <= -t
        orders.append(order.astype(np.int64))
        bounds.append(np.concatenate([[0], counts]).astype(np.int64))
    return _Bands(tuple(orders), tuple(bounds))


def _move_effects(
    correct: IntArray, cum_cost: FloatArray, stop: IntArray, bands: _Bands, steps: IntArray
) -> tuple[IntArray, FloatArray, IntArray, IntArray]:
    """Effect of every stage's next move given the current stops (N,).

    Returns the correct-count gain (n-1,), the total cost saving (n-1,) in trace cost units,
    and the samples that would move with the stage of the move (two aligned (B,) arrays)."""
    n_moves = steps.size
    pieces = [bands.band(j, int(s)) for j, s in enumerate(steps)]
    idx = np.concatenate([np.zeros(0, dtype=np.int64), *pieces])
    stage = np.repeat(np.arange(n_moves), [p.size for p in pieces])
    now = stop[idx]
    moves = now > stage
    idx, stage, now = idx[moves], stage[moves], now[moves]
    gain = np.bincount(stage, weights=correct[idx, stage] - correct[idx, now], minlength=n_moves)
    saving = np.asarray(np.bincount(stage, weights=cum_cost[now] - cum_cost[stage], minlength=n_moves), float)
    return np.rint(gain).astype(np.int64), saving, idx, stage


def _best_move(gain: IntArray, saving: FloatArray, feasible: NDArray[np.bool_]) -> int:
    """The feasible move with the largest saving per lost correct sample (then saving, then stage)."""
    lost = -gain
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(lost > 0, saving / np.maximum(lost, 1), np.inf)
    cand = np.flatnonzero(feasible)
    order = np.lexsort((-cand, saving[cand], ratio[cand]))
    return int(cand[order[-1]])


def tune_thresholds(fit: Trace, budget: float, n_levels: int) -> TunedThresholds:
    """Greedy Apparate-style tuning on the fit split for one ``budget`` (accuracy points)."""
    conf, correct = fit.conf, fit.correct.astype(np.int64)
    n_samples, n = correct.shape
    candidates = stage_candidates(conf, n_levels)
    bands = _stage_bands(conf, candidates)
    sizes = np.asarray([c.size for c in candidates], dtype=np.int64)
    steps = np.zeros(n - 1, dtype=np.int64)
    stop = np.full(n_samples, n - 1, dtype=np.int64)
    n_correct = int(correct[:, -1].sum())
    floor = n_correct - budget * n_samples / 100.0 - FEASIBILITY_TOLERANCE
    moves: list[int] = []
    while True:
        gain, saving, moved, moved_stage = _move_effects(correct, fit.cumulative_cost, stop, bands, steps)
        feasible = (steps < sizes) & (n_correct + gain >= floor)
        if not feasible.any():
            break
        j = _best_move(gain, saving, feasible)
        steps[j] += 1
        moves.append(j)
        stop[moved[moved_stage == j]] = j
        n_correct += int(gain[j])
    thresholds = thresholds_at(candidates, steps)
    return TunedThresholds(budget, thresholds, candidates, steps, n_correct / n_samples, tuple(moves))


@dataclass(frozen=True)
class PerStageThresholdParams:
    """``budgets``: accuracy budgets in points (percent) below the last stage's fit accuracy.
    ``n_levels``: quantile levels per stage for the candidate thresholds (``n_levels + 1``)."""

    budgets: tuple[float, ...] = DEFAULT_BUDGETS
    n_levels: int = 100

    def __post_init__(self) -> None:
        if len(self.budgets) == 0 or min(self.budgets) < 0:
            raise FieldError("budgets", f"must be a non-empty list of points >= 0, got {self.budgets}")
        if self.n_levels < 1:
            raise FieldError("n_levels", f"must be at least 1, got {self.n_levels}")


@dataclass(frozen=True)
class PerStageThresholdPolicy(PerStageThresholdParams):
    """Per-stage thresholds tuned on the fit split, applied to the test split; sweep the budget."""

    name = "per_stage_threshold"
    knob_name = "budget_points"

    def tune(self, fit: Trace) -> tuple[TunedThresholds, ...]:
        """One tuning per budget, in increasing budget order."""
        return tuple(tune_thresholds(fit, float(b), self.n_levels) for b in sorted(set(self.budgets)))

    def decide(self, ctx: ScoringContext) -> Decisions:
        tuned = self.tune(ctx.fit)
        thresholds = np.stack([t.thresholds for t in tuned])
        stop = exit_stages(ctx.test.conf, thresholds)
        return Decisions(np.asarray([t.budget for t in tuned]), stop, stop)
