"""``no_recall``: the optimal stopping policy (README: model) replayed on a trace; knob = lam.

Stop at the first stage whose fitted state lies in the optimal stop set for ``lam``, and return
that stage (no recall): the best any recall-free rule can do on the fitted chain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ttamer.model.chain import Chain
from ttamer.policies.base import Decisions, ScoringContext
from ttamer.policies.grids import LambdaGrid
from ttamer.policies.recall import mean_fitted_loss
from ttamer.policies.registry import register_policy
from ttamer.policies.stopping import first_exit
from ttamer.solvers.no_recall import solve_no_recall

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def no_recall_decisions(chain: Chain, states: IntArray, lams: FloatArray) -> Decisions:
    """Optimal-stopping decisions for samples in ``states`` (N, n), for every ``lam`` (L,)."""
    sol = solve_no_recall(chain, lams)
    stop_sets = [np.ascontiguousarray(x.T) for x in sol.stop]  # (K_i, L)

    def exits(i: int, a: int, b: int) -> NDArray[np.bool_]:  # (b - a, L)
        return np.take(stop_sets[i], states[a:b, i], axis=0)

    stop = first_exit(lams.size, states.shape[0], states.shape[1], exits)
    return Decisions(lams, stop, stop, mean_fitted_loss(chain, states, stop))


@register_policy("no_recall", order=20, auto_candidate=True)
@dataclass(frozen=True)
class NoRecallPolicy(LambdaGrid):
    """The optimal recall-free policy of the chain fitted on the fit split."""

    name = "no_recall"
    knob_name = "lam"

    def decide(self, ctx: ScoringContext) -> Decisions:
        return no_recall_decisions(ctx.fitted.chain, ctx.test_states, self.lambdas())
