"""The interface shared by every trace policy (README: traces), and the one place where decisions
become accuracy and cost.

A policy sees the fit split (to tune itself) and the test split, and returns, for each of
``M`` knob values and each of ``N`` test samples, the stage after which it stops and the stage
whose prediction it returns (both 0-based). Every stage up to the stopping stage is paid for;
with recall the returned stage may be an earlier one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from ttamer.fitting.chain import FitConfig, FittedChain, fit_chain
from ttamer.traces.trace import Trace

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

SCORE_BLOCK = 1 << 22  # (knob, sample) pairs scored at once


@dataclass(frozen=True)
class Decisions:
    """``knobs``: (M,); ``stop`` and ``returned``: (M, N) 0-based stage indices.

    ``estimated_error``: (M,) for a policy with a fitted model, the model's mean estimated
    error probability of the answers it returned on the test samples (None otherwise).
    ``selected``: what cross-validation on the fit split chose, e.g. hyper-parameters ("" if
    nothing was chosen)."""

    knobs: FloatArray
    stop: IntArray
    returned: IntArray
    estimated_error: FloatArray | None = None
    selected: str = ""


@dataclass
class ScoringContext:
    """The fit and test splits of one trace, and the chain fitted on the fit split (lazily)."""

    fit: Trace
    test: Trace
    fit_config: FitConfig = field(default_factory=FitConfig)
    reference: str = "best_stage"
    """The accuracy the study reads savings at (``best_stage`` or ``last_stage``)."""
    memo: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)
    """Results shared by the policies scored on this context (fitted models, CV folds)."""

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


def mean_at(table: FloatArray, stage: IntArray) -> FloatArray:
    """``table`` (N, n) per-sample values at every stage; ``stage`` (M, N) one stage per knob
    and sample -> (M,) the mean over samples of the value at that stage, a few knob values at
    a time (about :data:`SCORE_BLOCK` pairs)."""
    n_samples, m = table.shape[0], stage.shape[0]
    rows = np.arange(n_samples)[None, :]
    out = np.empty(m, dtype=np.float64)
    step = max(1, SCORE_BLOCK // max(n_samples, 1))
    for a in range(0, m, step):
        out[a : a + step] = table[rows, stage[a : a + step]].mean(axis=1)
    return out


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
    that cost over the full chain's cost (0 when every stage is free).

    Computed a few knob values at a time (about :data:`SCORE_BLOCK` (knob, sample) pairs), so
    that no (M, N) temporary is built; each knob's means are those of the whole (M, N) arrays."""
    n_samples = test.n_samples
    correct_table = test.correct
    cum_cost = test.cumulative_cost
    m = decisions.stop.shape[0]
    accuracy = np.empty(m, dtype=np.float64)
    mean_cost = np.empty(m, dtype=np.float64)
    rows = np.arange(n_samples)[None, :]
    step = max(1, SCORE_BLOCK // max(n_samples, 1))
    for a in range(0, m, step):
        b = min(a + step, m)
        accuracy[a:b] = correct_table[rows, decisions.returned[a:b]].mean(axis=1)
        mean_cost[a:b] = cum_cost[decisions.stop[a:b]].mean(axis=1)
    total = float(test.cost.sum())
    norm = mean_cost / total if total > 0 else np.zeros_like(mean_cost)  # free cascade: 0
    return Scores(decisions.knobs, accuracy, mean_cost, norm)
