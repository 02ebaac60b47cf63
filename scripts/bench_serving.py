"""Serve an early-exit model for real (README: serving) and compare with the trace replay.

1. The workload's model is trained, or loaded with its trace from the cache (weights persisted
   next to the trace: ``ttamer.workloads.trained.cached_model``); the workload config is its
   dataclass's defaults, the values ``ttamer-run workload=<name>`` composes (with the default
   data root), so the cache key is the same. The workload's implementation provides the
   held-out samples as requests (``held_out_requests``).
2. The trace's samples are split at random (``--fit-fraction``, seeded) into a fit split and a
   held-out split; the chain is fitted on the fit split (the workload's ``fit`` config).
3. Knobs, chosen on the fit split only (in-sample replay): the target accuracy is the full
   model's (last exit's) fit-split accuracy minus ``--delta`` points; for recall (lam on the
   default grid), max_softmax (t) and patience (K) the knob with the least replayed mean cost
   that reaches it (the most accurate one when none does).
4. Predicted: the replay of those knobs on the held-out split's trace (the trace's measured
   stage costs): predicted saving = 1 - replay mean cost / full cost.
5. Measured, on the held-out requests, batch 1, one request after another (policies
   interleaved request by request, so that a burst of outside load hits them all): latency
   p50/p95/mean (ms), accuracy, and for recall the measured saving = 1 - mean latency / the full
   model's mean latency; decision overhead = mean decision time per stage (the exit's
   probabilities + the rule, batch 1) / the cheapest stage's median compute time (batch 1),
   also measured with warm caches (one decision repeated) and against the mean stage.
6. The decision overhead against the batch size (1 to 256): the rule's decision time on a
   batch of B / the cheapest stage's compute time at B; regrouping reported beside it.
7. Batched (``--batch-size``; policies interleaved batch by batch, a request's latency is the
   time from its batch's start to its answer), and a Poisson load test at rates that are
   multiples of the full model's batch-1 capacity, into both server loops of
   ``ttamer.serving.load``: batch by batch, and stage by stage (the unfinished requests of
   several batches merged at later stages); at most ``--load-requests`` requests per rate,
   loop and policy.

Results go to ``results/serving/`` (CSV + JSON, written atomically), named after the workload,
device, torch version and thread count. ``--quick`` serves fewer requests; its last printed
line is one JSON object (measured_saving, predicted_saving, decision_overhead_fraction, ...).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import torch

from ttamer.evaluation.results import write_table
from ttamer.fileio import atomic_write_bytes
from ttamer.fitting.posterior import PosteriorConfig, fit_posterior
from ttamer.policies import MaxSoftmaxPolicy, PatiencePolicy, ScoringContext, score_decisions
from ttamer.policies.base import Decisions
from ttamer.policies.grids import LambdaGrid
from ttamer.policies.posterior import posterior_decisions
from ttamer.policies.recall import recall_decisions
from ttamer.serving import (
    FullModel,
    PatienceRule,
    PosteriorRule,
    RecallRule,
    ThresholdRule,
    TorchStages,
    run_load,
    run_load_stagewise,
    serve,
)
from ttamer.serving.decide import DecisionRule
from ttamer.serving.runtime import StagedModel, concat, one_row_probabilities, to_device
from ttamer.traces.trace import Trace
from ttamer.workloads.base import WorkloadConfig, resolve_path, workload, workloads
from ttamer.workloads.latency import environment
from ttamer.workloads.trained import cached_model

log = logging.getLogger("bench_serving")
ROOT = Path(__file__).resolve().parents[1]
LOOPS = {"batch": run_load, "stagewise": run_load_stagewise}  # ttamer.serving.load


# ------------------------------------------------------------------------------ the workload


def workload_config(args: argparse.Namespace) -> WorkloadConfig:
    """The workload's config: its defaults (the values ``ttamer-run workload=<name>`` composes
    with the default data root), with this script's cache folder and fit fraction."""
    defaults = workload(args.workload).config()
    return dataclasses.replace(defaults, cache_dir=args.cache_dir, fit_fraction=args.fit_fraction)


# ------------------------------------------------------------------------------- the knobs


