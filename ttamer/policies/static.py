"""``static``: always stop at stage ``k`` and return it (one point per stage). Knob = the
1-based stage number ``k + 1``; default: every stage."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ttamer.errors import FieldError
from ttamer.policies.base import Decisions, ScoringContext
from ttamer.policies.registry import register_policy


@dataclass(frozen=True)
class StaticParams:
    """``stages``: 1-based stage numbers to report; ``None`` = every stage."""

    stages: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.stages is not None and (len(self.stages) == 0 or min(self.stages) < 1):
            raise FieldError("stages", f"must be non-empty 1-based stage numbers, got {self.stages}")


@register_policy("static", order=100)
@dataclass(frozen=True)
class StaticPolicy(StaticParams):
    """Run a fixed prefix of the cascade."""

    name = "static"
    knob_name = "stage"

    def decide(self, ctx: ScoringContext) -> Decisions:
        n = ctx.test.n_stages
        stages = np.arange(1, n + 1) if self.stages is None else np.unique(np.asarray(self.stages))
        if stages.max() > n:
            raise FieldError("stages", f"stage {int(stages.max())} does not exist in a {n}-stage trace")
        stop = np.repeat((stages - 1).astype(np.int64)[:, None], ctx.test.n_samples, axis=1)
        return Decisions(stages.astype(np.float64), stop, stop)
