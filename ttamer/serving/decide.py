"""Per-stage decision rules for serving (README: serving), compiled from a fitted policy.

A rule sees, after every exit head, the class probabilities of the requests still running, and
decides, vectorised over them, which ones stop and which stage's answer each of those returns.
Its per-request memory (best fitted loss so far, the stage where it was reached, the previous
prediction, the agreement run) lives in :class:`Memory`, whose rows follow the requests when the
runtime regroups the unfinished ones into a smaller batch.

The rules replicate the trace replay of :mod:`ttamer.policies` decision for decision:

* :class:`RecallRule`: the state of stage ``i`` is the quantile bin of the stage's score among
  the fit samples (the :class:`~ttamer.fitting.chain.FittedChain` edges, plus agreement with the
  previous prediction when the chain was fitted with it); stop iff ``lam * best <= index[i][s]``
  with ``best`` the smallest fitted loss so far; return the stage of ``best`` (earliest on ties);
* :class:`PosteriorRule`: the posterior model's state (score bin, bin of the incumbent's
  estimated error, agreement with the incumbent); stop iff the state lies in the optimal stop
  set for ``lam``; return the answer of smaller estimated error (or, without recall, the stage);
* :class:`ThresholdRule`: ``max_softmax`` (stop iff confidence ``>= t``) and ``entropy`` (stop
  iff entropy ``<= t`` nats), returning the stopping stage;
* :class:`PatienceRule`: stop once the prediction equals the ``K`` previous ones;
* :class:`FullModel`: never stop before the last stage, and decide nothing.

Every rule stops every request at the last stage.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from ttamer.fitting.chain import FittedChain
from ttamer.fitting.posterior import PosteriorModel, encode, solve_posterior
from ttamer.solvers.recall import solve_recall
from ttamer.traces.trace import scores_from_probs

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]


@dataclass
class Memory:
    """Per-request decision memory: arrays with one row per request still running."""

    arrays: dict[str, Any] = field(default_factory=dict)
    n: int = 0

    def __post_init__(self) -> None:
        sizes = {len(v) for v in self.arrays.values()}
        if len(sizes) > 1 or (sizes and self.n not in (0, *sizes)):
            raise ValueError(f"memory arrays of different lengths: {sorted(sizes)} (n = {self.n})")
        self.n = sizes.pop() if sizes else self.n

    def __len__(self) -> int:
        return self.n

    @staticmethod
    def concat(parts: Sequence[Memory]) -> Memory:
        """The memories of several groups of requests, one after another."""
        if len(parts) == 1:
            return parts[0]
        arrays = {k: np.concatenate([m.arrays[k] for m in parts]) for k in parts[0].arrays}
        return Memory(arrays, sum(len(m) for m in parts))

    def row(self, r: int) -> dict[str, Any]:
        """Request ``r``'s memory as Python scalars (the memory :meth:`DecisionRule.step_single` takes)."""
        return {k: v[r].item() for k, v in self.arrays.items()}

    def set_row(self, r: int, values: dict[str, Any]) -> None:
        """Store request ``r``'s memory back from Python scalars."""
        for k, v in values.items():
            self.arrays[k][r] = v

    def take(self, rows: NDArray[np.intp]) -> Memory:
        """The memory of the requests ``rows`` (in that order)."""
        return Memory({k: v[rows] for k, v in self.arrays.items()}, len(rows))


class DecisionRule(Protocol):
    """A per-stage decision rule."""

    @property
    def name(self) -> str: ...

    @property
    def knob(self) -> float: ...

    @property
    def n_stages(self) -> int: ...

    def start(self, n: int) -> Memory:
        """The memory of ``n`` new requests."""
        ...

    def step(self, stage: int, probs: FloatArray, memory: Memory) -> tuple[BoolArray, IntArray]:
        """After stage ``stage`` (0-based) with class probabilities ``probs`` (B, C) of the B
        requests in ``memory``: (stop (B,), returned stage (B,), meaningful where stop)."""
        ...

    def step_single(self, stage: int, probs: Sequence[float], memory: dict[str, Any]) -> tuple[bool, int]:
        """:meth:`step` for one request, on Python floats (the batch-1 fast path): ``probs``
        a list (C,), ``memory`` a dict (empty at stage 0); the same decisions as :meth:`step`."""
        ...


