"""``recall``: T-Tamer's dynamic index policy (SPEC §1.1) replayed on a trace; knob = lam.

The chain is fitted on the fit split; every test sample is mapped to its fitted state at each
stage. After stage ``i`` the policy knows ``b_i``, the smallest fitted loss among stages
``0..i``, and stops as soon as ``lam * b_i <= index_i(lam, s_i)``; it returns the stage where
``b_i`` was reached (earliest on ties).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ttamer.chain import Chain
from ttamer.policies.base import Decisions, ScoringContext, first_true
from ttamer.policies.grids import LambdaSweep
from ttamer.policies.stopping import at_stage, running_argmin
from ttamer.solvers.recall import solve_recall

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def state_losses(chain: Chain, states: IntArray) -> FloatArray:
    """The fitted loss of each sample's state at each stage: states (N, n) -> (N, n)."""
    return np.stack([chain.losses[i][states[:, i]] for i in range(states.shape[1])], axis=1)


def recall_decisions(chain: Chain, states: IntArray, lams: FloatArray) -> Decisions:
    """Index-policy decisions for samples in ``states`` (N, n), for every ``lam`` (L,)."""
    sol = solve_recall(chain, lams)
    loss = state_losses(chain, states)
    best = np.minimum.accumulate(loss, axis=1)  # (N, n)
    cond = np.stack(
        [lams[:, None] * best[None, :, i] <= sol.index[i][:, states[:, i]] for i in range(states.shape[1])],
        axis=-1,
    )  # (L, N, n)
    stop = first_true(cond)
    return Decisions(lams, stop, at_stage(running_argmin(loss), stop))


@dataclass(frozen=True)
class RecallPolicy(LambdaSweep):
    """The optimal recall policy of the chain fitted on the fit split."""

    name = "recall"
    knob_name = "lam"

    def decide(self, ctx: ScoringContext) -> Decisions:
        return recall_decisions(ctx.fitted.chain, ctx.test_states, self.lambdas())
