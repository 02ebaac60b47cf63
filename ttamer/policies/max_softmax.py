"""``max_softmax``: one confidence threshold ``t`` for all stages; exit at the first stage with
``conf >= t`` and return it (no recall). Knob = t, in confidence units [0, 1].

Default grid: 0 (always the first stage), the 1..99th percentiles of the fit split's confidence
over all stages, and ``1 + 1e-7`` (never exits early: the last stage)."""

from __future__ import annotations

from dataclasses import dataclass

from ttamer.policies.base import Decisions, ScoringContext
from ttamer.policies.grids import QuantileGrid
from ttamer.policies.registry import register_policy
from ttamer.policies.stopping import first_at_least

NEVER_EXIT = 1.0000001  # above every confidence


@register_policy("max_softmax", order=50, auto_candidate=True)
@dataclass(frozen=True)
class MaxSoftmaxPolicy(QuantileGrid):
    """Exit once ``conf >= t``; sweep ``t``."""

    name = "max_softmax"
    knob_name = "t"

    def decide(self, ctx: ScoringContext) -> Decisions:
        t = self.grid(ctx.fit.conf, (0.0, NEVER_EXIT))
        stop = first_at_least(ctx.test.conf, t)
        return Decisions(t, stop, stop)
