"""The posterior model: a fitted chain whose state lets later stages revise the error estimate
of every answer that may still be returned (see "Posterior recall" in the README).

The plain fitted chain gives stage ``j``'s answer the loss ``l_j(s_j)`` once and for all. On
real cascades later stages carry evidence about earlier answers (a later stage that is unsure,
or that disagrees, marks a hard sample), so that estimate is biased exactly where recall uses
it. Here the state after stage ``i`` (0-based) is ``z_i = (b_i, e_i, a_i)``:

* ``b_i``: the quantile bin of stage ``i``'s score (``B_i`` bins);
* ``e_i``: the quantile bin of the *incumbent*'s estimated error, the incumbent being the
  answer that stopping after stage ``i - 1`` would have returned (``E_i`` bins);
* ``a_i``: whether stage ``i``'s prediction equals the incumbent's.

Stage 0 has ``z_0 = b_0``. Two error probabilities are estimated per state on the fit split:
``p_cur[i][z]`` for stage ``i``'s answer and ``p_inc[i][z]`` for the incumbent's. Stopping after
``i`` returns the one of smaller estimate (the incumbent on ties); its estimate
``loss[i][z] = min(p_cur, p_inc)`` is the loss of stopping, and it is the next incumbent, so
``e_{i+1}`` is a function of ``z_i`` and ``(b_{i+1}, a_{i+1})`` is the only random part of a
transition. Recall is therefore inside the state, and the optimal *posterior recall* policy is
optimal stopping (no recall) on the chain with losses ``loss``; *posterior no recall* (return
the last stage run) is optimal stopping on the same states with losses ``p_cur``.

Estimates are shrunk: a cell's error rate is pulled, with ``shrinkage`` pseudo-samples, toward
a coarser estimate that combines the rates of the cells ``(b, a)`` and ``(e, a)`` by adding
their log-odds relative to the rate of ``a`` alone (a naive-Bayes combination), and those rates
are themselves shrunk toward the rate of ``a``. Transition rows are shrunk the same way toward
the distribution given the previous stage's score bin alone. No estimate is 0 or 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ttamer.errors import FieldError
from ttamer.fitting.chain import normalise_rows, normalised_costs, quantile_edges, score_edges
from ttamer.model.chain import Chain, check_lambda
from ttamer.solvers.no_recall import NoRecallSolution
from ttamer.traces.trace import SCORES, Trace, TraceError, stage_scores

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

EPS = 1e-6  # probabilities are kept in [EPS, 1 - EPS] before taking log-odds


@dataclass(frozen=True)
class PosteriorConfig:
    """How a trace becomes a posterior model.

    ``score``: one of :data:`ttamer.traces.trace.SCORES`. ``n_bins``: quantile bins of each stage's
    score. ``incumbent_bins``: quantile bins of the incumbent's estimated error.
    ``shrinkage``: pseudo-samples pulling a state's error rate toward its coarser estimate.
    ``transition_shrinkage``: the same for transition rows. ``agreement``: whether the state
    records agreement with the incumbent (off: always "disagree", for ablations).
    ``swap_margin``: stopping returns the incumbent instead of the current answer only when its
    estimated error is lower by at least this much (0: whenever lower; 1: never, which is
    posterior no recall with the incumbent kept in the state)."""

    score: str = "max_softmax"
    n_bins: int = 10
    incumbent_bins: int = 12
    shrinkage: float = 10.0
    transition_shrinkage: float = 10.0
    agreement: bool = True
    swap_margin: float = 0.0

    def __post_init__(self) -> None:
        if self.score not in SCORES:
            raise FieldError("score", f"unknown score {self.score!r}; choose from {SCORES}")
        for name in ("n_bins", "incumbent_bins"):
            value = getattr(self, name)
            if int(value) != value or value < 1:
                raise FieldError(name, f"must be a positive integer, got {value}")
        for name in ("shrinkage", "transition_shrinkage"):
            value = getattr(self, name)
            if not np.isfinite(value) or value <= 0:
                raise FieldError(name, f"must be a positive number, got {value}")
        if not np.isfinite(self.swap_margin) or not 0 <= self.swap_margin <= 1:
            raise FieldError("swap_margin", f"must be a probability margin in [0, 1], got {self.swap_margin}")


@dataclass(frozen=True)
class Walk:
    """Every sample's path through a posterior model: ``states`` (N, n) the state ``z_i``;
    ``returned`` (N, n) the stage whose answer stopping after stage ``i`` returns."""

    states: IntArray
    returned: IntArray


@dataclass(frozen=True)
class PosteriorModel:
    """A posterior model fitted on a trace.

    Per stage ``i`` (0-based): ``score_edges[i]`` (B_i - 1,) interior edges of the score;
    ``incumbent_edges[i]`` (E_i - 1,) interior edges of the incumbent's estimated error
    (empty for stage 0); ``p_cur[i]``, ``p_inc[i]``, ``loss[i]``: (K_i,) estimated error
    probabilities of the current answer, of the incumbent and of the answer returned on
    stopping; ``keep_current[i]`` (K_i,) whether stopping returns stage ``i`` itself.
    ``initial`` (K_0,), ``costs`` (n,) normalised to the full chain. A state of stage
    ``i >= 1`` is ``b + B_i * (e + E_i * a)``.

    Transitions are stored compactly: from state ``z`` of stage ``i`` the next state is
    ``successor[i][z, o]`` with probability ``observation[i][z, o]``, one column ``o`` per
    observable outcome ``(b', a')`` of stage ``i + 1`` (the incumbent bin is fixed by ``z``);
    both (K_i, 2 B_{i+1}). :attr:`transitions` gives the dense matrices."""

    config: PosteriorConfig
    score_edges: tuple[FloatArray, ...]
    incumbent_edges: tuple[FloatArray, ...]
    p_cur: tuple[FloatArray, ...]
    p_inc: tuple[FloatArray, ...]
    initial: FloatArray
    observation: tuple[FloatArray, ...]
    successor: tuple[IntArray, ...]
    costs: FloatArray

    @property
    def n_stages(self) -> int:
        return len(self.p_cur)

    def bin_counts(self, i: int) -> tuple[int, int]:
        """``(B_i, E_i)``: stage ``i``'s score bins and incumbent bins (``E_0 = 1``)."""
        return self.score_edges[i].size + 1, self.incumbent_edges[i].size + 1

    @cached_property
    def keep_current(self) -> tuple[BoolArray, ...]:
        """Per state: stopping returns the current answer, unless the incumbent's estimated
        error is lower by at least ``swap_margin`` (ties go to the incumbent)."""
        m = self.config.swap_margin
        return tuple(c < p + m for c, p in zip(self.p_cur, self.p_inc, strict=True))

    @cached_property
    def loss(self) -> tuple[FloatArray, ...]:
        """Per state: the estimated error of the answer stopping returns."""
        parts = zip(self.keep_current, self.p_cur, self.p_inc, strict=True)
        return tuple(np.where(k, c, p) for k, c, p in parts)

    @property
    def transitions(self) -> tuple[FloatArray, ...]:
        """The dense transition matrices (K_i, K_{i+1}) of the compact ones."""
        out = []
        for i, (prob, succ) in enumerate(zip(self.observation, self.successor, strict=True)):
            t = np.zeros((prob.shape[0], self.p_cur[i + 1].size))
            t[np.arange(prob.shape[0])[:, None], succ] = prob
            out.append(t)
        return tuple(out)

    def chain(self, recall: bool = True) -> Chain:
        """The chain to stop optimally on: losses ``loss`` (posterior recall) or ``p_cur``."""
        losses = list(self.loss if recall else self.p_cur)
        name = "posterior_recall" if recall else "posterior_no_recall"
        return Chain.build(losses, self.initial, list(self.transitions), self.costs, name=name)

    def walk(self, trace: Trace) -> Walk:
        """States and returned stages of every sample of ``trace``, stage by stage."""
        if trace.n_stages != self.n_stages:
            raise TraceError("pred", f"trace has {trace.n_stages} stages, the model {self.n_stages}")
        bins = score_bins(trace, self.config.score, self.score_edges)
        states = np.empty_like(bins)
        returned = np.empty_like(bins)
        rows = np.arange(trace.n_samples)
        states[:, 0], returned[:, 0] = bins[:, 0], 0
        for i in range(1, self.n_stages):
            inc = returned[:, i - 1]
            estimate = self.loss[i - 1][states[:, i - 1]]
            e = np.searchsorted(self.incumbent_edges[i], estimate, side="right")
            agree = (trace.pred[:, i] == trace.pred[rows, inc]) & self.config.agreement
            states[:, i] = encode(bins[:, i], e, agree, *self.bin_counts(i))
            returned[:, i] = np.where(self.keep_current[i][states[:, i]], i, inc)
        return Walk(states, returned)


