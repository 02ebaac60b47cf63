"""``auto``: the policy that cross-validation on the fit split prefers, among ``candidates``,
by the same criterion the posterior policies use for their hyper-parameters (held-out cost to
reach the reference accuracy minus ``cv_delta`` points). A candidate that cannot run on the
trace (e.g. ``entropy`` without class probabilities) is left out (its cost is infinite). Its
curve is the chosen policy's, fitted on the whole fit split; ``selected`` names it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ttamer.errors import FieldError
from ttamer.policies.base import Decisions, ScoringContext, TracePolicy
from ttamer.policies.cross_validation import CrossValidation, cv_costs
from ttamer.policies.registry import default_auto_candidates, make_policy, register_policy


@register_policy("auto", order=120)
@dataclass(frozen=True)
class AutoPolicy:
    """Choose among ``candidates`` (registered policy names; default: those registered as
    ``auto_candidate``) by K-fold cross-validation."""

    name = "auto"
    knob_name = "knob"
    candidates: tuple[str, ...] = field(default_factory=default_auto_candidates)
    cv_folds: int = 5
    cv_delta: float = 1.0
    cv_reference: str = "study"

    def __post_init__(self) -> None:
        object.__setattr__(self, "candidates", tuple(self.candidates))
        if not self.candidates or "auto" in self.candidates:
            raise FieldError("candidates", "must name at least one policy other than auto")
        self.policies()
        CrossValidation(self.cv_folds, self.cv_delta, self.cv_reference)

    def policies(self) -> list[TracePolicy]:
        return [make_policy(name) for name in self.candidates]

    def decide(self, ctx: ScoringContext) -> Decisions:
        cv = CrossValidation(self.cv_folds, self.cv_delta, self.cv_reference)
        candidates = self.policies()
        costs = cv_costs(ctx, cv, [p.decide for p in candidates])  # inf: cannot run here
        if not np.isfinite(costs).any():
            raise FieldError("candidates", "no candidate policy can run on this trace")
        chosen = candidates[int(costs.argmin())]
        d = chosen.decide(ctx)
        label = chosen.name + (f" ({d.selected})" if d.selected else "")
        return Decisions(d.knobs, d.stop, d.returned, d.estimated_error, label)
