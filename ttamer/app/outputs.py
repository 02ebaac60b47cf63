"""What a job writes into its run folder (README: experiments): tidy CSV tables (atomically),
figures drawn from those tables, the fitted models of trace studies, and the same to W&B
(README: W&B): tables, images, interactive charts (``charts/*``) and artifacts (the synthetic
instances, the fitted models, the trace by reference)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ttamer.app.wandb_logger import ExperimentLogger
from ttamer.evaluation.calibration import calibration_table
from ttamer.evaluation.fitted_models import SplitModel, write_models
from ttamer.evaluation.pareto import mean_curve
from ttamer.evaluation.results import SYNTHETIC_TAG, figure_path, write_study_table, write_table
from ttamer.plots.graphs import plot_stage_usage
from ttamer.plots.synthetic import SYNTHETIC_FIGURES
from ttamer.plots.traces import plot_calibration, plot_trace_pareto
from ttamer.studies.graph_study import GraphStudyResult
from ttamer.studies.synthetic_study import (
    SyntheticStudyConfig,
    SyntheticStudyResult,
    ratio_summary,
    summary_metrics,
    write_lower_bound_instances,
    write_random_chains,
)
from ttamer.studies.trace_study import TraceStudyResult
from ttamer.traces.trace import Trace

log = logging.getLogger(__name__)


def write_synthetic(
    result: SyntheticStudyResult, config: SyntheticStudyConfig, out: Path, tracker: ExperimentLogger
) -> dict[str, float]:
    """The synthetic study's three CSVs, three figures, and every lower-bound instance and random
    chain as a chain file under ``instances/lower_bound/`` and ``instances/random/`` (their paths
    in the tables' ``instance`` columns; also a W&B artifact of type ``instances``); returns the
    metrics."""
    _write_instances(result, config, out, tracker)
    tables = {"lower_bound": result.lower_bound, "ratios": result.ratios, "pareto": result.pareto}
    for key, table in tables.items():
        write_study_table(out, SYNTHETIC_TAG, key, table)
        tracker.log_table(f"tables/{key}", table)
    _chart_lower_bound(result.lower_bound, tracker)
    summary = ratio_summary(result.ratios)
    tracker.log_table("tables/ratio_summary", summary)
    log.info("ratios J_policy / J_recall per family:\n%s", summary.to_string(index=False))
    for kind, (table_kind, plot) in SYNTHETIC_FIGURES.items():
        tracker.log_image(f"figures/{kind}", plot(tables[table_kind], figure_path(out, None, kind)))
    metrics = summary_metrics(result)
    tracker.log_metrics(metrics)
    return metrics


def _write_instances(
    result: SyntheticStudyResult, config: SyntheticStudyConfig, out: Path, tracker: ExperimentLogger
) -> None:
    names = write_lower_bound_instances(result.lower_bound, out / "instances" / "lower_bound")
    result.lower_bound.insert(0, "instance", [f"instances/lower_bound/{n}" for n in names])
    write_random_chains(config, out / "instances" / "random")  # <family>_<chain>.json
    ratios = result.ratios
    ratios.insert(
        0, "instance", "instances/random/" + ratios["family"] + "_" + ratios["chain"].astype(str) + ".json"
    )
    how = "ttamer solve <file> --lam <lam> --policy recall (or no_recall)"
    tracker.log_artifact(
        "lower_bound_instances", "instances", out / "instances", {"count": len(names), "solve": how}
    )


def write_trace_study(
    result: TraceStudyResult, trace: Trace, tag: str, out: Path, tracker: ExperimentLogger
) -> dict[str, float]:
    """``<tag>_points.csv``, ``<tag>_summary.csv``, ``<tag>_hulls.csv``,
    ``<tag>_calibration.csv``, ``fig_<tag>.png`` and ``fig_<tag>_calibration.png``; returns the
    headline metrics."""
    for key in ("points", "summary", "hulls"):
        table = getattr(result, key)
        write_study_table(out, tag, key, table)
        tracker.log_table(f"tables/{key}", table)
    _plot_pareto(result.points, trace, tag, out, tracker)
    _chart_pareto(result.points, trace, tag, tracker)
    _write_calibration(result.calibration, tag, out, tracker)
    return _log_summary(result.summary, tag, tracker)


def write_graph_study(
    result: GraphStudyResult, trace: Trace, tag: str, out: Path, tracker: ExperimentLogger
) -> dict[str, float]:
    """``<tag>_{points,summary,hulls,usage,calibration}.csv`` (and ``<tag>_orders.csv`` for
    chain orders), ``fig_<tag>.png`` and ``fig_<tag>_usage.png``; returns the headline metrics."""
    tables = {key: getattr(result, key) for key in ("points", "summary", "hulls", "usage")}
    if not result.orders.empty:
        tables["orders"] = result.orders
    for key, table in tables.items():
        write_study_table(out, tag, key, table)
        tracker.log_table(f"tables/{key}", table)
    _plot_pareto(result.points, trace, tag, out, tracker)
    _chart_pareto(result.points, trace, tag, tracker)
    usage = plot_stage_usage(result.usage, result.points, figure_path(out, tag, "usage"), tag)
    tracker.log_image("figures/usage", usage)
    _write_calibration(calibration_table(result.points), tag, out, tracker)
    return _log_summary(result.summary, tag, tracker)


def _plot_pareto(points: pd.DataFrame, trace: Trace, tag: str, out: Path, tracker: ExperimentLogger) -> None:
    title = f"{tag}: {trace.n_samples} samples, {trace.n_stages} stages"
    fig = plot_trace_pareto(points, figure_path(out, tag), title, trace.cost_unit, trace.stage_names)
    tracker.log_image("figures/pareto", fig)


def _write_calibration(table: pd.DataFrame, tag: str, out: Path, tracker: ExperimentLogger) -> None:
    """``<tag>_calibration.csv`` and ``fig_<tag>_calibration.png`` (when a policy has a model)."""
    if table.empty:
        return
    write_study_table(out, tag, "calibration", table)
    tracker.log_table("tables/calibration", table)
    fig = plot_calibration(table, figure_path(out, tag, "calibration"), f"{tag}: calibration")
    tracker.log_image("figures/calibration", fig)
    chart = table.rename(columns={"predicted_accuracy": PREDICTED, "accuracy": REALISED})
    chart = chart[["policy", "knob", PREDICTED, REALISED]]
    tracker.log_scatter(
        "charts/calibration", chart, PREDICTED, REALISED, f"{tag}: predicted against realised accuracy"
    )


PREDICTED, REALISED = "predicted accuracy", "realised accuracy"
RATIO = "ratio (no recall / recall)"
CHART_GRID = 100
"""Costs at which the Pareto chart samples each policy's mean hull."""


def cost_column(unit: str) -> str:
    """The cost axis of the charts, with the trace's unit: ``cost (ms per request ...)``."""
    return f"cost ({unit})" if unit else "cost (trace units)"


def pareto_chart_table(points: pd.DataFrame, trace: Trace) -> pd.DataFrame:
    """Per policy, its mean upper hull over splits (as the figure's lines) on :data:`CHART_GRID`
    costs from the cheapest point to the full cascade: ``policy``, the cost in the trace's unit
    (mean cost per request; :func:`cost_column`) and ``accuracy``."""
    lo = float(points["normalized_cost"].min())
    curve = mean_curve(points, np.linspace(lo, 1.0, CHART_GRID))
    curve = curve[np.isfinite(curve["mean"].to_numpy(dtype=np.float64))]
    total = float(trace.cost.sum())
    cost = curve["normalized_cost"].to_numpy(dtype=np.float64) * (total if total > 0 else 0.0)
    return pd.DataFrame(
        {"policy": curve["policy"].astype(str).to_numpy(), cost_column(trace.cost_unit): cost,
         "accuracy": curve["mean"].to_numpy(dtype=np.float64)}
    )  # fmt: skip


def _chart_pareto(points: pd.DataFrame, trace: Trace, tag: str, tracker: ExperimentLogger) -> None:
    if not tracker.active:
        return
    table = pareto_chart_table(points, trace)
    n = int(points["split"].nunique())
    title = f"{tag}: accuracy against cost, mean upper hull over {n} splits"
    tracker.log_line("charts/pareto", table, cost_column(trace.cost_unit), "accuracy", "policy", title)


def lower_bound_chart_table(lower_bound: pd.DataFrame) -> pd.DataFrame:
    """The generalised lower-bound family's no-recall / recall ratio against ``alpha``, one line
    (``chain``) per chain length and cost scale."""
    rows = lower_bound[lower_bound["case"] == "generalised"].sort_values(["n_stages", "cost_scale", "alpha"])
    chain = (
        "n_stages=" + rows["n_stages"].astype(str) + ", cost_scale=" + rows["cost_scale"].map("{:g}".format)
    )
    return pd.DataFrame(
        {"alpha": rows["alpha"].to_numpy(dtype=np.float64), RATIO: rows["ratio"].to_numpy(dtype=np.float64),
         "chain": chain.to_numpy()}
    )  # fmt: skip


def _chart_lower_bound(lower_bound: pd.DataFrame, tracker: ExperimentLogger) -> None:
    if tracker.active:
        table = lower_bound_chart_table(lower_bound)
        title = "lower bound: no-recall / recall ratio against alpha"
        tracker.log_line("charts/lower_bound_ratio", table, "alpha", RATIO, "chain", title)


def write_fitted_models(
    models: list[SplitModel], tag: str, out: Path, tracker: ExperimentLogger, about: dict[str, object]
) -> None:
    """The models of every split under ``models/<tag>/`` (:mod:`ttamer.evaluation.fitted_models`),
    logged as the W&B artifact ``<tag>_models`` of type ``model`` (``about``: its metadata)."""
    if not models:
        return
    folder = out / "models" / tag
    write_models(models, folder)
    kinds = sorted({m.kind for m in models})
    how = "ttamer solve chain/split_<k>.json --lam <lam>; ttamer.fitting.model_files.load_fitted_chain"
    meta = {**about, "kinds": kinds, "splits": len({m.split for m in models}), "load": how}
    tracker.log_artifact(f"{tag}_models", "model", folder, meta)


def _log_summary(summary: pd.DataFrame, tag: str, tracker: ExperimentLogger) -> dict[str, float]:
    values = summary["mean"].to_numpy(dtype=np.float64)
    keys = (summary["policy"] + "/" + summary["metric"]).tolist()
    metrics = {k: float(v) for k, v in zip(keys, values, strict=True) if np.isfinite(v)}
    tracker.log_metrics(metrics)
    log.info("%s summary:\n%s", tag, summary.to_string(index=False))
    return metrics


def write_latency(trace: Trace, name: str, out: Path) -> None:
    """The trace's measured latency table (if it has one) as a CSV named like timm's benchmark
    files, with the autocast precision it was timed at (fp32, bf16, fp16; ``amp`` for float16
    in traces made before the precision was recorded)."""
    from ttamer.workloads.latency import benchmark_filename
    from ttamer.workloads.trace_from_model import latency_table_from_trace

    table = latency_table_from_trace(trace)
    if table.empty:
        return
    env = {k[4:]: v for k, v in sorted(trace.meta.items()) if k.startswith("env_")}  # same order if cached
    table.insert(1, "stage_name", [trace.stage_names[int(s) - 1] for s in table["stage"]])
    for key, value in env.items():
        table[key] = value
    precision = "amp" if trace.meta.get("amp", "").lower() in ("true", "1") else "fp32"  # older traces
    if "precision" in table.columns and table["precision"].notna().any():
        precision = str(table["precision"].dropna().iloc[0])  # a lexicon stage records none
    write_table(table, out / benchmark_filename(name, env, precision))


def log_trace_artifact(
    trace: Trace, name: str, source: Path | None, about: dict[str, object], tracker: ExperimentLogger
) -> None:
    """The trace as the W&B artifact ``<name>_trace`` of type ``dataset``, by reference to
    ``source`` (the cached trace file, or the folder a workload reads), never copied; its metadata:
    ``about`` (e.g. the cache key), the trace's content hash, size, stage names and cost unit."""
    if not tracker.active or source is None or not source.exists():
        return
    from ttamer.traces.cache import content_hash

    meta = {
        **about,
        "content_sha256": trace.meta.get("content_sha256") or content_hash(trace),
        "n_samples": trace.n_samples,
        "n_stages": trace.n_stages,
        "stage_names": list(trace.stage_names),
        "cost_unit": trace.cost_unit,
    }
    tracker.log_reference(f"{name}_trace", "dataset", source, meta)