def encode(b: IntArray, e: IntArray, agree: BoolArray, n_b: int, n_e: int) -> IntArray:
    """The state index ``b + n_b * (e + n_e * agree)``."""
    return np.asarray(b + n_b * (e + n_e * agree.astype(np.int64)), dtype=np.int64)


def score_bins(trace: Trace, score: str, edges: tuple[FloatArray, ...]) -> IntArray:
    """(N, n) the quantile bin of every stage's score."""
    s = stage_scores(trace, score)
    cols = [np.searchsorted(e, s[:, i], side="right") for i, e in enumerate(edges)]
    return np.stack(cols, axis=1).astype(np.int64)


# ------------------------------------------------------------------------------ estimation


def shrink(errors: FloatArray, counts: FloatArray, target: FloatArray, m: float) -> FloatArray:
    """``(errors + m * target) / (counts + m)``: a rate pulled toward ``target``."""
    return np.asarray((errors + m * target) / (counts + m))


def logit(p: FloatArray) -> FloatArray:
    q = np.clip(p, EPS, 1.0 - EPS)
    return np.asarray(np.log(q) - np.log1p(-q))


def sums(index: IntArray, weights: FloatArray, size: int) -> tuple[FloatArray, FloatArray]:
    """Per cell: the sum of ``weights`` and the number of samples."""
    return (
        np.bincount(index, weights=weights, minlength=size).astype(np.float64),
        np.bincount(index, minlength=size).astype(np.float64),
    )