def numpy_sum(values: Sequence[float]) -> float:
    """``np.sum`` of a float64 vector, in numpy's own order (pairwise: eight running sums per
    block of at most 128, blocks halved recursively), so the batch-1 path reproduces the
    trace's float64 normalisation bit for bit without building an array."""
    n = len(values)
    if n < 8:
        total = 0.0
        for v in values:
            total += v
        return total
    if n > 128:
        half = n // 2
        half -= half % 8
        return numpy_sum(values[:half]) + numpy_sum(values[half:])
    r = list(values[:8])
    whole = n - n % 8
    for i in range(8, whole, 8):
        for k in range(8):
            r[k] += values[i + k]
    total = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
    for i in range(whole, n):
        total += values[i]
    return total


def normalised_row(values: Sequence[float]) -> list[float]:
    """One request's probabilities as :func:`as_probabilities` makes them (each divided by
    their float64 sum), as a Python list (C,)."""
    total = numpy_sum(values)
    return [v / total for v in values]


def argmax_of_row(probs: Sequence[float]) -> int:
    """The first class of largest probability (as ``np.argmax``)."""
    return probs.index(max(probs))


def confidence_of_row(probs: Sequence[float]) -> float:
    """:func:`confidence` of one request's probabilities (C,)."""
    return min(max(max(probs), 0.0), 1.0)


def stage_score_of_row(probs: Sequence[float], score: str) -> float:
    """:func:`stage_score` of one request's probabilities (C,), with the same float
    operations (``entropy`` through numpy, whose logarithm may differ from ``math.log``)."""
    if score == "max_softmax":
        return confidence_of_row(probs)
    if score == "margin":
        top2 = sorted(probs)[-2:]
        return top2[1] - top2[0]
    return float(stage_score(np.asarray(probs, dtype=np.float64)[None, :], score)[0])


def as_probabilities(probs: NDArray[np.floating]) -> FloatArray:
    """Probabilities as the trace stores them: float64, each row divided by its sum."""
    p = np.asarray(probs, dtype=np.float64)
    return p / p.sum(axis=1, keepdims=True)


def confidence(probs: FloatArray) -> FloatArray:
    """Max-softmax confidence, as in a trace's ``conf``: (B, C) -> (B,)."""
    return np.asarray(np.clip(probs.max(axis=1), 0.0, 1.0))


def stage_score(probs: FloatArray, score: str) -> FloatArray:
    """The fitted score of every request (higher = more confident), as
    :func:`ttamer.traces.trace.stage_scores` computes it: (B, C) -> (B,)."""
    if score == "max_softmax":
        return confidence(probs)
    return scores_from_probs(probs, score)


def _fresh(n: int, n_stages: int) -> dict[str, Any]:
    return {"prev": np.full(n, -1, dtype=np.int64)}


@dataclass
class RecallRule:
    """T-Tamer's index policy for one ``lam``, compiled from a fitted chain: per stage, the bin
    edges of the score, the fitted loss of every state and the index of every state."""

    fitted: FittedChain
    lam: float
    name: str = "recall"
    edges: tuple[FloatArray, ...] = field(init=False)
    losses: tuple[FloatArray, ...] = field(init=False)
    index: tuple[FloatArray, ...] = field(init=False)

    def __post_init__(self) -> None:
        sol = solve_recall(self.fitted.chain, np.asarray([self.lam], dtype=np.float64))
        self.index = tuple(np.asarray(x[0], dtype=np.float64) for x in sol.index)
        self.edges = tuple(np.asarray(e, dtype=np.float64) for e in self.fitted.edges)
        self.losses = tuple(np.asarray(v, dtype=np.float64) for v in self.fitted.chain.losses)
        # the batch-1 fast path works on Python lists of the same float64 values
        self._edges_lists = [[float(v) for v in e] for e in self.edges]
        self._losses_lists = [[float(v) for v in x] for x in self.losses]
        self._index_lists = [[float(v) for v in x] for x in self.index]
        self._score, self._agreement = self.fitted.config.score, self.fitted.config.agreement

    @property
    def knob(self) -> float:
        return self.lam

    @property
    def n_stages(self) -> int:
        return len(self.index)

    def start(self, n: int) -> Memory:
        return Memory(
            {
                **_fresh(n, self.n_stages),
                "best": np.full(n, np.inf),
                "arg": np.zeros(n, dtype=np.int64),
            }
        )

    def states(self, stage: int, probs: FloatArray, prev: IntArray) -> IntArray:
        """The fitted state of every request at ``stage``."""
        config = self.fitted.config
        score = stage_score(probs, config.score)
        state = np.searchsorted(self.edges[stage], score, side="right").astype(np.int64)
        if config.agreement and stage > 0:
            agree = probs.argmax(axis=1) == prev
            state += agree * (self.edges[stage].size + 1)
        return state

    def step(self, stage: int, probs: FloatArray, memory: Memory) -> tuple[BoolArray, IntArray]:
        m = memory.arrays
        state = self.states(stage, probs, m["prev"].astype(np.int64))
        loss = self.losses[stage][state]
        better = loss < m["best"]  # strict: the earliest stage on ties
        m["best"] = np.where(better, loss, m["best"])
        m["arg"] = np.where(better, stage, m["arg"])
        m["prev"] = probs.argmax(axis=1)
        stop = self.lam * m["best"] <= self.index[stage][state]
        if stage == self.n_stages - 1:
            stop = np.ones_like(stop)
        return np.asarray(stop, dtype=bool), np.asarray(m["arg"], dtype=np.int64)

    def step_single(self, stage: int, probs: Sequence[float], memory: dict[str, Any]) -> tuple[bool, int]:
        edges = self._edges_lists[stage]
        state = bisect_right(edges, stage_score_of_row(probs, self._score))  # = searchsorted(side="right")
        if self._agreement:
            pred = argmax_of_row(probs)
            if stage > 0 and pred == memory["prev"]:
                state += len(edges) + 1
            memory["prev"] = pred
        loss = self._losses_lists[stage][state]
        if stage == 0 or loss < memory["best"]:
            memory["best"], memory["arg"] = loss, stage
        last = stage == len(self._index_lists) - 1
        return last or self.lam * memory["best"] <= self._index_lists[stage][state], memory["arg"]


