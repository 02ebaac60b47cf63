"""The headline results of a results tree, from its saved tables only (README: experiments).

:func:`load_results` finds every study under a root (:mod:`ttamer.evaluation.results`), reads
and checks its tables and what the run folder recorded (Hydra config, command line, latency
table); :func:`summary_table`, :func:`synthetic_table` and :func:`markdown` turn them into the
headline tables. No model runs, no solver is called and no trace is loaded here.

Savings are read at the reference accuracy minus δ = 0 and 1 percentage points (:data:`DELTAS`)
from the saved ``<tag>_summary.csv``, recomputed from the points table with
:func:`ttamer.evaluation.pareto.summarise` only when that file is missing or lacks a metric.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ttamer.errors import FieldError
from ttamer.evaluation.calibration import CALIBRATION_COLUMNS, GAP_METRIC
from ttamer.evaluation.pareto import (
    POINT_COLUMNS,
    SUMMARY_COLUMNS,
    check_points,
    reference_accuracy,
    summarise,
)
from ttamer.evaluation.results import (
    SYNTHETIC_TABLE_KINDS,
    SYNTHETIC_TAG,
    USAGE_COLUMNS,
    ResultsError,
    StudyFiles,
    display_path,
    find_results,
    producing_command,
    read_table,
    run_config,
    stage_names_from_benchmark,
    table_name,
    write_text,
)
from ttamer.plots.traces import CURVE_STYLE

DELTAS = (0.0, 1.0)
"""Accuracy drops (percentage points) below the reference shown in the headline table."""

POINTS_COLUMNS = (*POINT_COLUMNS, "cost_unit")
LATENCY_COLUMNS = ("stage", "batch_size", "median_ms")
SYNTHETIC_COLUMNS: dict[str, tuple[str, ...]] = {
    "lower_bound": ("case", "alpha", "n_stages", "cost_scale", "lam", "ratio", "ratio_closed"),
    "ratios": ("family", "chain", "lam", "ratio_no_recall", "ratio_best_threshold", "ratio_prophet"),
    "pareto": ("chain", "policy", "knob", "knob_value", "expected_loss", "expected_cost"),
}
"""Columns each synthetic table must have, by kind."""

POLICY_NOTES = {
    "static": "single stages",
    "oracle": "bound: cheapest correct stage",
}
NO_COMMAND = "unknown (no .hydra/ in the folder)"
BEGIN_MARK = "<!-- BEGIN make_figures -->"
END_MARK = "<!-- END make_figures -->"
"""The lines around the README section that receives the headline tables."""


@dataclass
class TraceRun:
    """One trace workload's saved results, read and checked."""

    folder: Path
    key: str
    tag: str
    points: pd.DataFrame
    summary: pd.DataFrame
    summary_source: str
    workload: str
    dataset: str | None
    reference: str
    reference_note: str
    reference_acc: float
    cost_unit: str
    cost_source: str
    stage_names: list[str] | None
    n_splits: int
    n_test: int | None
    command: str | None
    usage: pd.DataFrame | None = None  # graph studies: <tag>_usage.csv
    calibration: pd.DataFrame | None = None  # <tag>_calibration.csv, where the study wrote one

    @property
    def n_stages(self) -> int:
        return int(self.points.loc[self.points["policy"] == "static", "knob"].nunique())

    @property
    def title(self) -> str:
        what = f"workload={self.workload}" + (f", dataset={self.dataset}" if self.dataset else "")
        size = f", {self.n_test} test samples per split" if self.n_test else ""
        return f"{self.key} ({what})\n{self.n_stages} stages{size}"


@dataclass
class SyntheticRun:
    """One synthetic study's saved tables (by kind), read and checked."""

    folder: Path
    key: str
    tables: dict[str, pd.DataFrame]
    command: str | None


# ---------------------------------------------------------------------------------- loading


def folder_key(folder: Path, root: Path) -> str:
    """A file-name-safe key for ``folder``: its path below ``root``, parts joined by ``_``."""
    rel = folder.resolve().relative_to(root.resolve())
    parts = rel.parts or (root.resolve().name,)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "_".join(parts))


