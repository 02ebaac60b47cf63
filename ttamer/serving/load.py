"""A load test (README: serving; the latency-throughput question Apparate asks): a bounded number of
requests arrive as a Poisson process at a given rate into an in-process batching server loop.

Both loops are single-threaded and run in real time; when nothing is queued they wait for the
next arrival. A request's latency is its answer time minus its arrival time (queueing
included); throughput is the number of requests over the time from the first arrival to the
last answer.

* :func:`run_load` (batch by batch): take every request that has arrived (at most
  ``max_batch``, oldest first) as one batch and serve it with
  :func:`ttamer.serving.runtime.serve` (stage by stage, early exits answered at once, the
  unfinished requests regrouped); new arrivals wait until the whole batch is done.
* :func:`run_load_stagewise` (stage by stage): every stage has a queue; arrivals join stage
  0's, and after each stage the unfinished requests join the next stage's queue, where they
  are merged with the unfinished requests of other batches. Each step runs one stage on at
  most ``max_batch`` of its queue: while the server keeps up (fewer than ``max_batch``
  requests wait for stage 0), the deepest stage with queued requests, so in-flight requests
  finish first; once it is saturated, the stage with the most queued requests (counting at
  most ``max_batch``; ties go to the deeper stage), so that the few requests that continue
  are batched together instead of running later stages alone; and at any time the stage of a
  request that has waited longer than ``max_wait_s``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from ttamer.serving.checks import check_positive_int, check_rate, check_requests, check_wait
from ttamer.serving.decide import DecisionRule, Memory
from ttamer.serving.runtime import StagedModel, regroup, run_stage, serve

FloatArray = NDArray[np.float64]


def poisson_arrivals(rate: float, n: int, seed: int = 0) -> FloatArray:
    """(n,) arrival times in seconds (the first at 0) of a Poisson process of ``rate`` per second."""
    rate = check_rate(rate)
    n = check_positive_int(n, "n")
    gaps = np.random.default_rng(seed).exponential(1.0 / rate, size=n)
    gaps[0] = 0.0
    return np.cumsum(gaps)


@dataclass(frozen=True)
class LoadResult:
    """One load run: the offered ``rate`` (requests/s), every request's ``latency_s``, ``stop``
    stage, ``returned`` stage and prediction ``pred``, the batch sizes formed, and the achieved
    ``throughput`` (requests/s)."""

    rate: float
    latency_s: FloatArray
    stop: NDArray[np.int64]
    returned: NDArray[np.int64]
    pred: NDArray[np.int64]
    batch_sizes: NDArray[np.int64]
    throughput: float
    duration_s: float

    @staticmethod
    def of(
        rate: float,
        arrivals: FloatArray,
        latency: FloatArray,
        outcome: tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]],
        sizes: list[int],
        last_answer: float,
    ) -> LoadResult:
        """The result of a run whose last answer came ``last_answer`` seconds after the start;
        ``outcome``: (stop, returned, pred)."""
        duration = last_answer - float(arrivals[0])
        sizes_arr = np.asarray(sizes, dtype=np.int64)
        return LoadResult(rate, latency, *outcome, sizes_arr, len(latency) / max(duration, 1e-12), duration)

    def summary(self) -> dict[str, float]:
        ms = self.latency_s * 1e3
        return {
            "offered_rate": self.rate,
            "n_requests": float(len(ms)),
            "p50_ms": float(np.percentile(ms, 50)),
            "p95_ms": float(np.percentile(ms, 95)),
            "mean_ms": float(ms.mean()),
            "throughput": self.throughput,
            "mean_batch": float(self.batch_sizes.mean()),
            "duration_s": self.duration_s,
        }


def _wait_until(deadline: float) -> None:
    """Sleep, then spin, until ``time.perf_counter() >= deadline``."""
    while True:
        left = deadline - time.perf_counter()
        if left <= 0:
            return
        if left > 2e-3:
            time.sleep(left - 1e-3)


def run_load(
    model: StagedModel,
    requests: Any,
    n: int,
    rule: DecisionRule,
    rate: float,
    max_batch: int = 32,
    seed: int = 0,
) -> LoadResult:
    """Serve the ``n`` requests of ``requests`` (rows, in order), arriving as a Poisson process
    of ``rate`` per second, with dynamic batching of at most ``max_batch``."""
    n = check_requests(requests, n)
    max_batch = check_positive_int(max_batch, "max_batch")
    arrivals = poisson_arrivals(rate, n, seed)
    latency = np.full(n, np.nan)
    stop, returned, pred = (np.full(n, -1, dtype=np.int64) for _ in range(3))
    sizes: list[int] = []
    t0 = time.perf_counter()
    nxt, last_answer = 0, 0.0
    while nxt < n:
        if arrivals[nxt] > time.perf_counter() - t0:
            _wait_until(t0 + arrivals[nxt])
        now = time.perf_counter() - t0
        end = min(int(np.searchsorted(arrivals, now, side="right")), nxt + max_batch, n)
        end = max(end, nxt + 1)
        rows = np.arange(nxt, end)
        start = time.perf_counter() - t0
        batch = model.take(requests, rows)
        out = serve(model, batch, rule, n=len(rows), check=False)
        answered = start + out.finish_s
        latency[rows] = answered - arrivals[rows]
        stop[rows], returned[rows], pred[rows] = out.stop, out.returned, out.pred
        last_answer = max(last_answer, float(answered.max()))
        sizes.append(len(rows))
        nxt = end
    return LoadResult.of(rate, arrivals, latency, (stop, returned, pred), sizes, last_answer)


@dataclass
class _Group:
    """Requests queued together at a stage: their ids (rows of the requests), their batch state
    (None before stage 0) and decision memory."""

    ids: NDArray[np.int64]
    state: Any
    memory: Memory

    def take(self, model: StagedModel, rows: NDArray[np.intp]) -> _Group:
        """The requests ``rows`` of this group."""
        state = None if self.state is None else model.take(self.state, rows)
        return _Group(self.ids[rows], state, self.memory.take(rows))


def _next_stage(
    queues: list[list[_Group]], arrivals: FloatArray, now: float, max_batch: int, max_wait_s: float | None
) -> int:
    """The stage to run: that of a request waiting longer than ``max_wait_s`` (the oldest);
    else, while fewer than ``max_batch`` requests wait for stage 0 (the server keeps up), the
    deepest stage with queued requests (in-flight requests finish first, as batch by batch);
    else (saturated) the one with the most queued requests, at most ``max_batch`` counted, the
    deepest on ties (the stragglers of several batches gather into full batches)."""
    sizes = [sum(len(g.ids) for g in q) for q in queues]
    if max_wait_s is not None:
        oldest = [min(float(arrivals[g.ids].min()) for g in q) if q else np.inf for q in queues]
        i = int(np.argmin(oldest))
        if now - oldest[i] > max_wait_s:
            return i
    if sizes[0] < max_batch:
        return max(i for i, size in enumerate(sizes) if size)
    capped = [min(size, max_batch) for size in sizes]
    return len(capped) - 1 - int(np.argmax(capped[::-1]))


def _pop_batch(model: StagedModel, queue: list[_Group], max_batch: int) -> list[_Group]:
    """Up to ``max_batch`` requests from the front of ``queue`` (the last group split if needed)."""
    taken: list[_Group] = []
    room = max_batch
    while queue and room:
        g = queue.pop(0)
        if len(g.ids) > room:  # split: the first ``room`` requests go now
            queue.insert(0, g.take(model, np.arange(room, len(g.ids))))
            g = g.take(model, np.arange(room))
        taken.append(g)
        room -= len(g.ids)
    return taken


@torch.inference_mode()
def run_load_stagewise(
    model: StagedModel,
    requests: Any,
    n: int,
    rule: DecisionRule,
    rate: float,
    max_batch: int = 32,
    seed: int = 0,
    max_wait_s: float | None = None,
) -> LoadResult:
    """Serve the ``n`` requests of ``requests`` (rows, in order), arriving as a Poisson process
    of ``rate`` per second, with stage-level batching (module docstring); the model must merge
    batch states (``model.merge``). ``batch_sizes`` in the result: the size of every stage run."""
    n = check_requests(requests, n)
    max_batch = check_positive_int(max_batch, "max_batch")
    max_wait_s = check_wait(max_wait_s)
    arrivals = poisson_arrivals(rate, n, seed)
    n_stages = model.n_stages
    latency = np.full(n, np.nan)
    stop, returned, pred = (np.full(n, -1, dtype=np.int64) for _ in range(3))
    preds = np.full((n, n_stages), -1, dtype=np.int64)
    queues: list[list[_Group]] = [[] for _ in range(n_stages)]
    sizes: list[int] = []
    t0 = time.perf_counter()
    nxt, answered, last_answer = 0, 0, 0.0
    while answered < n:
        now = time.perf_counter() - t0
        end = int(np.searchsorted(arrivals, now, side="right"))
        if end > nxt:
            queues[0].append(_Group(np.arange(nxt, end), None, rule.start(end - nxt)))
            nxt = end
        if not any(queues):
            _wait_until(t0 + arrivals[nxt])
            continue
        i = _next_stage(queues, arrivals, now, max_batch, max_wait_s)
        groups = _pop_batch(model, queues[i], max_batch)
        ids = np.concatenate([g.ids for g in groups])
        if i == 0:
            state = model.take(requests, ids)
        else:
            state = model.merge([g.state for g in groups])
        step = run_stage(model, rule, i, state, Memory.concat([g.memory for g in groups]))
        if step.pred is not None:
            preds[ids, i] = step.pred
        done = np.flatnonzero(step.halt)
        if done.size:
            rows = ids[done]
            stop[rows], returned[rows] = i, step.returned[done]
            pred[rows] = preds[rows, returned[rows]]
            latency[rows] = step.decided_at - t0 - arrivals[rows]
            last_answer = max(last_answer, step.decided_at - t0)
            answered += done.size
        keep = np.flatnonzero(~step.halt)
        if keep.size:
            state, memory, _ = regroup(model, step, keep)
            queues[i + 1].append(_Group(ids[keep], state, memory))
        sizes.append(len(ids))
    return LoadResult.of(rate, arrivals, latency, (stop, returned, pred), sizes, last_answer)