@dataclass(frozen=True)
class Choice:
    """A policy at one knob: its rule, and the replay's predictions on the held-out split."""

    name: str
    knob: float
    rule: DecisionRule
    fit_accuracy: float
    replay_stop: np.ndarray
    replay_returned: np.ndarray
    predicted_accuracy: float
    predicted_saving: float


def _pick(dec: Decisions, fit: Trace, target: float) -> int:
    """The knob with the least mean cost whose fit-split accuracy reaches ``target`` (the most
    accurate one when none does)."""
    sc = score_decisions(dec, fit)
    ok = np.flatnonzero(sc.accuracy >= target - 1e-12)
    if ok.size == 0:
        return int(np.argmax(sc.accuracy))
    return int(ok[np.argmin(sc.mean_cost[ok])])


def choose_policies(ctx: ScoringContext, delta: float) -> tuple[list[Choice], float]:
    """Recall, posterior recall, max_softmax and patience at the target accuracy (chosen on the
    fit split), and the full model."""
    fit, test = ctx.fit, ctx.test
    n = fit.n_stages
    target = float(fit.correct[:, -1].mean()) - delta / 100.0
    fit_states = ctx.fitted.states(fit)
    chain = ctx.fitted.chain
    in_sample = ScoringContext(fit, fit, ctx.fit_config)
    lams = LambdaGrid().lambdas()
    post = fit_posterior(fit, PosteriorConfig())  # default hyper-parameters: no cross-validation here
    candidates: list[tuple[str, Decisions, Callable[[float], DecisionRule]]] = [
        ("recall", recall_decisions(chain, fit_states, lams), lambda k: RecallRule(ctx.fitted, k)),
        (
            "posterior_recall",
            posterior_decisions(post, in_sample, lams, True),
            lambda k: PosteriorRule(post, k),
        ),
        ("max_softmax", MaxSoftmaxPolicy().decide(in_sample), lambda k: ThresholdRule("max_softmax", k, n)),
        ("patience", PatiencePolicy().decide(in_sample), lambda k: PatienceRule(int(k), n)),
    ]
    out = []
    full_cost = float(test.cost.sum())
    for name, dec, make in candidates:
        j = _pick(dec, fit, target)
        knob = float(dec.knobs[j])
        fit_acc = float(score_decisions(dec, fit).accuracy[j])
        if name == "recall":
            replay = recall_decisions(chain, ctx.test_states, np.asarray([knob]))
        elif name == "posterior_recall":
            replay = posterior_decisions(post, ctx, np.asarray([knob]), True)
        elif name == "max_softmax":
            replay = MaxSoftmaxPolicy(thresholds=(knob,)).decide(ctx)
        else:
            replay = PatiencePolicy(ks=(int(knob),)).decide(ctx)
        sc = score_decisions(replay, test)
        out.append(
            Choice(name, knob, make(knob), fit_acc, replay.stop[0], replay.returned[0],
                   float(sc.accuracy[0]), 1.0 - float(sc.mean_cost[0]) / full_cost)
        )  # fmt: skip
    last = np.full(test.n_samples, n - 1)
    full = Choice("full", float("nan"), FullModel(n), float(fit.correct[:, -1].mean()), last, last,
                  float(test.correct[:, -1].mean()), 0.0)  # fmt: skip
    return [full, *out], target


# ----------------------------------------------------------------------------- measuring


def single_requests(
    model: StagedModel, requests: Any, n: int, choices: list[Choice], warmup: int
) -> dict[str, dict[str, Any]]:
    """Every held-out request alone (batch 1), policies interleaved request by request."""
    singles = [model.take(requests, np.asarray([j])) for j in range(n)]
    for j in range(min(warmup, n)):
        for c in choices:
            serve(model, singles[j], c.rule, n=1, check=False)
    res: dict[str, dict[str, Any]] = {
        c.name: {"latency": np.empty(n), "stop": np.empty(n, np.int64), "returned": np.empty(n, np.int64),
                 "pred": np.empty(n, np.int64), "compute": [], "decide": []}
        for c in choices
    }  # fmt: skip
    order = list(choices)
    for j in range(n):
        order = order[1:] + order[:1]  # rotate, so that no policy always runs first
        for c in order:
            t0 = time.perf_counter()
            out = serve(model, singles[j], c.rule, n=1, check=False)
            lat = time.perf_counter() - t0
            r = res[c.name]
            r["latency"][j], r["stop"][j], r["returned"][j], r["pred"][j] = (
                lat,
                out.stop[0],
                out.returned[0],
                out.pred[0],
            )
            r["compute"].extend((s.stage, s.compute_s) for s in out.stages)
            r["decide"].extend(s.decide_s for s in out.stages if c.name != "full")
    return res


