"""``posterior_recall`` and ``posterior_no_recall``: optimal stopping on the posterior model
(:mod:`ttamer.fitting.posterior`), knob = lam.

``posterior_recall`` stops at the first stage whose posterior state lies in the optimal stop
set of the chain with losses ``min(p_cur, p_inc)`` and returns the answer of smaller estimated
error (the current stage's or the incumbent's); ``posterior_no_recall`` uses the same states
with losses ``p_cur`` and returns the last stage run. The model's score bins and shrinkage are
chosen by K-fold cross-validation on the fit split (:mod:`ttamer.policies.cross_validation`)
among the grid given by the policy's fields; a one-point grid skips cross-validation.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import partial
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from ttamer.errors import FieldError
from ttamer.fitting.posterior import PosteriorConfig, PosteriorModel, fit_posterior, solve_posterior
from ttamer.policies.base import Decisions, ScoringContext, mean_at
from ttamer.policies.cross_validation import CrossValidation, choose
from ttamer.policies.grids import LambdaGrid
from ttamer.policies.registry import register_policy
from ttamer.policies.stopping import first_exit

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def posterior_model(ctx: ScoringContext, config: PosteriorConfig) -> PosteriorModel:
    """The posterior model of ``ctx``'s fit split (fitted once per context and config)."""
    key = ("posterior", config)
    if key not in ctx.memo:
        ctx.memo[key] = fit_posterior(ctx.fit, config)
    model: PosteriorModel = ctx.memo[key]
    return model


def posterior_decisions(
    model: PosteriorModel, ctx: ScoringContext, lams: FloatArray, recall: bool
) -> Decisions:
    """Optimal-stopping decisions on ``model`` for ``ctx``'s test samples, every ``lam`` (L,)."""
    walk = model.walk(ctx.test)
    sol = solve_posterior(model, lams, recall)
    stop_sets = [np.ascontiguousarray(x.T) for x in sol.stop]  # (K_i, L)

    def exits(i: int, a: int, b: int) -> NDArray[np.bool_]:  # (b - a, L)
        return np.take(stop_sets[i], walk.states[a:b, i], axis=0)

    n_samples, n = walk.states.shape
    stop = first_exit(lams.size, n_samples, n, exits)
    returned = np.take_along_axis(walk.returned.T, stop, axis=0) if recall else stop
    losses = model.loss if recall else model.p_cur
    estimate = np.stack([losses[i][walk.states[:, i]] for i in range(n)], axis=1)  # (N, n)
    return Decisions(lams, stop, np.ascontiguousarray(returned), mean_at(estimate, stop))


def describe(config: PosteriorConfig) -> str:
    text = f"n_bins={config.n_bins} incumbent_bins={config.incumbent_bins} shrinkage={config.shrinkage:g}"
    return text + (f" swap_margin={config.swap_margin:g}" if config.swap_margin else "")


@register_policy("posterior_recall", order=30, auto_candidate=True)
@dataclass(frozen=True)
class PosteriorRecallPolicy(LambdaGrid):
    """Optimal posterior recall; the model's hyper-parameters are cross-validated over the
    grid ``n_bins`` x ``incumbent_bins`` x ``shrinkage`` (transition rows are shrunk with the
    same pseudo-count), by the held-out cost to reach the reference minus ``cv_delta`` points."""

    name = "posterior_recall"
    knob_name = "lam"
    recall: ClassVar[bool] = True
    score: str = "max_softmax"
    n_bins: tuple[int, ...] = (3, 6, 12, 20)
    incumbent_bins: tuple[int, ...] = (4, 12)
    shrinkage: tuple[float, ...] = (10.0, 100.0)
    swap_margin: tuple[float, ...] = (0.0,)
    agreement: bool = True
    cv_folds: int = 5
    cv_delta: float = 1.0
    cv_reference: str = "study"

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("n_bins", "incumbent_bins", "shrinkage", "swap_margin"):
            value = getattr(self, name)
            if isinstance(value, (int, float)):
                object.__setattr__(self, name, (value,))
            elif len(value) == 0:
                raise FieldError(name, "needs at least one value")
            else:
                object.__setattr__(self, name, tuple(value))
        self.configs()  # validates every grid point
        self.cross_validation()

    def configs(self) -> list[PosteriorConfig]:
        """Every grid point, in the order of the grid (ties in cross-validation go to the first)."""
        grid = itertools.product(self.n_bins, self.incumbent_bins, self.shrinkage, self.swap_margin)
        return [
            PosteriorConfig(self.score, int(b), int(e), float(m), float(m), self.agreement, float(d))
            for b, e, m, d in grid
        ]

    def cross_validation(self) -> CrossValidation:
        return CrossValidation(self.cv_folds, self.cv_delta, self.cv_reference)

    def decide_with(self, config: PosteriorConfig, ctx: ScoringContext) -> Decisions:
        return posterior_decisions(posterior_model(ctx, config), ctx, self.lambdas(), self.recall)

    def decide(self, ctx: ScoringContext) -> Decisions:
        configs = self.configs()
        best = configs[choose(ctx, self.cross_validation(), [partial(self.decide_with, c) for c in configs])]
        decisions = self.decide_with(best, ctx)
        selected = describe(best) if len(configs) > 1 else ""
        return Decisions(
            decisions.knobs, decisions.stop, decisions.returned, decisions.estimated_error, selected
        )


@register_policy("posterior_no_recall", order=40, auto_candidate=True)
@dataclass(frozen=True)
class PosteriorNoRecallPolicy(PosteriorRecallPolicy):
    """Optimal stopping on the posterior states, returning the last stage run."""

    name = "posterior_no_recall"
    recall: ClassVar[bool] = False
