"""Scoring throughput of every trace policy (``ttamer.policies.POLICIES``) on a large synthetic
trace: by default a 100,000-sample fit split and a 1,000,000-sample test split of a 12-stage,
two-class cascade (``labels``, ``pred``, ``conf`` and ``probs``), every knob grid set to 64
values.

For each policy and each repeat, with a fresh :class:`ttamer.policies.ScoringContext` (so the
chain fit and the test-state mapping are not cached across repeats or policies):

* ``total_s``: ``policy.decide(ctx)`` plus ``score_decisions`` on the full test split;
* ``fit_s``: the same on a one-sample test split: everything that depends on the fit split only
  (chain fit and solve, percentile grid, threshold tuning);
* ``test_s = total_s - fit_s`` (medians over the repeats): the scoring of the test samples.

Evaluations per second = test samples x stages x knobs / ``test_s``, where knobs is the number
of knob values the policy really returned: 64, except ``static`` (one per stage: 12) and
``oracle`` (1). ``patience`` sweeps K = 1..64; with 12 stages every K >= 11 stops at the last
stage, so 54 of its knob values give the same decisions (each is still evaluated).

Reference, "one plain numpy pass over the same arrays": with the same 64 thresholds ``t``
(sorted) and the test split's ``conf`` (N, n), the time to evaluate ``conf >= t`` for every
knob, sample and stage and to reduce each (knob, sample) row of ``n`` booleans with
``argmax`` into a preallocated (64, N) int64 array, in chunks of 16,384 samples::

    out[:, a:b] = np.argmax(conf[a:b][None, :, :] >= t[:, None, None], axis=2)

(64 x N x n evaluations; median over the repeats, same process, same numpy). The ratio to it
is ``numpy_pass_evals_per_second / evals_per_second`` of the policy: how many times slower
than that pass one evaluation is.

Peak memory per policy: a separate, untimed run of ``decide`` plus ``score_decisions`` under
``tracemalloc`` (which numpy reports its array buffers to): the peak of what the policy
allocates on top of the traces already in memory. ``ru_maxrss`` of the process at the end is
reported in ``machine``.

Prints a table, then as its last line one JSON object (also written atomically to ``--out``).

    python scripts/bench_scoring.py [--samples 1000000] [--fit-samples 100000] [--stages 12]
        [--knobs 64] [--repeats 3] [--quick] [--no-memory] [--out FILE]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ttamer.fileio import atomic_write_bytes
from ttamer.policies import POLICIES, ScoringContext, TracePolicy, make_policy, score_decisions
from ttamer.traces.trace import Trace

NUMPY_PASS_CHUNK = 16_384


def synthetic_trace(n_samples: int, n_stages: int, seed: int) -> Trace:
    """A two-class cascade whose stages grow more accurate and whose confidence tracks
    correctness: a per-sample difficulty ``d``, stage skill ``a_i``, correct with probability
    ``sigmoid(a_i - 3 d)``; ``conf`` in (0.5, 1) is noisier evidence of the same; ``probs``
    puts ``conf`` on the predicted class."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n_samples)
    skill = np.linspace(-0.5, 2.5, n_stages)
    logit = skill[None, :] - 3.0 * rng.random(n_samples)[:, None]  # (N, n)
    logit += 0.5 * rng.standard_normal(logit.shape)
    correct = rng.random(logit.shape) < 1.0 / (1.0 + np.exp(-logit))
    pred = np.where(correct, labels[:, None], 1 - labels[:, None])
    evidence = logit + np.where(correct, 1.0, -1.0) + rng.standard_normal(logit.shape)
    del logit, correct
    conf = 0.5 + 0.5 / (1.0 + np.exp(-evidence))
    del evidence
    probs = np.empty((n_samples, n_stages, 2))
    probs[:, :, 0] = np.where(pred == 0, conf, 1.0 - conf)
    probs[:, :, 1] = 1.0 - probs[:, :, 0]
    cost = np.linspace(1.0, 4.0, n_stages)
    return Trace.build(labels, pred, conf, cost, cost_unit="ms", probs=probs)


def policies_with_knobs(n_knobs: int) -> dict[str, TracePolicy]:
    """Every registered policy with its knob grid set to ``n_knobs`` values where it can be."""
    pct = tuple(float(p) for p in np.linspace(1.0, 99.0, n_knobs - 2))  # + 2 fixed end points
    params: dict[str, dict[str, Any]] = {
        "recall": {"n_lams": n_knobs},
        "no_recall": {"n_lams": n_knobs},
        "posterior_recall": {"n_lams": n_knobs},  # its cross-validation counts as fitting (fit_s)
        "posterior_no_recall": {"n_lams": n_knobs},
        "auto": {"candidates": ("no_recall", "max_softmax")},  # the chosen one's grid
        "max_softmax": {"percentiles": pct},
        "entropy": {"percentiles": pct},
        "threshold_with_recall": {"percentiles": pct},
        "patience": {"ks": tuple(range(1, n_knobs + 1))},
        "per_stage_threshold": {"budgets": tuple(float(b) for b in np.linspace(0.0, 20.0, n_knobs))},
        "static": {},  # one knob value per stage
        "oracle": {},  # one point
    }
    missing = set(POLICIES) - set(params)
    if missing:
        raise SystemExit(f"no knob grid for policies {sorted(missing)}")
    return {name: make_policy(name, **params[name]) for name in POLICIES}