def hot_decision_s(model: StagedModel, request: Any, rule: DecisionRule, repeats: int = 2000) -> float:
    """Mean seconds of one decision (probabilities + rule) with warm caches: stage 0's output
    for one request, decided ``repeats`` times in a row (in serving, a decision follows a
    stage's compute, which evicts it from the caches: :func:`single_requests` measures that)."""
    _, output = model.stage(0, request)
    row = one_row_probabilities(model)
    t0 = time.perf_counter()
    for _ in range(repeats):
        rule.step_single(0, row(output), {})
    return (time.perf_counter() - t0) / repeats


OVERHEAD_BATCH_SIZES = (1, 4, 16, 64, 256)


def overhead_by_batch_size(
    model: StagedModel,
    requests: Any,
    n: int,
    rule: DecisionRule,
    sizes: tuple[int, ...] = OVERHEAD_BATCH_SIZES,
) -> pd.DataFrame:
    """The decision overhead against the batch size B: batches of B requests (the held-out
    requests in turn, cycled), served under the full model and under ``rule`` alternately
    (``max(3, 64 // B)`` of each, after one warm-up of each). Decision time = median of the
    rule's stage-0 decision (exactly B requests: the exit's probabilities and the rule, in
    situ); regrouping the unfinished requests (a runtime cost of early exits, not of the
    decision) is reported beside it; cheapest stage = the least of the full model's per-stage
    median compute times at B."""
    rows = []
    full = FullModel(model.n_stages)
    for b in sizes:
        decide, regroup, compute = [], [], []
        for k in range(1 + max(3, 64 // b)):
            batch = model.take(requests, (np.arange(b) + k * b) % n)
            times = [s.compute_s for s in serve(model, batch, full, n=b, check=False).stages]
            first = serve(model, batch, rule, n=b, check=False).stages[0]
            if k:  # the first round warms up
                compute.append(times)
                decide.append(first.decide_s)
                regroup.append(first.regroup_s)
        cheapest = float(np.median(np.asarray(compute), axis=0).min())
        dec = float(np.median(decide))
        rows.append({"batch_size": b, "decision_ms_per_stage": dec * 1e3, "cheapest_stage_ms": cheapest * 1e3,
                     "decision_overhead_fraction": dec / cheapest,
                     "regroup_ms": float(np.median(regroup)) * 1e3, "rounds": len(decide)})  # fmt: skip
    return pd.DataFrame(rows)


def agreement(stop: np.ndarray, returned: np.ndarray, c: Choice) -> float:
    """Fraction of requests decided as the trace replay decided them (stop and returned stage;
    the first ``len(stop)`` held-out requests)."""
    n = len(stop)
    return float(((stop == c.replay_stop[:n]) & (returned == c.replay_returned[:n])).mean())


def latency_row(ms: np.ndarray) -> dict[str, float]:
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "mean_ms": float(ms.mean())}  # fmt: skip


def serving_environment(threads: int, device: str = "cpu") -> dict[str, str]:
    """The timing environment (:func:`ttamer.workloads.latency.environment`) with the threads
    and device this benchmark used, and the machine's load when it started."""
    return {
        **environment(),
        "torch_threads": str(threads),
        "device": device if device == "cpu" else f"{device} ({torch.cuda.get_device_name(device)})",
        "load_average_1m_at_start": f"{os.getloadavg()[0]:.2f}",
        "note": "shared machine: other jobs ran on the same cores; timings are noisy",
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", choices=sorted(workloads()), default="digits",
                    help="a workload that serves its trained model (its held_out_requests)")  # fmt: skip
    ap.add_argument("--quick", action="store_true", help="fewer requests; last line: one JSON object")
    ap.add_argument("--seed", type=int, default=0, help="workload seed (the cache key) and split seed")
    ap.add_argument("--fit-fraction", type=float, default=0.5)
    ap.add_argument("--delta", type=float, default=1.0, help="accuracy points below the full model")
    ap.add_argument("--max-requests", type=int, default=None, help="held-out requests served (default all)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--rates", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0, 8.0, 16.0],
                    help="Poisson rates, as multiples of the full model's batch-1 capacity")  # fmt: skip
    ap.add_argument("--load-requests", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: robust on a shared machine)")
    ap.add_argument("--device", default="cpu",
                    help="torch device of the served network (cpu, cuda); the replay's prediction "
                    "uses the trace's stage costs, measured where the trace was made")  # fmt: skip
    ap.add_argument("--cache-dir", default=str(ROOT / ".cache/ttamer/traces/trace"))
    ap.add_argument("--out", default=str(ROOT / "results/serving"))
    return ap.parse_args(argv)


