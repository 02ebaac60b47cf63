"""The interface shared by every trace policy (SPEC §2), and the one place where decisions
become accuracy and cost.

A policy sees the fit split (to tune itself) and the test split, and returns, for each of
``M`` knob values and each of ``N`` test samples, the stage after which it stops and the stage
whose prediction it returns (both 0-based). Every stage up to the stopping stage is paid for;
with recall the returned stage may be an earlier one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from ttamer.fitting import FitConfig, FittedChain, fit_chain
from ttamer.traces import Trace

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class Decisions:
    """``knobs``: (M,); ``stop`` and ``returned``: (M, N) 0-based stage indices."""

    knobs: FloatArray
    stop: IntArray
    returned: IntArray


@dataclass
class ScoringContext:
    """The fit and test splits of one trace, and the chain fitted on the fit split (lazily)."""

    fit: Trace
    test: Trace
    fit_config: FitConfig = field(default_factory=FitConfig)

    @cached_property
    def fitted(self) -> FittedChain:
        return fit_chain(self.fit, self.fit_config)

    @cached_property
    def test_states(self) -> IntArray:
        """(N, n): the fitted chain's state of every test sample at every stage."""
        return self.fitted.states(self.test)


class TracePolicy(Protocol):
    """A policy with a knob; ``decide`` sweeps the knob over its grid."""

    name: str
    knob_name: str

    def decide(self, ctx: ScoringContext) -> Decisions: ...


def first_true(cond: NDArray[np.bool_]) -> IntArray:
    """Index of the first True along the last axis, the last index when there is none.

    ``cond``: (..., n) -> (...,). This is "stop at the first stage whose exit test passes"."""
    forced = cond.copy()
    forced[..., -1] = True
    return np.argmax(forced, axis=-1).astype(np.int64)


@dataclass(frozen=True)
class Scores:
    """Accuracy and cost of each knob value: arrays of shape (M,)."""

    knobs: FloatArray
    accuracy: FloatArray
    mean_cost: FloatArray
    normalized_cost: FloatArray


def score_decisions(decisions: Decisions, test: Trace) -> Scores:
    """Accuracy of the returned stage, mean cost of the stages run (trace cost units), and
    that cost over the full chain's cost."""
    rows = np.arange(test.n_samples)[None, :]
    correct = test.correct[rows, decisions.returned]  # (M, N)
    cost = test.cumulative_cost[decisions.stop]
    total = float(test.cost.sum())
    mean_cost = cost.mean(axis=1)
    norm = mean_cost / total if total > 0 else np.full_like(mean_cost, np.nan)
    return Scores(decisions.knobs, correct.mean(axis=1), mean_cost, norm)