def _unique(values: pd.Series, name: str, path: Path) -> str:
    vals = [v for v in values.dropna().astype(str).unique() if v]
    if len(vals) > 1:
        raise ResultsError(f"{display_path(path)}: column {name} has several values {vals}")
    return vals[0] if vals else "unspecified unit"


def cost_source(unit: str, bench: pd.DataFrame | None, config: dict[str, Any]) -> str:
    """Where a trace's costs come from, in words, from what the folder recorded: the cost unit,
    the latency table, and the composed config (``cost.name`` or ``workload.cost_source``)."""
    workload, cost = config.get("workload"), config.get("cost")
    names = {
        str(cost.get("name", "")) if isinstance(cost, dict) else "",
        str(workload.get("cost_source", "")) if isinstance(workload, dict) else "",
    }
    if "timm benchmark" in unit or "timm_table" in names:
        return "published throughputs (timm benchmark tables: 1000 / images per s), not measured here"
    if "USD" in unit:
        return "published prices per call, not measured"
    if bench is not None:
        first = bench.iloc[0]

        def field(name: str) -> str:
            return str(first[name]) if name in bench.columns else "?"

        return (
            f"measured here: median per-request latency at batch {int(bench['batch_size'].min())} on a "
            f"{field('cpu_count')}-core {field('machine')} {field('device').upper()} "
            f"(torch {field('torch')}, torch threads: {field('torch_threads')})"
        )
    return f"as recorded in the trace ({unit})"


def read_points(path: Path) -> pd.DataFrame:
    """A points table with a ``cost_unit`` column and ``static`` rows, checked."""
    points = read_table(path, POINTS_COLUMNS)
    try:
        check_points(points)
    except FieldError as exc:
        raise ResultsError(f"{display_path(path)}: {exc}") from None
    if not (points["policy"] == "static").any():
        raise ResultsError(
            f"{display_path(path)}: no 'static' rows (needed for the reference and the single stages)"
        )
    return points


def recorded_reference(folder: Path, workload_cfg: Mapping[str, Any]) -> tuple[str, str]:
    """(reference, where it comes from): ``workload.reference`` of the saved config, else the
    default ``last_stage`` of :func:`ttamer.evaluation.pareto.summarise`."""
    ref_value = workload_cfg.get("reference")
    if ref_value is None:
        reference, note = "last_stage", "not recorded (no workload.reference in .hydra/config.yaml); "
        note += "assumed last_stage, the default of ttamer.evaluation.pareto.summarise"
    else:
        reference, note = str(ref_value), "workload.reference in .hydra/config.yaml"
    if reference not in ("last_stage", "best_stage"):
        raise ResultsError(
            f"{display_path(folder)}: workload.reference must be last_stage or best_stage, got {reference}"
        )
    return reference, note


def headline_summary(study: StudyFiles, points: pd.DataFrame, reference: str) -> tuple[pd.DataFrame, str]:
    """(summary, where it comes from): the saved summary table when it has every headline
    metric, else :func:`summarise` on the points table."""
    points_path, summary_path = study.tables["points"], study.tables.get("summary")
    needed = {*(f"saving_at_delta_{d:g}" for d in DELTAS), "area"}
    source = "recomputed from the points table (ttamer.evaluation.pareto.summarise)"
    if summary_path is not None:
        saved = read_table(summary_path, SUMMARY_COLUMNS)
        if needed <= set(saved["metric"]):
            return saved, f"saved {summary_path.name}"
        source = f"recomputed from the points table ({summary_path.name} lacks some metrics)"
    try:
        return summarise(points, reference, DELTAS), source  # type: ignore[arg-type]
    except FieldError as exc:
        raise ResultsError(f"{display_path(points_path)}: {exc}") from None


def _optional_table(study: StudyFiles, kind: str, columns: Sequence[str]) -> pd.DataFrame | None:
    path = study.tables.get(kind)
    return read_table(path, columns) if path is not None else None