@dataclass
class PosteriorRule:
    """Optimal stopping on a posterior model (:mod:`ttamer.fitting.posterior`) for one ``lam``:
    ``posterior_recall`` (``recall=True``, returns the answer of smaller estimated error) or
    ``posterior_no_recall``. Per request it remembers the previous state, the incumbent's stage
    and its predicted class; each stage bins the score, bins the incumbent's estimated error,
    compares predictions, and looks the state up in the stop set."""

    model: PosteriorModel
    lam: float
    recall: bool = True
    stop_sets: tuple[BoolArray, ...] = field(init=False)

    def __post_init__(self) -> None:
        sol = solve_posterior(self.model, np.asarray([self.lam], dtype=np.float64), self.recall)
        self.stop_sets = tuple(np.asarray(x[0], dtype=bool) for x in sol.stop)
        m = self.model
        self._loss, self._keep = m.loss, m.keep_current
        self._n_b, self._n_e = zip(*(m.bin_counts(i) for i in range(m.n_stages)), strict=True)
        # the batch-1 fast path works on Python lists of the same float64 values
        self._score_edges_lists = [[float(v) for v in e] for e in m.score_edges]
        self._inc_edges_lists = [[float(v) for v in e] for e in m.incumbent_edges]
        self._loss_lists = [[float(v) for v in x] for x in self._loss]
        self._keep_lists = [[bool(v) for v in x] for x in self._keep]
        self._stop_lists = [[bool(v) for v in x] for x in self.stop_sets]

    @property
    def name(self) -> str:
        return "posterior_recall" if self.recall else "posterior_no_recall"

    @property
    def knob(self) -> float:
        return self.lam

    @property
    def n_stages(self) -> int:
        return len(self.stop_sets)

    def start(self, n: int) -> Memory:
        zeros = np.zeros(n, dtype=np.int64)
        return Memory({"state": zeros, "ret": zeros.copy(), "inc_pred": zeros.copy()})

    def step(self, stage: int, probs: FloatArray, memory: Memory) -> tuple[BoolArray, IntArray]:
        m = memory.arrays
        b = np.searchsorted(
            self.model.score_edges[stage], stage_score(probs, self.model.config.score), side="right"
        )
        pred = probs.argmax(axis=1)
        if stage == 0:
            state, keep = b.astype(np.int64), np.ones(b.size, dtype=bool)
        else:
            est = self._loss[stage - 1][m["state"]]
            e = np.searchsorted(self.model.incumbent_edges[stage], est, side="right")
            agree = (pred == m["inc_pred"]) & self.model.config.agreement
            state = encode(b, e, agree, self._n_b[stage], self._n_e[stage])
            keep = self._keep[stage][state]
        m["state"] = state
        m["ret"] = np.where(keep, stage, m["ret"])
        m["inc_pred"] = np.where(keep, pred, m["inc_pred"])
        stop = self.stop_sets[stage][state]
        returned = m["ret"] if self.recall else np.full(state.size, stage, dtype=np.int64)
        return np.asarray(stop, dtype=bool), np.asarray(returned, dtype=np.int64)

    def step_single(self, stage: int, probs: Sequence[float], memory: dict[str, Any]) -> tuple[bool, int]:
        b = bisect_right(self._score_edges_lists[stage], stage_score_of_row(probs, self.model.config.score))
        pred = argmax_of_row(probs)
        if stage == 0:
            state, keep = b, True
        else:
            e = bisect_right(self._inc_edges_lists[stage], self._loss_lists[stage - 1][memory["state"]])
            agree = int(pred == memory["inc_pred"] and self.model.config.agreement)
            state = b + self._n_b[stage] * (e + self._n_e[stage] * agree)
            keep = self._keep_lists[stage][state]
        memory["state"] = state
        if keep:
            memory["ret"], memory["inc_pred"] = stage, pred
        return self._stop_lists[stage][state], memory["ret"] if self.recall else stage


