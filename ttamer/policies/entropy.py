"""``entropy``: exit at the first stage whose predictive entropy (nats) is ``<= t`` and return
it (no recall). Knob = t, in nats.

Entropy comes from ``probs`` (from ``conf`` for two classes, see
:func:`ttamer.traces.trace.stage_scores`). Default grid: the 1..99th percentiles of the fit split's
entropy over all stages, plus ``-inf`` (never exits early: the last stage) and ``+inf`` (always
the first stage)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ttamer.policies.base import Decisions, ScoringContext
from ttamer.policies.grids import QuantileGrid
from ttamer.policies.registry import register_policy
from ttamer.policies.stopping import first_at_least
from ttamer.traces.trace import Trace, stage_scores


def stage_entropy(trace: Trace) -> NDArray[np.float64]:
    """(N, n) predictive entropy of every stage, in nats."""
    return -stage_scores(trace, "entropy")


@register_policy("entropy", order=60, auto_candidate=True)
@dataclass(frozen=True)
class EntropyPolicy(QuantileGrid):
    """Exit once ``entropy <= t``; sweep ``t``."""

    name = "entropy"
    knob_name = "t"

    def decide(self, ctx: ScoringContext) -> Decisions:
        t = self.grid(stage_entropy(ctx.fit), (-np.inf, np.inf))
        # entropy <= t  <=>  -entropy >= -t (negation is exact)
        stop = first_at_least(-stage_entropy(ctx.test), -t)
        return Decisions(t, stop, stop)