def load_trace_run(study: StudyFiles, key: str, latency_tables: Sequence[Path]) -> TraceRun:
    """Read and check one trace study's tables and its folder's records; ``key`` names it."""
    folder, points_path = study.folder, study.tables["points"]
    points = read_points(points_path)
    config = run_config(folder)
    workload_cfg = config.get("workload", {}) if isinstance(config.get("workload"), dict) else {}
    reference, note = recorded_reference(folder, workload_cfg)
    try:
        ref_acc = float(reference_accuracy(points, reference).mean())  # type: ignore[arg-type]
    except FieldError as exc:
        raise ResultsError(f"{display_path(points_path)}: {exc}") from None
    summary, source = headline_summary(study, points, reference)
    bench = read_table(latency_tables[0], LATENCY_COLUMNS) if latency_tables else None
    unit = _unique(points["cost_unit"], "cost_unit", points_path)
    n_test = int(points["n_test"].max()) if "n_test" in points.columns else None
    usage = _optional_table(study, "usage", USAGE_COLUMNS)
    calibration = _optional_table(study, "calibration", CALIBRATION_COLUMNS)
    return TraceRun(
        folder=folder,
        key=key,
        tag=study.tag,
        points=points,
        summary=summary,
        summary_source=source,
        workload=str(workload_cfg.get("name", study.tag)),
        dataset=str(workload_cfg["dataset"]) if "dataset" in workload_cfg else None,
        reference=reference,
        reference_note=note,
        reference_acc=ref_acc,
        cost_unit=unit,
        cost_source=cost_source(unit, bench, config),
        stage_names=stage_names_from_benchmark(bench) if bench is not None else None,
        n_splits=int(points["split"].nunique()),
        n_test=n_test,
        command=producing_command(folder),
        usage=usage,
        calibration=calibration,
    )


def load_synthetic_run(study: StudyFiles, key: str) -> SyntheticRun:
    """Read and check the synthetic study's three tables; all must exist."""
    tables = {}
    for kind in SYNTHETIC_TABLE_KINDS:
        path = study.tables.get(kind)
        if path is None:
            name = table_name(SYNTHETIC_TAG, kind)
            raise ResultsError(f"{display_path(study.folder)}: synthetic results without {name}")
        tables[kind] = read_table(path, SYNTHETIC_COLUMNS[kind])
    return SyntheticRun(study.folder, key, tables, producing_command(study.folder))


def load_results(root: Path, skip: Path | None = None) -> tuple[list[TraceRun], list[SyntheticRun]]:
    """Every study under ``root`` (``skip``: a folder not searched, e.g. the output), read and
    checked, folder by folder; :class:`ResultsError` (one line) at the first problem."""
    if not root.is_dir():
        raise ResultsError(f"{root}: results folder does not exist")
    traces: list[TraceRun] = []
    synthetic: list[SyntheticRun] = []
    for found in find_results(root, skip):
        if not found.studies:
            raise ResultsError(
                f"{display_path(found.folder)}: has .hydra/config.yaml but no *_points.csv or synthetic_*.csv"
            )
        key = folder_key(found.folder, root)
        for study in found.traces:
            study_key = f"{key}_{study.tag}" if len(found.traces) > 1 else key
            traces.append(load_trace_run(study, study_key, found.latency_tables))
        if found.synthetic is not None:
            synthetic.append(load_synthetic_run(found.synthetic, key))
    if not traces and not synthetic:
        raise ResultsError(f"{root}: no results folder (no *_points.csv or synthetic_*.csv below it)")
    return traces, synthetic


# ---------------------------------------------------------------------------------- tables


def policy_order(traces: Sequence[TraceRun]) -> list[str]:
    """The policies of ``traces`` in display order: the plotted curves' order, then the single
    stages and the oracle, then any other policy by name."""
    seen = dict.fromkeys(p for t in traces for p in t.points["policy"].astype(str))
    order = [p for p in (*CURVE_STYLE, "static", "oracle") if p in seen]
    return order + sorted(p for p in seen if p not in order)


