"""``threshold_with_recall``: ``max_softmax`` stopping, but return the most confident stage seen
so far (largest ``conf`` up to the stop, earliest on ties). Same knob and grid as
``max_softmax``; isolates what recall alone adds to a threshold rule."""

from __future__ import annotations

from dataclasses import dataclass

from ttamer.policies.base import Decisions, ScoringContext
from ttamer.policies.grids import QuantileGrid
from ttamer.policies.max_softmax import NEVER_EXIT
from ttamer.policies.registry import register_policy
from ttamer.policies.stopping import first_at_least_with_argmax


@register_policy("threshold_with_recall", order=90, auto_candidate=True)
@dataclass(frozen=True)
class ThresholdWithRecallPolicy(QuantileGrid):
    """Exit once ``conf >= t``; return the most confident stage run."""

    name = "threshold_with_recall"
    knob_name = "t"

    def decide(self, ctx: ScoringContext) -> Decisions:
        t = self.grid(ctx.fit.conf, (0.0, NEVER_EXIT))
        stop, most_confident = first_at_least_with_argmax(ctx.test.conf, t)
        return Decisions(t, stop, most_confident)
