"""Fitting a chain from a trace (README: traces): states are bins of a per-stage score, losses are
smoothed per-bin error rates, transitions are smoothed counts, costs come from the trace,
divided by the full chain's cost (so lam means the same on every trace; any other cost scale
is the same family of trade-offs under another lam).

The state of stage ``i`` of a sample is the quantile bin of its score among the fit samples
(``B`` bins per stage; tied quantiles are merged, so a stage may have fewer states). With
``agreement=True``, stages after the first also record whether their prediction agrees with
the previous stage's: state = bin + B * agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ttamer.errors import FieldError
from ttamer.model.chain import Chain
from ttamer.traces.trace import SCORES, Trace, TraceError, stage_scores

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class FitConfig:
    """How a trace becomes a chain.

    ``score``: one of :data:`ttamer.traces.trace.SCORES`. ``n_bins``: quantile bins per stage.
    ``agreement``: add agreement with the previous stage's prediction to the state.
    ``loss_prior``: pseudo-count pulling each bin's error rate towards its stage's error rate.
    ``transition_prior``: additive pseudo-count per transition (and initial) cell."""

    score: str = "max_softmax"
    n_bins: int = 10
    agreement: bool = False
    loss_prior: float = 1.0
    transition_prior: float = 0.5

    def __post_init__(self) -> None:
        if self.score not in SCORES:
            raise FieldError("score", f"unknown score {self.score!r}; choose from {SCORES}")
        if self.n_bins < 1:
            raise FieldError("n_bins", f"must be at least 1, got {self.n_bins}")
        if self.loss_prior < 0 or self.transition_prior < 0:
            raise FieldError("loss_prior", "smoothing pseudo-counts must be >= 0")


@dataclass(frozen=True)
class FittedChain:
    """A chain fitted on a trace, with what is needed to map new samples to its states.

    ``edges[i]``: interior bin edges of stage ``i``'s score, shape (B_i - 1,)."""

    chain: Chain
    edges: tuple[FloatArray, ...]
    config: FitConfig

    def states(self, trace: Trace) -> IntArray:
        """Each sample's state at each stage, shape (N, n)."""
        if trace.n_stages != self.chain.n_stages:
            raise TraceError("pred", f"trace has {trace.n_stages} stages, the chain {self.chain.n_stages}")
        return assign_states(trace, self.edges, self.config)

    def estimated_loss(self, trace: Trace) -> FloatArray:
        """The fitted loss (error-probability estimate) of each sample at each stage: (N, n)."""
        st = self.states(trace)
        return np.stack([self.chain.losses[i][st[:, i]] for i in range(st.shape[1])], axis=1)


def assign_states(trace: Trace, edges: tuple[FloatArray, ...], config: FitConfig) -> IntArray:
    """States (N, n): the bin of each stage's score, plus ``B * agree`` with ``agreement``."""
    scores = stage_scores(trace, config.score)
    bins = np.stack([np.searchsorted(e, scores[:, i], side="right") for i, e in enumerate(edges)], axis=1)
    bins = bins.astype(np.int64)
    if not config.agreement:
        return bins
    agree = np.zeros_like(bins)
    agree[:, 1:] = trace.pred[:, 1:] == trace.pred[:, :-1]
    widths = np.array([e.size + 1 for e in edges])
    return bins + agree * widths[None, :]


def quantile_edges(score: FloatArray, n_bins: int) -> FloatArray:
    """Interior edges splitting ``score`` into ``n_bins`` equal-count bins (ties merged)."""
    qs = np.quantile(score, np.arange(1, n_bins) / n_bins)
    return np.unique(qs)


@dataclass(frozen=True)
class StageStates:
    """What every fitted structure shares: per stage, the interior bin edges of its score,
    its number of states and its smoothed loss per state; and the fit samples' states (N, n)."""

    edges: tuple[FloatArray, ...]
    n_states: tuple[int, ...]
    losses: tuple[FloatArray, ...]
    states: IntArray


def score_edges(trace: Trace, score: str, n_bins: int) -> tuple[FloatArray, ...]:
    """Per stage, the interior quantile edges of its score on ``trace`` (the fit split)."""
    if trace.n_samples < 2 * n_bins:
        raise TraceError("conf", f"{trace.n_samples} fit samples are too few for {n_bins} bins per stage")
    scores = stage_scores(trace, score)
    return tuple(quantile_edges(scores[:, i], n_bins) for i in range(trace.n_stages))


def fit_stage_states(trace: Trace, config: FitConfig) -> StageStates:
    """Bin every stage's score on ``trace`` (the fit split) and estimate each bin's loss."""
    edges = score_edges(trace, config.score, config.n_bins)
    states = assign_states(trace, edges, config)
    n_states = tuple((e.size + 1) * (2 if config.agreement and i > 0 else 1) for i, e in enumerate(edges))
    losses = tuple(
        bin_error_rate(trace.correct[:, i], states[:, i], k, config.loss_prior)
        for i, k in enumerate(n_states)
    )
    return StageStates(edges, n_states, losses, states)


def transition_counts(states: IntArray, u: int, v: int, n_states: tuple[int, ...]) -> FloatArray:
    """Co-occurrence counts of stage ``u``'s state (rows) and stage ``v``'s (columns)."""
    counts = np.zeros((n_states[u], n_states[v]))
    np.add.at(counts, (states[:, u], states[:, v]), 1.0)
    return counts


def normalised_costs(trace: Trace) -> FloatArray:
    """The trace's costs over the full chain's cost (unchanged when that is 0)."""
    total = float(trace.cost.sum())
    return np.asarray(trace.cost / total if total > 0 else trace.cost, dtype=np.float64)


def fit_chain(trace: Trace, config: FitConfig) -> FittedChain:
    """Fit the chain on ``trace`` (the fit split)."""
    fit = fit_stage_states(trace, config)
    a = config.transition_prior
    initial = normalise_rows(np.bincount(fit.states[:, 0], minlength=fit.n_states[0]) + a)
    trans = [
        normalise_rows(transition_counts(fit.states, i, i + 1, fit.n_states) + a)
        for i in range(trace.n_stages - 1)
    ]
    chain = Chain.build(list(fit.losses), initial, trans, normalised_costs(trace), name="fitted")
    return FittedChain(chain, fit.edges, config)


def bin_error_rate(correct: NDArray[np.bool_], states: IntArray, n_states: int, prior: float) -> FloatArray:
    """Smoothed error rate per state: (errors + prior * p) / (count + prior), p the stage's rate."""
    errors = np.bincount(states, weights=(~correct).astype(np.float64), minlength=n_states)
    counts = np.bincount(states, minlength=n_states).astype(np.float64)
    p = errors.sum() / max(counts.sum(), 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = (errors + prior * p) / (counts + prior)
    return np.where(counts + prior > 0, rate, p)


def normalise_rows(counts: NDArray[np.floating]) -> FloatArray:
    """Normalise the last axis to sum to 1; an all-zero row (no data, no prior) becomes uniform."""
    counts = np.asarray(counts, dtype=np.float64)
    sums = counts.sum(axis=-1, keepdims=True)
    safe = np.where(sums > 0, sums, 1.0)
    return np.where(sums > 0, counts / safe, 1.0 / counts.shape[-1])
