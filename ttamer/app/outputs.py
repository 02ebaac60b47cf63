"""What a job writes into its run folder (README: experiments): tidy CSV tables (atomically),
figures drawn from those tables, and the same to W&B."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ttamer.app.wandb_logger import ExperimentLogger
from ttamer.evaluation.calibration import calibration_table
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


def _log_summary(summary: pd.DataFrame, tag: str, tracker: ExperimentLogger) -> dict[str, float]:
    values = summary["mean"].to_numpy(dtype=np.float64)
    keys = (summary["policy"] + "/" + summary["metric"]).tolist()
    metrics = {k: float(v) for k, v in zip(keys, values, strict=True) if np.isfinite(v)}
    tracker.log_metrics(metrics)
    log.info("%s summary:\n%s", tag, summary.to_string(index=False))
    return metrics


def write_latency(trace: Trace, name: str, out: Path) -> None:
    """The trace's measured latency table (if it has one) as a CSV named like timm's benchmark
    files."""
    from ttamer.workloads.latency import benchmark_filename
    from ttamer.workloads.trace_from_model import latency_table_from_trace

    table = latency_table_from_trace(trace)
    if table.empty:
        return
    env = {k[4:]: v for k, v in sorted(trace.meta.items()) if k.startswith("env_")}  # same order if cached
    table.insert(1, "stage_name", [trace.stage_names[int(s) - 1] for s in table["stage"]])
    for key, value in env.items():
        table[key] = value
    precision = "amp" if trace.meta.get("amp", "").lower() in ("true", "1") else "fp32"
    write_table(table, out / benchmark_filename(name, env, precision))