def _run(policy: TracePolicy, fit: Trace, test: Trace) -> tuple[float, float, int]:
    """Wall and CPU seconds of decide + score_decisions with a fresh context, and the number of
    knob values."""
    t0, c0 = time.perf_counter(), time.process_time()
    ctx = ScoringContext(fit, test)
    decisions = policy.decide(ctx)
    score_decisions(decisions, test)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return wall, cpu, int(decisions.knobs.size)


def _peak_bytes(policy: TracePolicy, fit: Trace, test: Trace) -> int:
    """Peak bytes allocated (numpy buffers included) by decide + score_decisions."""
    gc.collect()
    tracemalloc.start()
    try:
        ctx = ScoringContext(fit, test)
        decisions = policy.decide(ctx)
        score_decisions(decisions, test)
        del ctx, decisions
        return int(tracemalloc.get_traced_memory()[1])
    finally:
        tracemalloc.stop()


def numpy_pass(conf: np.ndarray, thresholds: np.ndarray, reduce: bool = True) -> np.ndarray | None:
    """The reference pass: first stage with ``conf >= t`` per (knob, sample), by ``argmax`` over
    a chunk's (M, chunk, n) comparison. ``reduce=False``: the comparisons alone (no output)."""
    m, n_samples = thresholds.size, conf.shape[0]
    out = np.empty((m, n_samples), dtype=np.int64) if reduce else None
    t = thresholds[:, None, None]
    for a in range(0, n_samples, NUMPY_PASS_CHUNK):
        b = min(a + NUMPY_PASS_CHUNK, n_samples)
        ge = conf[a:b][None, :, :] >= t
        if out is not None:
            out[:, a:b] = np.argmax(ge, axis=2)
    return out