@dataclass
class Setup:
    """The served model, the held-out requests (``n``, with their ``labels``), the policies at
    their knobs, and where they come from."""

    args: argparse.Namespace
    model: StagedModel
    requests: Any
    n: int
    labels: np.ndarray
    choices: list[Choice]
    target: float
    trace: Trace
    n_fit: int
    reused: bool


def prepare(args: argparse.Namespace) -> Setup:
    """Model and trace (cached or trained), the fit / held-out split, the policies' knobs."""
    torch.set_num_threads(args.threads)  # before training: a trace timed with torch's default uses it
    config = workload_config(args)
    held_out_requests = workload(args.workload).function("held_out_requests")  # fails before training
    model_net, trace, reused = cached_model(config, args.seed, resolve_path(config.cache_dir), args.out)
    log.info("model and trace %s (%d samples, %d stages; stages timed with %s torch threads)",
             "reused" if reused else "trained", trace.n_samples, trace.n_stages,
             trace.meta.get("env_torch_threads", "?"))  # fmt: skip
    model, requests = held_out_requests(config, args.seed, model_net, trace)
    if args.device != "cpu":
        model = dataclasses.replace(cast(TorchStages, model), device=args.device)  # the network moves there
        requests = to_device(requests, torch.device(args.device))
    rng = np.random.default_rng(args.seed)
    perm = rng.permutation(trace.n_samples)
    n_fit = round(config.fit_fraction * trace.n_samples)
    fit_rows, test_rows = np.sort(perm[:n_fit]), np.sort(perm[n_fit:])
    max_req = args.max_requests or (500 if args.quick else None)
    if max_req is not None and len(test_rows) > max_req:
        test_rows = np.sort(rng.choice(test_rows, size=max_req, replace=False))
    ctx = ScoringContext(trace.subset(fit_rows), trace.subset(test_rows), config.fit)
    choices, target = choose_policies(ctx, args.delta)
    log.info("fit %d, held-out %d requests; target fit accuracy %.4f; knobs %s", n_fit, len(test_rows),
             target, {c.name: round(c.knob, 6) for c in choices})  # fmt: skip
    return Setup(args, model, model.take(requests, test_rows), len(test_rows), ctx.test.labels, choices,
                 target, trace, n_fit, reused)  # fmt: skip


def batch1_table(su: Setup) -> tuple[pd.DataFrame, pd.Series]:
    """Every request alone: one row per policy, and the full model's median compute seconds
    per stage."""
    single = single_requests(su.model, su.requests, su.n, su.choices, warmup=20)
    full_mean = float(single["full"]["latency"].mean())
    compute = pd.DataFrame(single["full"]["compute"], columns=["stage", "s"])
    stage_median = compute.groupby("stage")["s"].median()
    rows = []
    for c in su.choices:
        r = single[c.name]
        decide = np.asarray(r["decide"]) if r["decide"] else np.zeros(1)
        rows.append({
            "workload": su.args.workload, "mode": "batch1", "policy": c.name, "knob": c.knob,
            "n_requests": su.n, "accuracy": float((r["pred"] == su.labels).mean()),
            **latency_row(r["latency"] * 1e3), "throughput_rps": 1.0 / float(r["latency"].mean()),
            "measured_saving": 1.0 - float(r["latency"].mean()) / full_mean,
            "predicted_saving": c.predicted_saving, "predicted_accuracy": c.predicted_accuracy,
            "fit_accuracy": c.fit_accuracy,
            "agrees_with_replay": agreement(r["stop"], r["returned"], c),
            "mean_stages_run": float((r["stop"] + 1).mean()),
            "decision_ms_per_stage": float(decide.mean() * 1e3),
            "decision_overhead_fraction": float(decide.mean() / stage_median.min()),
        })  # fmt: skip
    return pd.DataFrame(rows), stage_median


