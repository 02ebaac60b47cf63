"""K-fold cross-validation on the fit split, the one way hyper-parameters and policies are
chosen: a candidate is scored on every held-out fold by the normalised cost at which its upper
hull reaches the fold's reference accuracy minus ``delta`` points (the saving criterion of the
trace studies, not the area), and the candidate of least mean cost wins. A fold on which a
candidate never reaches the target costs ``1 + shortfall`` (more than the full chain), so
candidates that fall short are still ordered. The test split is never seen."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ttamer.errors import FieldError
from ttamer.evaluation.pareto import cost_to_reach, upper_hull
from ttamer.policies.base import Decisions, Scores, ScoringContext, score_decisions
from ttamer.traces.trace import Trace

FloatArray = NDArray[np.float64]
Decider = Callable[[ScoringContext], Decisions]

REFERENCES = ("study", "best_stage", "last_stage")


@dataclass(frozen=True)
class CrossValidation:
    """``folds``: K of K-fold; ``delta``: accuracy points below the reference; ``reference``:
    ``best_stage`` (the held-out fold's most accurate stage), ``last_stage``, or ``study``
    (the scoring context's, i.e. the study's own reference); ``seed``: the folds' shuffle."""

    folds: int = 5
    delta: float = 1.0
    reference: str = "study"
    seed: int = 0

    def __post_init__(self) -> None:
        if int(self.folds) != self.folds or self.folds < 2:
            raise FieldError("cv_folds", f"must be an integer >= 2, got {self.folds}")
        if not np.isfinite(self.delta) or self.delta < 0:
            raise FieldError("cv_delta", f"must be a finite number >= 0, got {self.delta}")
        if self.reference not in REFERENCES:
            raise FieldError("cv_reference", f"must be one of {REFERENCES}, got {self.reference!r}")


def kfold_indices(n_samples: int, folds: int, seed: int) -> list[tuple[NDArray[np.intp], NDArray[np.intp]]]:
    """``folds`` (fit, held-out) index pairs partitioning a shuffled ``range(n_samples)``."""
    if n_samples < folds:
        raise FieldError("cv_folds", f"{folds} folds need at least {folds} fit samples, got {n_samples}")
    parts = np.array_split(np.random.default_rng(seed).permutation(n_samples), folds)
    return [(np.sort(np.concatenate(parts[:k] + parts[k + 1 :])), np.sort(parts[k])) for k in range(folds)]


def fold_contexts(ctx: ScoringContext, cv: CrossValidation) -> list[ScoringContext]:
    """The K fold contexts of ``ctx``'s fit split (built once per context and shared)."""
    key = ("cv_folds", cv.folds, cv.seed)
    if key not in ctx.memo:
        pairs = kfold_indices(ctx.fit.n_samples, cv.folds, cv.seed)
        ctx.memo[key] = [
            ScoringContext(ctx.fit.subset(f), ctx.fit.subset(h), ctx.fit_config) for f, h in pairs
        ]
    folds: list[ScoringContext] = ctx.memo[key]
    return folds


def reach_cost(scores: Scores, held: Trace, delta: float, reference: str) -> float:
    """Normalised cost at which the hull of ``scores`` reaches the ``reference`` accuracy on
    ``held`` minus ``delta`` points; ``1 + shortfall`` if it never does; ``inf`` without a
    finite point."""
    acc = held.correct.mean(axis=0)
    target = float(acc.max() if reference == "best_stage" else acc[-1]) - delta / 100.0
    ok = np.isfinite(scores.normalized_cost) & np.isfinite(scores.accuracy)
    if not ok.any():
        return float("inf")
    hull = upper_hull(scores.normalized_cost[ok], scores.accuracy[ok])
    cost = float(cost_to_reach(hull, target))
    return cost if np.isfinite(cost) else 1.0 + (target - float(hull.accuracy[-1]))


def cv_costs(ctx: ScoringContext, cv: CrossValidation, deciders: Sequence[Decider]) -> FloatArray:
    """(C,) every candidate's mean held-out cost over the folds; ``inf`` for a candidate that
    cannot be fitted on a fold (e.g. too few samples for its bins)."""
    total = np.zeros(len(deciders))
    reference = ctx.reference if cv.reference == "study" else cv.reference
    for fold in fold_contexts(ctx, cv):
        for j, decide in enumerate(deciders):
            try:
                scores = score_decisions(decide(fold), fold.test)
                total[j] += reach_cost(scores, fold.test, cv.delta, reference)
            except FieldError:
                total[j] = np.inf
    return total / cv.folds


def choose(ctx: ScoringContext, cv: CrossValidation, deciders: Sequence[Decider]) -> int:
    """Index of the candidate of least cross-validated cost (the first on ties, and the first
    when none can be scored)."""
    if len(deciders) == 1:
        return 0
    costs = cv_costs(ctx, cv, deciders)
    return int(np.argmin(costs)) if np.isfinite(costs).any() else 0