def summary_estimate(
    stats: Mapping[tuple[str, str], Mapping[Any, Any]], policy: str, metric: str
) -> dict[str, float]:
    """mean, ci95_half, n_reached, n_unreached of one summary row (NaN / 0 when absent)."""
    r = stats.get((policy, metric))
    if r is None:
        return {"mean": math.nan, "ci95_half": math.nan, "n_reached": 0, "n_unreached": 0}
    lo, hi = float(r["ci95_low"]), float(r["ci95_high"])
    half = (hi - lo) / 2.0 if math.isfinite(lo) and math.isfinite(hi) else math.nan
    return {
        "mean": float(r["mean"]),
        "ci95_half": half,
        "n_reached": int(r["n_splits"]),
        "n_unreached": int(r["n_unreached"]),
    }


def _summary_row(
    t: TraceRun, policy: str, stats: Mapping[tuple[str, str], Mapping[Any, Any]]
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "workload": t.key,
        "folder": display_path(t.folder),
        "reference": t.reference,
        "reference_accuracy": t.reference_acc,
        "cost_unit": t.cost_unit,
        "costs": t.cost_source,
        "policy": policy,
    }
    for d in DELTAS:
        for k, v in summary_estimate(stats, policy, f"saving_at_delta_{d:g}").items():
            row[f"saving_d{d:g}_{k}"] = v
    area = summary_estimate(stats, policy, "area")
    row["area_mean"], row["area_ci95_half"] = area["mean"], area["ci95_half"]
    gap = summary_estimate(stats, policy, GAP_METRIC)
    row["calibration_gap_mean"], row["calibration_gap_ci95_half"] = gap["mean"], gap["ci95_half"]
    row["n_splits"] = t.n_splits
    row["summary_source"] = t.summary_source
    return row


def summary_table(traces: Sequence[TraceRun]) -> pd.DataFrame:
    """The headline table: one row per workload and policy (savings at each of :data:`DELTAS`,
    area under the hull, calibration gap: mean, 95% half-width, splits reached / unreached)."""
    rows = []
    for t in traces:
        stats = {(str(r["policy"]), str(r["metric"])): r for r in t.summary.to_dict("records")}
        rows += [_summary_row(t, policy, stats) for policy in policy_order([t])]
    return pd.DataFrame(rows)


def synthetic_table(runs: Sequence[SyntheticRun]) -> pd.DataFrame:
    """Per synthetic folder, family and λ: median and worst objective ratios over the chains."""
    rows = []
    for run in runs:
        ratios = run.tables["ratios"]
        for (family, lam), g in ratios.groupby(["family", "lam"], sort=False):
            rec_over_prophet = 1.0 / g["ratio_prophet"].to_numpy(dtype=np.float64)
            rows.append(
                {
                    "folder": run.key,
                    "family": family,
                    "lam": lam,
                    "n_chains": int(g["chain"].nunique()),
                    "no_recall_over_recall_median": float(g["ratio_no_recall"].median()),
                    "no_recall_over_recall_max": float(g["ratio_no_recall"].max()),
                    "best_threshold_over_recall_median": float(g["ratio_best_threshold"].median()),
                    "best_threshold_over_recall_max": float(g["ratio_best_threshold"].max()),
                    "recall_over_prophet_median": float(np.median(rec_over_prophet)),
                    "recall_over_prophet_max": float(rec_over_prophet.max()),
                }
            )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------- markdown


def fmt_estimate(mean: float, half: float, reached: int | None = None, unreached: int = 0) -> str:
    """``0.652 ± 0.022``, ``0.677 ± 0.009 (2/10 unreached)``, ``— (10/10 unreached)``."""
    total = (reached or 0) + unreached
    if reached == 0 or not math.isfinite(mean):
        return f"— ({unreached}/{total} unreached)" if unreached else "—"
    text = f"{mean:.3f}" + (f" ± {half:.3f}" if math.isfinite(half) else "")
    return text + (f" ({unreached}/{total} unreached)" if unreached else "")