@dataclass
class ThresholdRule:
    """One threshold for all stages: ``max_softmax`` (stop iff confidence ``>= t``) or
    ``entropy`` (stop iff entropy ``<= t`` nats); the stopping stage is returned."""

    score: str
    t: float
    n_stages: int

    def __post_init__(self) -> None:
        if self.score not in ("max_softmax", "entropy"):
            raise ValueError(f"threshold rule: score must be max_softmax or entropy, got {self.score!r}")

    @property
    def name(self) -> str:
        return self.score

    @property
    def knob(self) -> float:
        return self.t

    def start(self, n: int) -> Memory:
        return Memory(n=n)

    def step(self, stage: int, probs: FloatArray, memory: Memory) -> tuple[BoolArray, IntArray]:
        if self.score == "max_softmax":
            stop = confidence(probs) >= self.t
        else:  # as the replay: -entropy >= -t
            stop = stage_score(probs, "entropy") >= -self.t
        if stage == self.n_stages - 1:
            stop = np.ones_like(stop)
        return np.asarray(stop, dtype=bool), np.full(len(probs), stage, dtype=np.int64)

    def step_single(self, stage: int, probs: Sequence[float], memory: dict[str, Any]) -> tuple[bool, int]:
        if stage == self.n_stages - 1:
            return True, stage
        if self.score == "max_softmax":
            return confidence_of_row(probs) >= self.t, stage
        return stage_score_of_row(probs, "entropy") >= -self.t, stage


@dataclass
class PatienceRule:
    """Stop at the first stage whose prediction equals the ``k`` previous stages' predictions."""

    k: int
    n_stages: int
    name: str = "patience"

    @property
    def knob(self) -> float:
        return float(self.k)

    def start(self, n: int) -> Memory:
        return Memory({**_fresh(n, self.n_stages), "run": np.zeros(n, dtype=np.int64)})

    def step(self, stage: int, probs: FloatArray, memory: Memory) -> tuple[BoolArray, IntArray]:
        m = memory.arrays
        pred = probs.argmax(axis=1)
        m["run"] = np.where((stage > 0) & (pred == m["prev"]), m["run"] + 1, 0)
        m["prev"] = pred
        stop = m["run"] >= self.k
        if stage == self.n_stages - 1:
            stop = np.ones_like(stop)
        return np.asarray(stop, dtype=bool), np.full(len(probs), stage, dtype=np.int64)

    def step_single(self, stage: int, probs: Sequence[float], memory: dict[str, Any]) -> tuple[bool, int]:
        pred = argmax_of_row(probs)
        run = memory["run"] + 1 if stage > 0 and pred == memory["prev"] else 0
        memory["run"], memory["prev"] = run, pred
        return stage == self.n_stages - 1 or run >= self.k, stage


@dataclass
class FullModel:
    """Run every stage; no decision is computed before the last stage."""

    n_stages: int
    name: str = "full"
    knob: float = float("nan")

    def start(self, n: int) -> Memory:
        return Memory(n=n)

    def step(self, stage: int, probs: FloatArray, memory: Memory) -> tuple[BoolArray, IntArray]:
        last = stage == self.n_stages - 1
        return np.full(len(probs), last, dtype=bool), np.full(len(probs), stage, dtype=np.int64)

    def step_single(self, stage: int, probs: Sequence[float], memory: dict[str, Any]) -> tuple[bool, int]:
        return stage == self.n_stages - 1, stage