def batched_table(su: Setup) -> pd.DataFrame:
    """Consecutive batches, policies interleaved batch by batch (the first batch of each policy
    is a warm-up, timed again): one row per policy."""
    size = su.args.batch_size
    batches = [np.arange(s0, min(s0 + size, su.n)) for s0 in range(0, su.n, size)]
    parts: dict[str, list[Any]] = {c.name: [] for c in su.choices}
    secs: dict[str, list[float]] = {c.name: [] for c in su.choices}
    order = list(su.choices)
    for b, rows_b in enumerate(batches):
        batch = su.model.take(su.requests, rows_b)
        order = order[1:] + order[:1]
        for c in order:
            for _ in range(2 if b == 0 else 1):
                t0 = time.perf_counter()
                out = serve(su.model, batch, c.rule, n=len(rows_b), check=False)
                seconds = time.perf_counter() - t0
            parts[c.name].append(out)
            secs[c.name].append(seconds)
    rows = []
    for c in su.choices:
        served = concat(parts[c.name])
        total = float(np.sum(secs[c.name]))
        rows.append({
            "workload": su.args.workload, "mode": f"batch{size}", "policy": c.name, "knob": c.knob,
            "n_requests": su.n, "accuracy": float((served.pred == su.labels).mean()),
            **latency_row(served.finish_s * 1e3), "throughput_rps": su.n / total,
            "mean_batch_ms": total / len(batches) * 1e3,
            "agrees_with_replay": agreement(served.stop, served.returned, c),
        })  # fmt: skip
    frame = pd.DataFrame(rows)
    full = float(frame.loc[frame.policy == "full", "throughput_rps"].iloc[0])
    frame["throughput_gain"] = frame["throughput_rps"] / full - 1.0
    return frame


def load_table(su: Setup, capacity: float) -> pd.DataFrame:
    """Poisson arrivals at ``--rates`` times ``capacity`` (requests/s) into both server loops."""
    a = su.args
    n_load = a.load_requests or min(su.n, 200 if a.quick else 1000)
    requests = su.model.take(su.requests, np.arange(n_load))
    rows = []
    for mult in a.rates:
        for loop, run in LOOPS.items():
            for c in su.choices:
                res = run(su.model, requests, n_load, c.rule, mult * capacity, a.batch_size, a.seed)
                rows.append({
                    "workload": a.workload, "loop": loop, "policy": c.name, "knob": c.knob,
                    "rate_multiple": mult, **res.summary(),
                    "accuracy": float((res.pred == su.labels[:n_load]).mean()),
                    "agrees_with_replay": agreement(res.stop, res.returned, c),
                })  # fmt: skip
    return pd.DataFrame(rows)