def cell_error(
    err: BoolArray, b: IntArray, e: IntArray, a: BoolArray, n_b: int, n_e: int, m: float
) -> FloatArray:
    """Shrunk error rate of every state ``(b, e, a)``, flattened as :func:`encode` does."""
    w = err.astype(np.float64)
    ai = a.astype(np.int64)
    r_a = shrink(*sums(ai, w, 2), np.full(2, 0.5), 1.0)  # (2,): its own samples only, so that
    # agreeing answers (equal errors) get equal estimates whichever stage they come from
    r_ba = shrink(*sums(b + n_b * ai, w, 2 * n_b), np.repeat(r_a, n_b), m).reshape(2, n_b)
    r_ea = shrink(*sums(e + n_e * ai, w, 2 * n_e), np.repeat(r_a, n_e), m).reshape(2, n_e)
    lo = logit(r_ba)[:, None, :] + logit(r_ea)[:, :, None] - logit(r_a)[:, None, None]  # (2, E, B)
    target = 1.0 / (1.0 + np.exp(-lo))
    size = 2 * n_e * n_b
    return shrink(*sums(encode(b, e, a, n_b, n_e), w, size), target.reshape(-1), m)


def stage0_error(err: BoolArray, b: IntArray, n_b: int, m: float) -> FloatArray:
    """Shrunk error rate of each score bin of the first stage, toward the stage's rate."""
    w = err.astype(np.float64)
    overall = (w.sum() + 0.5) / (w.size + 1.0)
    return shrink(*sums(b, w, n_b), np.full(n_b, overall), m)


def transition_rows(prev: IntArray, obs: IntArray, coarse_of: IntArray, n_obs: int, m: float) -> FloatArray:
    """``P(obs | prev)`` (K_prev, n_obs) for every previous state, shrunk toward
    ``P(obs | coarse_of[prev])``, itself shrunk toward the marginal of ``obs`` (half a
    pseudo-count per cell). ``prev``, ``obs``: (N,); ``coarse_of``: (K_prev,) a coarser cell
    of every previous state."""
    k_prev, k_coarse = coarse_of.size, int(coarse_of.max()) + 1
    marginal = normalise_rows(np.bincount(obs, minlength=n_obs) + 0.5)
    c_counts = np.zeros((k_coarse, n_obs))
    np.add.at(c_counts, (coarse_of[prev], obs), 1.0)
    c_rows = (c_counts + m * marginal) / (c_counts.sum(axis=1, keepdims=True) + m)
    counts = np.zeros((k_prev, n_obs))
    np.add.at(counts, (prev, obs), 1.0)
    return np.asarray((counts + m * c_rows[coarse_of]) / (counts.sum(axis=1, keepdims=True) + m))


# ------------------------------------------------------------------------------ fitting


