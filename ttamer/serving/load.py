"""A load test (SPEC §5, the latency-throughput question Apparate asks): a bounded number of
requests arrive as a Poisson process at a given rate into an in-process batching server loop.

The loop is single-threaded and runs in real time: when the queue is empty it waits for the next
arrival; otherwise it takes every request that has arrived (at most ``max_batch``, oldest
first) as one batch and serves it with :func:`ttamer.serving.runtime.serve` (stage by stage,
early exits answered at once, the unfinished requests regrouped). A request's latency is its
answer time minus its arrival time (queueing included); throughput is the number of requests
over the time from the first arrival to the last answer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ttamer.serving.decide import DecisionRule
from ttamer.serving.runtime import StagedModel, serve

FloatArray = NDArray[np.float64]


def poisson_arrivals(rate: float, n: int, seed: int = 0) -> FloatArray:
    """(n,) arrival times in seconds (the first at 0) of a Poisson process of ``rate`` per second."""
    if rate <= 0 or n < 1:
        raise ValueError(f"need rate > 0 and n >= 1, got {rate} and {n}")
    gaps = np.random.default_rng(seed).exponential(1.0 / rate, size=n)
    gaps[0] = 0.0
    return np.cumsum(gaps)


@dataclass(frozen=True)
class LoadResult:
    """One load run: the offered ``rate`` (requests/s), every request's ``latency_s`` and
    ``stop`` stage, the batch sizes formed, and the achieved ``throughput`` (requests/s)."""

    rate: float
    latency_s: FloatArray
    stop: NDArray[np.int64]
    pred: NDArray[np.int64]
    batch_sizes: NDArray[np.int64]
    throughput: float
    duration_s: float

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
    arrivals = poisson_arrivals(rate, n, seed)
    latency = np.full(n, np.nan)
    stop = np.full(n, -1, dtype=np.int64)
    pred = np.full(n, -1, dtype=np.int64)
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
        out = serve(model, batch, rule, n=len(rows))
        answered = start + out.finish_s
        latency[rows] = answered - arrivals[rows]
        stop[rows], pred[rows] = out.stop, out.pred
        last_answer = max(last_answer, float(answered.max()))
        sizes.append(len(rows))
        nxt = end
    duration = last_answer - float(arrivals[0])
    return LoadResult(
        rate, latency, stop, pred, np.asarray(sizes, dtype=np.int64), n / max(duration, 1e-12), duration
    )