def summarise(
    su: Setup, single_df: pd.DataFrame, stage_median: pd.Series, by_batch: pd.DataFrame, hot_s: float
) -> dict[str, Any]:
    """The headline numbers (module docstring) and the targets."""
    recall = single_df.set_index("policy").loc["recall"].to_dict()
    full_trace_ms = float(su.trace.cost.sum())  # the trace's cost unit: ms per request at batch 1
    dms = float(recall["decision_ms_per_stage"])
    below = by_batch.loc[by_batch.decision_overhead_fraction < 0.01, "batch_size"]
    measured, predicted = float(recall["measured_saving"]), float(recall["predicted_saving"])
    return {
        "workload": su.args.workload,
        "quick": su.args.quick,
        "measured_saving": measured,
        "predicted_saving": predicted,
        "saving_gap": measured - predicted,
        # the replay's costs plus the measured decision time of every stage run (the full model
        # pays one: its last exit's probabilities): explains the gap where stages are tiny
        "predicted_saving_with_decision_time": 1.0
        - ((1.0 - predicted) * full_trace_ms + float(recall["mean_stages_run"]) * dms)
        / (full_trace_ms + dms),
        "decision_overhead_fraction": float(recall["decision_overhead_fraction"]),
        "decision_ms_per_stage": dms,
        "decision_overhead_fraction_warm_cache": hot_s / float(stage_median.min()),
        "decision_overhead_vs_mean_stage": dms / 1e3 / float(stage_median.mean()),
        "decision_overhead_fraction_by_batch_size": {
            int(b): float(f)
            for b, f in zip(by_batch["batch_size"], by_batch["decision_overhead_fraction"], strict=True)
        },
        "smallest_batch_size_below_1pct": int(below.min()) if len(below) else None,
        "recall_lam": float(recall["knob"]),
        "recall_accuracy": float(recall["accuracy"]),
        "full_accuracy": float(single_df.loc[single_df.policy == "full", "accuracy"].iloc[0]),
        "target_fit_accuracy": su.target,
        "recall_agrees_with_replay": float(recall["agrees_with_replay"]),
        "cheapest_stage_ms": float(stage_median.min() * 1e3),
        "stage_compute_ms_batch1": [round(float(v) * 1e3, 4) for v in stage_median],
        "trace_stage_cost_ms": [round(float(v), 4) for v in su.trace.cost],
        "trace_timed_with_threads": su.trace.meta.get("env_torch_threads", "?"),
        "n_fit": su.n_fit,
        "n_held_out": su.n,
        "model_reused_from_cache": su.reused,
        "knob_choice": f"least replayed mean cost on the fit split reaching the last exit's fit accuracy "
        f"minus {su.args.delta} point(s)",
        "targets_met": {
            "saving_within_0.10": bool(abs(measured - predicted) <= 0.10),
            "overhead_below_1pct": bool(recall["decision_overhead_fraction"] < 0.01),
        },
    }


def print_tables(tables: dict[str, pd.DataFrame]) -> None:
    pd.set_option("display.width", 200)
    columns = {
        "batch1": ["policy", "knob", "accuracy", "p50_ms", "p95_ms", "mean_ms", "measured_saving",
                   "predicted_saving", "agrees_with_replay", "decision_overhead_fraction"],
        "batched": ["policy", "accuracy", "p50_ms", "p95_ms", "throughput_rps", "throughput_gain",
                    "agrees_with_replay"],
        "overhead": list(tables["overhead"].columns),
        "load": ["loop", "policy", "rate_multiple", "offered_rate", "p50_ms", "p95_ms", "throughput"],
    }  # fmt: skip
    for name, cols in columns.items():
        print(tables[name][cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    su = prepare(args)
    single_df, stage_median = batch1_table(su)
    batch_df = batched_table(su)
    full_mean_s = float(single_df.loc[single_df.policy == "full", "mean_ms"].iloc[0]) / 1e3
    load_df = load_table(su, capacity=1.0 / full_mean_s)
    recall_rule = next(c.rule for c in su.choices if c.name == "recall")
    by_batch = overhead_by_batch_size(su.model, su.requests, su.n, recall_rule)
    hot = hot_decision_s(su.model, su.model.take(su.requests, np.asarray([0])), recall_rule)
    env = serving_environment(args.threads, args.device)
    summary = {
        **summarise(su, single_df, stage_median, by_batch, hot),
        **{f"env_{k}": v for k, v in env.items()},
    }

    out = Path(args.out)
    version = torch.__version__.split("+")[0]
    tag = f"{args.workload}-{args.device}-pt{version}-t{args.threads}{'-quick' if args.quick else ''}"
    tables = {"batch1": single_df, "batched": batch_df, "overhead": by_batch, "load": load_df}
    for name, frame in tables.items():
        extra = {"workload": args.workload} if name == "overhead" else {}
        write_table(frame.assign(**extra, **env), out / f"serving-{name}-{tag}.csv")
    atomic_write_bytes(out / f"serving-summary-{tag}.json", (json.dumps(summary, indent=2) + "\n").encode())
    print_tables(tables)
    headline = {k: v for k, v in summary.items() if not k.startswith("env_")}
    print(json.dumps(headline | {"env_torch_threads": args.threads}))
    return summary


if __name__ == "__main__":
    main()