def fmt_gap(mean: float, half: float) -> str:
    """``+0.003 ± 0.002``; empty for policies without a fitted model."""
    if not math.isfinite(mean):
        return ""
    return f"{mean:+.3f}" + (f" ± {half:.3f}" if math.isfinite(half) else "")


TRACE_LEGEND = (
    "Saving = 1 − the normalised cost at which a policy's upper hull (randomising between its "
    "operating points) first reaches the reference accuracy minus δ points; mean ± 95% "
    'half-width (Student t) over the random fit/test splits; "(k/R unreached)": splits on '
    'which the policy never reaches that accuracy, left out of the mean; "—": unreached on '
    "every split. Area = mean hull accuracy over normalised cost from the cheapest point to 1 "
    "(the full chain), counting 0 below a policy's cheapest point (so the oracle, one point, "
    "scores low). Reference accuracy (mean over splits) in brackets. Calibration gap: for "
    "policies with a fitted model, predicted minus realised accuracy of the answers returned "
    "at the largest λ (mean ± 95% half-width over splits)."
)
SYNTHETIC_LEGEND = (
    "Synthetic study (exact computation on random chains, no model run): ratios of expected "
    "objectives J = λ·loss + (1 − λ)·cost, median / max over the chains of each family."
)


def _headline_cells(t: TraceRun, r: pd.Series, first: bool) -> list[str]:
    """One row of the headline Markdown table; workload and reference only on its first row."""
    policy = str(r["policy"])
    savings = [
        fmt_estimate(
            r[f"saving_d{d:g}_mean"],
            r[f"saving_d{d:g}_ci95_half"],
            int(r[f"saving_d{d:g}_n_reached"]),
            int(r[f"saving_d{d:g}_n_unreached"]),
        )
        for d in DELTAS
    ]
    return [
        f"`{t.key}`" if first else "",
        f"{t.reference.replace('_', ' ')} ({t.reference_acc:.3f})" if first else "",
        policy + (f" ({POLICY_NOTES[policy]})" if policy in POLICY_NOTES else ""),
        *savings,
        fmt_estimate(r["area_mean"], r["area_ci95_half"]),
        fmt_gap(r["calibration_gap_mean"], r["calibration_gap_ci95_half"]),
    ]


def trace_markdown(traces: Sequence[TraceRun], table: pd.DataFrame) -> list[str]:
    """The headline table (rows of ``table``, :func:`summary_table`) and the per-workload
    provenance table, as Markdown lines."""
    out = [
        TRACE_LEGEND,
        "",
        "| workload | reference | policy | saving, δ = 0 | saving, δ = 1 | area under hull "
        "| calibration gap |",
        "|---|---|---|---|---|---|---|",
    ]
    by_key = {t.key: t for t in traces}
    last = None
    for _, r in table.iterrows():
        t = by_key[str(r["workload"])]
        out.append("| " + " | ".join(_headline_cells(t, r, first=last != t.key)) + " |")
        last = t.key
    out += [
        "",
        "| workload | splits × test samples | reference | costs | produced by |",
        "|---|---|---|---|---|",
    ]
    for t in traces:
        size = f"{t.n_splits} × {t.n_test}" if t.n_test else f"{t.n_splits} splits"
        cmd = f"`{t.command}`" if t.command else NO_COMMAND
        ref = f"{t.reference} — {t.reference_note}"
        out.append(f"| `{t.key}` | {size} | {ref} | {t.cost_source}; unit: {t.cost_unit} | {cmd} |")
    return out