def _median_seconds(fn: Any, repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``fn()``."""
    walls, cpus = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


@dataclass
class Row:
    policy: str
    knobs: int
    total_s: float
    fit_s: float
    test_s: float
    test_cpu_s: float
    evals_per_second: float
    ratio: float
    peak_mb: float | None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _machine(load_at_start: float) -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "load_average_1min_at_start": round(load_at_start, 2),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=1_000_000, help="test-split samples")
    ap.add_argument("--fit-samples", type=int, default=100_000, help="fit-split samples")
    ap.add_argument("--stages", type=int, default=12)
    ap.add_argument("--knobs", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--policies", default=",".join(POLICIES), help="comma-separated subset")
    ap.add_argument("--quick", action="store_true", help="20,000 test / 5,000 fit samples, 1 repeat")
    ap.add_argument("--no-memory", action="store_true", help="skip the tracemalloc pass")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON result here")
    args = ap.parse_args(argv)
    if args.quick:
        args.samples, args.fit_samples, args.repeats = 20_000, 5_000, 1
    if args.knobs < 3 or args.stages < 2 or args.repeats < 1:
        ap.error("need --knobs >= 3, --stages >= 2, --repeats >= 1")
    args.chosen = [p for p in args.policies.split(",") if p]
    unknown = sorted(set(args.chosen) - set(POLICIES))
    if unknown:
        ap.error(f"unknown policies {unknown}")
    return args


@dataclass(frozen=True)
class Reference:
    """The plain numpy pass over the same test split: seconds, CPU seconds, seconds of its
    comparisons alone, and evaluations (sample x stage x knob) per second."""

    seconds: float
    cpu_s: float
    compare_s: float
    evals_per_second: float


def _reference(fit: Trace, test: Trace, args: argparse.Namespace) -> Reference:
    thresholds = np.sort(np.quantile(fit.conf, np.linspace(0.0, 1.0, args.knobs)))
    ref_s, ref_cpu_s = _median_seconds(lambda: numpy_pass(test.conf, thresholds), args.repeats)
    cmp_s, _ = _median_seconds(lambda: numpy_pass(test.conf, thresholds, reduce=False), args.repeats)
    return Reference(ref_s, ref_cpu_s, cmp_s, args.samples * args.stages * args.knobs / ref_s)


def _time_policy(
    name: str,
    policy: TracePolicy,
    traces: tuple[Trace, Trace, Trace],
    args: argparse.Namespace,
    ref: Reference,
) -> tuple[Row, list[float]]:
    """One policy's row (medians over the repeats; the fit time is that on a 1-sample test
    split) and its total seconds of every repeat. ``traces``: fit, test and the 1-sample test."""
    fit, test, tiny = traces
    totals, total_cpus, fits, fit_cpus, knobs = [], [], [], [], 0
    for _ in range(args.repeats):
        gc.collect()
        wall, cpu, knobs = _run(policy, fit, test)
        totals.append(wall)
        total_cpus.append(cpu)
        gc.collect()
        wall, cpu, _ = _run(policy, fit, tiny)
        fits.append(wall)
        fit_cpus.append(cpu)
    total_s, fit_s = statistics.median(totals), statistics.median(fits)
    test_s = max(total_s - fit_s, 1e-9)
    test_cpu_s = max(statistics.median(total_cpus) - statistics.median(fit_cpus), 1e-9)
    eps = args.samples * args.stages * knobs / test_s
    peak = None if args.no_memory else _peak_bytes(policy, fit, test) / 2**20
    gc.collect()
    mem = "" if peak is None else f", peak {peak:,.0f} MiB"
    runs = ", ".join(f"{t:.2f}" for t in totals)
    print(f"  {name}: {runs} s (fit {fit_s:.2f} s){mem}", file=sys.stderr)
    return Row(name, knobs, total_s, fit_s, test_s, test_cpu_s, eps, ref.evals_per_second / eps, peak), totals


def _print_table(rows: list[Row], ref: Reference, args: argparse.Namespace) -> None:
    header = (
        f"{'policy':<22} {'knobs':>5} {'total s':>8} {'fit s':>7} {'test s':>7} {'test cpu':>8} "
        f"{'evals/s':>10} {'ratio':>6} {'peak MiB':>9}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        peak_text = "-" if r.peak_mb is None else f"{r.peak_mb:,.0f}"
        print(
            f"{r.policy:<22} {r.knobs:>5} {r.total_s:>8.3f} {r.fit_s:>7.3f} {r.test_s:>7.3f} "
            f"{r.test_cpu_s:>8.3f} {r.evals_per_second:>10.3g} {r.ratio:>6.2f} {peak_text:>9}"
        )
    print(
        f"{'numpy pass (reference)':<22} {args.knobs:>5} {ref.seconds:>8.3f} {0.0:>7.3f} {ref.seconds:>7.3f} "
        f"{ref.cpu_s:>8.3f} {ref.evals_per_second:>10.3g} {1.0:>6.2f} {'-':>9}"
    )
    print(f"(its comparisons alone, without argmax: {ref.compare_s:.3f} s)")


def _result(
    rows: list[Row],
    all_totals: dict[str, list[float]],
    ref: Reference,
    args: argparse.Namespace,
    wall_s: float,
) -> dict[str, Any]:
    return {
        "evals_per_second": {r.policy: r.evals_per_second for r in rows},
        "ratio_to_numpy_pass": {r.policy: r.ratio for r in rows},
        "numpy_pass_evals_per_second": ref.evals_per_second,
        "numpy_pass_s": ref.seconds,
        "numpy_pass_cpu_s": ref.cpu_s,
        "numpy_compare_only_s": ref.compare_s,
        "knobs_per_policy": {r.policy: r.knobs for r in rows},
        "total_s": {r.policy: r.total_s for r in rows},
        "total_s_each_repeat": all_totals,
        "fit_s": {r.policy: r.fit_s for r in rows},
        "test_s": {r.policy: r.test_s for r in rows},
        "test_cpu_s": {r.policy: r.test_cpu_s for r in rows},
        "peak_mb": {r.policy: r.peak_mb for r in rows},
        "samples": args.samples,
        "fit_samples": args.fit_samples,
        "stages": args.stages,
        "knobs": args.knobs,
        "repeats": args.repeats,
        "wall_s": wall_s,
    }


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    wall0 = time.perf_counter()
    load_at_start = os.getloadavg()[0]
    t0 = time.perf_counter()
    fit = synthetic_trace(args.fit_samples, args.stages, args.seed)
    test = synthetic_trace(args.samples, args.stages, args.seed + 1)
    tiny = synthetic_trace(1, args.stages, args.seed + 2)
    build_s = time.perf_counter() - t0
    print(
        f"traces: fit {fit.n_samples:,} / test {test.n_samples:,} samples x {test.n_stages} stages "
        f"(2 classes, probs), built in {build_s:.1f} s",
        file=sys.stderr,
    )
    ref = _reference(fit, test, args)
    policies = policies_with_knobs(args.knobs)
    rows: list[Row] = []
    all_totals: dict[str, list[float]] = {}
    for name in args.chosen:
        row, all_totals[name] = _time_policy(name, policies[name], (fit, test, tiny), args, ref)
        rows.append(row)
    wall_s = time.perf_counter() - wall0
    _print_table(rows, ref, args)
    load_now = os.getloadavg()[0]
    print(f"wall time {wall_s:.1f} s; 1-min load average {load_at_start:.2f} at start, {load_now:.2f} at end")
    result = {**_result(rows, all_totals, ref, args, wall_s), "machine": _machine(load_at_start)}
    line = json.dumps(result, sort_keys=True)
    if args.out is not None:
        atomic_write_bytes(args.out, (json.dumps(result, indent=2, sort_keys=True) + "\n").encode())
    print(line)

if __name__ == "__main__":
    main()
