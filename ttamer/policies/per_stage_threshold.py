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

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ttamer.errors import FieldError
from ttamer.policies.base import Decisions, ScoringContext
from ttamer.policies.registry import register_policy
from ttamer.policies.stopping import first_exit
from ttamer.traces.trace import Trace

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
    """Stop stages (M, N) for threshold vectors (M, n) on confidences (N, n): the first stage
    with ``conf >= threshold`` (the last stage always exits)."""
    conf = np.asarray(conf)
    thresholds = np.asarray(thresholds)

    def exits(i: int, a: int, b: int) -> NDArray[np.bool_]:  # (b - a, M)
        return conf[a:b, i, None] >= thresholds[None, :, i]

    return first_exit(thresholds.shape[0], conf.shape[0], conf.shape[1], exits)


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
    return tune_budgets(fit, (budget,), n_levels)[0]


def tune_budgets(fit: Trace, budgets: Sequence[float], n_levels: int) -> tuple[TunedThresholds, ...]:
    """The greedy of :func:`tune_thresholds` for every budget (results in the order given).

    Each budget's run is exactly its own greedy; runs in the same state share each step's
    evaluation of the moves (the expensive part), and split only when their feasible moves
    lead them to different moves or one of them stops. Candidates and sample bands are
    computed once for all budgets."""
    conf, correct = fit.conf, fit.correct.astype(np.int64)
    n_samples, n = correct.shape
    cum_cost = fit.cumulative_cost
    candidates = stage_candidates(conf, n_levels)
    bands = _stage_bands(conf, candidates)
    sizes = np.asarray([c.size for c in candidates], dtype=np.int64)
    start = int(correct[:, -1].sum())
    floors = np.asarray([start - float(b) * n_samples / 100.0 - FEASIBILITY_TOLERANCE for b in budgets])
    results: list[TunedThresholds | None] = [None] * len(budgets)
    # (budgets sharing the state, steps, stop per sample, correct count, moves so far)
    first = (np.arange(len(budgets)), np.zeros(n - 1, np.int64), np.full(n_samples, n - 1, np.int64))
    runs: list[tuple[IntArray, IntArray, IntArray, int, list[int]]] = [(*first, start, [])]
    while runs:
        members, steps, stop, n_correct, moves = runs.pop()
        while members.size:
            gain, saving, moved, moved_stage = _move_effects(correct, cum_cost, stop, bands, steps)
            feasible = (steps < sizes)[None, :] & ((n_correct + gain)[None, :] >= floors[members, None])
            chosen = np.full(members.size, -1, dtype=np.int64)  # -1: no feasible move, done
            best: dict[bytes, int] = {}
            for g, mask in enumerate(feasible):
                if mask.any():
                    key = mask.tobytes()
                    if key not in best:
                        best[key] = _best_move(gain, saving, mask)
                    chosen[g] = best[key]
            for k in members[chosen < 0]:
                thresholds = thresholds_at(candidates, steps)
                accuracy = n_correct / n_samples
                results[k] = TunedThresholds(
                    float(budgets[k]), thresholds, candidates, steps.copy(), accuracy, tuple(moves)
                )
            moves_next = np.unique(chosen[chosen >= 0])
            for j in moves_next[1:]:  # other moves: a run of their own, from a copy of the state
                steps_j, stop_j = steps.copy(), stop.copy()
                steps_j[j] += 1
                stop_j[moved[moved_stage == j]] = j
                runs.append(
                    (members[chosen == j], steps_j, stop_j, n_correct + int(gain[j]), [*moves, int(j)])
                )
            if moves_next.size == 0:
                break
            j = int(moves_next[0])
            members = members[chosen == j]
            steps[j] += 1
            moves.append(j)
            stop[moved[moved_stage == j]] = j
            n_correct += int(gain[j])
    done = tuple(r for r in results if r is not None)
    assert len(done) == len(results)  # every run ends
    return done


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


@register_policy("per_stage_threshold", order=80, auto_candidate=True)
@dataclass(frozen=True)
class PerStageThresholdPolicy(PerStageThresholdParams):
    """Per-stage thresholds tuned on the fit split, applied to the test split; sweep the budget."""

    name = "per_stage_threshold"
    knob_name = "budget_points"

    def tune(self, fit: Trace) -> tuple[TunedThresholds, ...]:
        """One tuning per budget, in increasing budget order."""
        return tune_budgets(fit, [float(b) for b in sorted(set(self.budgets))], self.n_levels)

    def decide(self, ctx: ScoringContext) -> Decisions:
        tuned = self.tune(ctx.fit)
        thresholds = np.stack([t.thresholds for t in tuned])
        stop = exit_stages(ctx.test.conf, thresholds)
        return Decisions(np.asarray([t.budget for t in tuned]), stop, stop)