def synthetic_markdown(synthetic: Sequence[SyntheticRun]) -> list[str]:
    """The synthetic ratio table and, per folder, the lower-bound check, as Markdown lines."""
    out = [
        SYNTHETIC_LEGEND,
        "",
        "| folder | family | λ | chains | J no-recall / J recall | J best threshold / J recall "
        "| J recall / J prophet |",
        "|---|---|---|---|---|---|---|",
    ]
    for _, r in synthetic_table(synthetic).iterrows():
        out.append(
            f"| `{r['folder']}` | {r['family']} | {r['lam']:g} | {r['n_chains']} "
            f"| {r['no_recall_over_recall_median']:.3f} / {r['no_recall_over_recall_max']:.3f} "
            f"| {r['best_threshold_over_recall_median']:.3f} / {r['best_threshold_over_recall_max']:.3f} "
            f"| {r['recall_over_prophet_median']:.3f} / {r['recall_over_prophet_max']:.3f} |"
        )
    for run in synthetic:
        lb = run.tables["lower_bound"]
        err = np.abs(lb["ratio"] - lb["ratio_closed"]) / np.abs(lb["ratio_closed"])
        cmd = f"`{run.command}`" if run.command else NO_COMMAND
        out += [
            "",
            f"`{run.key}`: lower-bound family, largest relative gap between the solver's ratio and "
            f"the closed form {float(err.max()):.1e} over {len(lb)} instances (α up to "
            f"{float(lb['alpha'].max()):g}); produced by {cmd}.",
        ]
    return out


def markdown(traces: Sequence[TraceRun], synthetic: Sequence[SyntheticRun], table: pd.DataFrame) -> str:
    """The Markdown tables (no top-level heading), as pasted into the README."""
    out = trace_markdown(traces, table) if traces else []
    if synthetic:
        out += ([""] if out else []) + synthetic_markdown(synthetic)
    return "\n".join(out) + "\n"


def report_markdown(root: Path, body: str) -> str:
    """``summary.md``: a heading, where the tables come from, then ``body`` (:func:`markdown`)."""
    return (
        "# Headline results\n\nGenerated by `python scripts/make_figures.py` from the saved tables "
        f"under `{display_path(root)}/` only; do not edit by hand.\n\n" + body
    )


# ---------------------------------------------------------------------------------- README


def replace_marked_section(text: str, body: str) -> str | None:
    """``text`` with the lines between :data:`BEGIN_MARK` and :data:`END_MARK` replaced by
    ``body``; ``None`` if it has no such markers."""
    start, end = text.find(BEGIN_MARK), text.find(END_MARK)
    if start < 0 or end < start:
        return None
    return text[: start + len(BEGIN_MARK)] + "\n" + body + text[end:]


def update_readme(path: Path, body: str) -> bool:
    """Replace the marked section of the Markdown file ``path`` by ``body`` (written atomically,
    only if it changes); False if the file has no markers."""
    text = path.read_text()
    new = replace_marked_section(text, body)
    if new is None:
        return False
    if new != text:
        write_text(path, new)
    return True


# ---------------------------------------------------------------------------------- files


@dataclass(frozen=True)
class Report:
    """The headline results of a tree: ``summary`` (:func:`summary_table`), ``synthetic``
    (:func:`synthetic_table`) and ``markdown`` (:func:`markdown`, the README section)."""

    summary: pd.DataFrame
    synthetic: pd.DataFrame
    markdown: str


def build_report(traces: Sequence[TraceRun], synthetic: Sequence[SyntheticRun]) -> Report:
    """The headline tables and their Markdown from loaded runs (:func:`load_results`)."""
    table = summary_table(traces)
    return Report(table, synthetic_table(synthetic), markdown(traces, synthetic, table))


def report_files(report: Report, root: Path) -> dict[str, str]:
    """File name -> text of the report's files, in writing order: ``summary.csv`` (when there
    are trace runs), ``summary_synthetic.csv`` (when there are synthetic runs; every loaded run
    gives rows) and ``summary.md``; ``root``: the results root the Markdown names."""
    files = {}
    if not report.summary.empty:
        files["summary.csv"] = report.summary.to_csv(index=False)
    if not report.synthetic.empty:
        files["summary_synthetic.csv"] = report.synthetic.to_csv(index=False)
    files["summary.md"] = report_markdown(root, report.markdown)
    return files