def fit_posterior(trace: Trace, config: PosteriorConfig) -> PosteriorModel:
    """Fit the posterior model on ``trace`` (the fit split), stage after stage."""
    s_edges = score_edges(trace, config.score, config.n_bins)
    bins = score_bins(trace, config.score, s_edges)
    wrong = ~trace.correct
    rows = np.arange(trace.n_samples)
    m, mt = config.shrinkage, config.transition_shrinkage
    n_b0 = s_edges[0].size + 1
    p_cur = [stage0_error(wrong[:, 0], bins[:, 0], n_b0, m)]
    p_inc = [np.ones(n_b0)]  # no incumbent: stage 0's own answer is returned
    i_edges = [np.empty(0)]
    state, ret = bins[:, 0], np.zeros(trace.n_samples, dtype=np.int64)
    observation, successor = [], []
    for i in range(1, trace.n_stages):
        keep = p_cur[-1] < p_inc[-1] + config.swap_margin
        estimate = np.where(keep, p_cur[-1], p_inc[-1])
        edges = quantile_edges(estimate[state], config.incumbent_bins)
        n_b, n_e = s_edges[i].size + 1, edges.size + 1
        e = np.searchsorted(edges, estimate[state], side="right").astype(np.int64)
        agree = (trace.pred[:, i] == trace.pred[rows, ret]) & config.agreement
        p_cur.append(cell_error(wrong[:, i], bins[:, i], e, agree, n_b, n_e, m))
        p_inc.append(cell_error(wrong[rows, ret], bins[:, i], e, agree, n_b, n_e, m))
        prob, succ = posterior_transition(
            state, bins[:, i], agree, estimate, edges, s_edges[i - 1].size + 1, n_b, mt
        )
        observation.append(prob)
        successor.append(succ)
        i_edges.append(edges)
        state = encode(bins[:, i], e, agree, n_b, n_e)
        ret = np.where(p_cur[-1][state] < p_inc[-1][state] + config.swap_margin, i, ret)
    initial = normalise_rows(np.bincount(bins[:, 0], minlength=n_b0) + 0.5)
    return PosteriorModel(
        config,
        s_edges,
        tuple(i_edges),
        tuple(p_cur),
        tuple(p_inc),
        initial,
        tuple(observation),
        tuple(successor),
        normalised_costs(trace),
    )


def posterior_transition(
    prev: IntArray,
    b: IntArray,
    agree: BoolArray,
    estimate: FloatArray,
    edges: FloatArray,
    n_b_prev: int,
    n_b: int,
    m: float,
) -> tuple[FloatArray, IntArray]:
    """The compact transition from the previous stage's states: probabilities and successor
    states, both (K_prev, 2 n_b), one column per outcome ``(b, agree)``.

    ``estimate`` (K_prev,): the estimated error of the answer each previous state returns,
    whose bin ``e`` (by ``edges``) every successor shares; the outcome probabilities are
    estimated from the samples (``prev``, ``b``, ``agree``: (N,)) and shrunk toward their
    distribution given the previous stage's score bin."""
    k_prev, n_e = estimate.size, edges.size + 1
    obs = b + n_b * agree.astype(np.int64)
    coarse_of = np.arange(k_prev) % n_b_prev
    prob = transition_rows(prev, obs, coarse_of, 2 * n_b, m)  # (K_prev, 2 * n_b)
    e_next = np.searchsorted(edges, estimate, side="right")[:, None]  # (K_prev, 1)
    o = np.arange(2 * n_b)[None, :]
    return prob, encode(o % n_b, e_next, o >= n_b, n_b, n_e)


# ------------------------------------------------------------------------------ solving


def solve_posterior(model: PosteriorModel, lam: ArrayLike, recall: bool = True) -> NoRecallSolution:
    """Optimal stopping on ``model`` for every ``lam`` (L,): the same backward induction as
    :func:`ttamer.solvers.no_recall.solve_no_recall` on :meth:`PosteriorModel.chain`, with each
    stage's expectation a gather over the ``2 B`` successors of every state instead of a
    product with the dense (K_i, K_{i+1}) matrix."""
    lams = check_lambda(lam)
    losses = model.loss if recall else model.p_cur
    w = lams[:, None] * losses[-1][None, :]
    stops: list[NDArray[np.bool_]] = [np.ones_like(w, dtype=bool)]
    for i in range(model.n_stages - 2, -1, -1):
        ahead = np.einsum("lzo,zo->lz", w[:, model.successor[i]], model.observation[i])
        cont = ahead + ((1.0 - lams) * model.costs[i + 1])[:, None]
        now = lams[:, None] * losses[i][None, :]
        stops.append(now <= cont)
        w = np.minimum(now, cont)
    stops.reverse()
    value = (1.0 - lams) * model.costs[0] + w @ model.initial
    return NoRecallSolution(lams, value, tuple(stops))
