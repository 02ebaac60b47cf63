#!/usr/bin/env python
"""Regenerate every figure and the headline table from saved results only (README: experiments).

    python scripts/make_figures.py [--results results] [--out results/figures] [--readme PATH]

Discovers every results folder under ``--results`` (the folder itself included): a folder
holding a ``<tag>_points.csv`` (a trace workload, as written by ``ttamer-run``) or the
``synthetic_*.csv`` tables of the synthetic study. From those tables alone, with no model run,
no solver call and no trace loaded, it writes into ``--out``:

* ``fig_<folder>.png`` per trace workload: accuracy against normalised cost for every policy
  (x label with the cost unit of the points table's ``cost_unit`` column; stage names from the
  folder's ``benchmark-infer-*.csv`` when there is one, else "stage k");
* ``fig_<folder>_usage.png`` per graph study (a ``<tag>_usage.csv``): how often each stage ran,
  answered and was skipped, against normalised cost;
* ``fig_<folder>_lower_bound.png``, ``fig_<folder>_ratio_distribution.png`` and
  ``fig_<folder>_pareto.png`` per synthetic folder;
* ``summary.csv``: workload x policy -> saving at the reference accuracy minus δ = 0 and 1
  points (mean, 95% half-width, splits reached / unreached) and the area under the hull, read
  from the saved ``<tag>_summary.csv`` (recomputed from the points table with
  :func:`ttamer.evaluation.pareto.summarise` only when that file is missing or lacks a metric);
* ``summary_synthetic.csv``: the synthetic study's objective ratios per family and λ;
* ``summary.md``: both tables and, per folder, the command that produced it, the reference
  accuracy and where the costs come from.

With ``--readme`` (default ``<results>/README.md``, if it exists) the Markdown between the
lines ``<!-- BEGIN make_figures -->`` and ``<!-- END make_figures -->`` is replaced by the same
tables, so the README stays in sync. Every file is written atomically. One progress line per
file on stdout. A missing or malformed results folder: one line on stderr, exit code 2, and
nothing written (every table is read and checked before anything is drawn).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from ttamer.errors import FieldError
from ttamer.evaluation.calibration import CALIBRATION_COLUMNS, GAP_METRIC
from ttamer.evaluation.pareto import (
    POINT_COLUMNS,
    SUMMARY_COLUMNS,
    check_points,
    reference_accuracy,
    summarise,
)
from ttamer.fileio import atomic_write_bytes
from ttamer.plots.graphs import plot_stage_usage
from ttamer.plots.synthetic import plot_lower_bound, plot_pareto, plot_ratio_distribution
from ttamer.plots.traces import (
    CURVE_STYLE,
    plot_calibration,
    plot_trace_pareto,
    stage_names_from_benchmark,
)
from ttamer.studies.graph_study import USAGE_COLUMNS

DELTAS = (0.0, 1.0)
"""Accuracy drops (percentage points) below the reference shown in the headline table."""

BEGIN_MARK = "<!-- BEGIN make_figures -->"
END_MARK = "<!-- END make_figures -->"

SYNTHETIC_TABLES: dict[str, tuple[str, ...]] = {
    "lower_bound": ("case", "alpha", "n_stages", "cost_scale", "lam", "ratio", "ratio_closed"),
    "ratios": ("family", "chain", "lam", "ratio_no_recall", "ratio_best_threshold", "ratio_prophet"),
    "pareto": ("chain", "policy", "knob", "knob_value", "expected_loss", "expected_cost"),
}
Plot = Callable[[pd.DataFrame, Path], Path]
SYNTHETIC_FIGURES: dict[str, tuple[str, Plot]] = {
    "lower_bound": ("lower_bound", plot_lower_bound),
    "ratio_distribution": ("ratios", plot_ratio_distribution),
    "pareto": ("pareto", plot_pareto),
}
POLICY_NOTES = {
    "static": "single stages",
    "oracle": "bound: cheapest correct stage",
}


class ResultsError(Exception):
    """A missing or malformed results folder; the message is one line."""


# ---------------------------------------------------------------------------------- reading


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def read_csv(path: Path, columns: Sequence[str]) -> pd.DataFrame:
    """A CSV with at least ``columns``, or :class:`ResultsError` naming the file."""
    try:
        table = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{_rel(path)}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ResultsError(f"{_rel(path)}: missing column(s) {', '.join(missing)}")
    if table.empty:
        raise ResultsError(f"{_rel(path)}: no rows")
    return table


def read_yaml(path: Path) -> dict[str, Any]:
    """A Hydra ``.yaml`` file as a dict (``{}`` if absent); interpolations stay strings."""
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ResultsError(f"{_rel(path)}: not readable YAML ({str(exc).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ResultsError(f"{_rel(path)}: expected a mapping at the top level")
    return data


def run_command(folder: Path) -> str | None:
    """The ``ttamer-run`` command line that produced ``folder``, from Hydra's saved overrides."""
    hydra = read_yaml(folder / ".hydra" / "hydra.yaml").get("hydra", {})
    overrides = hydra.get("overrides", {}) if isinstance(hydra, dict) else {}
    task = overrides.get("task") if isinstance(overrides, dict) else None
    if task is None:
        saved = folder / ".hydra" / "overrides.yaml"
        if not saved.is_file():
            return None
        try:
            task = yaml.safe_load(saved.read_text()) or []
        except (OSError, yaml.YAMLError) as exc:
            raise ResultsError(f"{_rel(saved)}: not readable YAML ({str(exc).splitlines()[0]})") from None
    extra = overrides.get("hydra") if isinstance(overrides, dict) else None
    hydra_args = [str(o) for o in extra or [] if not str(o).startswith("hydra.mode=")]
    if not any(a.startswith("hydra.run.dir=") for a in hydra_args):
        hydra_args.append(f"hydra.run.dir={_rel(folder)}")
    return " ".join(["ttamer-run", *(shlex.quote(str(o)) for o in [*task, *hydra_args])])


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
    """One synthetic study's saved tables, read and checked."""

    folder: Path
    key: str
    tables: dict[str, pd.DataFrame]
    command: str | None


def folder_key(folder: Path, root: Path) -> str:
    rel = folder.resolve().relative_to(root.resolve())
    parts = rel.parts or (root.resolve().name,)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "_".join(parts))


def _unique(values: pd.Series, name: str, path: Path) -> str:
    vals = [v for v in values.dropna().astype(str).unique() if v]
    if len(vals) > 1:
        raise ResultsError(f"{_rel(path)}: column {name} has several values {vals}")
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


def load_trace_run(folder: Path, points_path: Path, root: Path, several: bool) -> TraceRun:
    tag = points_path.name[: -len("_points.csv")]
    key = folder_key(folder, root)
    if several:
        key = f"{key}_{tag}"
    points = read_csv(points_path, (*POINT_COLUMNS, "cost_unit"))
    try:
        check_points(points)
    except FieldError as exc:
        raise ResultsError(f"{_rel(points_path)}: {exc}") from None
    if not (points["policy"] == "static").any():
        raise ResultsError(
            f"{_rel(points_path)}: no 'static' rows (needed for the reference and the single stages)"
        )
    config = read_yaml(folder / ".hydra" / "config.yaml")
    workload_cfg = config.get("workload", {}) if isinstance(config.get("workload"), dict) else {}
    ref_value = workload_cfg.get("reference")
    if ref_value is None:
        reference, note = "last_stage", "not recorded (no workload.reference in .hydra/config.yaml); "
        note += "assumed last_stage, the default of ttamer.evaluation.pareto.summarise"
    else:
        reference, note = str(ref_value), "workload.reference in .hydra/config.yaml"
    if reference not in ("last_stage", "best_stage"):
        raise ResultsError(
            f"{_rel(folder)}: workload.reference must be last_stage or best_stage, got {reference}"
        )
    try:
        ref_acc = float(reference_accuracy(points, reference).mean())  # type: ignore[arg-type]
    except FieldError as exc:
        raise ResultsError(f"{_rel(points_path)}: {exc}") from None
    summary_path = folder / f"{tag}_summary.csv"
    needed = {*(f"saving_at_delta_{d:g}" for d in DELTAS), "area"}
    summary, source = None, "recomputed from the points table (ttamer.evaluation.pareto.summarise)"
    if summary_path.is_file():
        saved = read_csv(summary_path, SUMMARY_COLUMNS)
        if needed <= set(saved["metric"]):
            summary, source = saved, f"saved {summary_path.name}"
        else:
            source = f"recomputed from the points table ({summary_path.name} lacks some metrics)"
    if summary is None:
        try:
            summary = summarise(points, reference, DELTAS)  # type: ignore[arg-type]
        except FieldError as exc:
            raise ResultsError(f"{_rel(points_path)}: {exc}") from None
    benches = sorted(folder.glob("benchmark-infer-*.csv"))
    bench = read_csv(benches[0], ("stage", "batch_size", "median_ms")) if benches else None
    unit = _unique(points["cost_unit"], "cost_unit", points_path)
    n_test = int(points["n_test"].max()) if "n_test" in points.columns else None
    usage_path = folder / f"{tag}_usage.csv"
    usage = read_csv(usage_path, USAGE_COLUMNS) if usage_path.is_file() else None
    cal_path = folder / f"{tag}_calibration.csv"
    calibration = read_csv(cal_path, CALIBRATION_COLUMNS) if cal_path.is_file() else None
    return TraceRun(
        folder=folder,
        key=key,
        tag=tag,
        points=points,
        summary=summary,
        summary_source=source,
        workload=str(workload_cfg.get("name", tag)),
        dataset=str(workload_cfg["dataset"]) if "dataset" in workload_cfg else None,
        reference=reference,
        reference_note=note,
        reference_acc=ref_acc,
        cost_unit=unit,
        cost_source=cost_source(unit, bench, config),
        stage_names=stage_names_from_benchmark(bench) if bench is not None else None,
        n_splits=int(points["split"].nunique()),
        n_test=n_test,
        command=run_command(folder),
        usage=usage,
        calibration=calibration,
    )


def load_synthetic_run(folder: Path, root: Path) -> SyntheticRun:
    tables = {}
    for name, cols in SYNTHETIC_TABLES.items():
        path = folder / f"synthetic_{name}.csv"
        if not path.is_file():
            raise ResultsError(f"{_rel(folder)}: synthetic results without {path.name}")
        tables[name] = read_csv(path, cols)
    return SyntheticRun(folder, folder_key(folder, root), tables, run_command(folder))


def discover(root: Path, skip: Path) -> list[Path]:
    """Every folder under ``root`` (itself included) holding a points table, synthetic tables
    or a Hydra config; hidden folders, ``wandb`` and ``skip`` (the output folder) are ignored."""
    found = []
    skip_r = skip.resolve()
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(
            n for n in dirnames if not n.startswith(".") and n != "wandb" and (here / n).resolve() != skip_r
        )
        tables = [f for f in filenames if f.endswith("_points.csv") or re.fullmatch(r"synthetic_.*\.csv", f)]
        if tables or (here / ".hydra" / "config.yaml").is_file():
            found.append(here)
    return found


def load_all(root: Path, out: Path) -> tuple[list[TraceRun], list[SyntheticRun]]:
    if not root.is_dir():
        raise ResultsError(f"{root}: results folder does not exist")
    traces: list[TraceRun] = []
    synthetic: list[SyntheticRun] = []
    for folder in discover(root, out):
        points_files = sorted(folder.glob("*_points.csv"))
        is_synthetic = any(folder.glob("synthetic_*.csv"))
        if not points_files and not is_synthetic:
            raise ResultsError(
                f"{_rel(folder)}: has .hydra/config.yaml but no *_points.csv or synthetic_*.csv"
            )
        for p in points_files:
            traces.append(load_trace_run(folder, p, root, len(points_files) > 1))
        if is_synthetic:
            synthetic.append(load_synthetic_run(folder, root))
    if not traces and not synthetic:
        raise ResultsError(f"{root}: no results folder (no *_points.csv or synthetic_*.csv below it)")
    return traces, synthetic


# ---------------------------------------------------------------------------------- tables


def _policies(traces: Sequence[TraceRun]) -> list[str]:
    seen = dict.fromkeys(p for t in traces for p in t.points["policy"].astype(str))
    order = [p for p in (*CURVE_STYLE, "static", "oracle") if p in seen]
    return order + sorted(p for p in seen if p not in order)


def _estimate(
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


def summary_table(traces: Sequence[TraceRun]) -> pd.DataFrame:
    """The headline table: one row per workload and policy."""
    rows = []
    for t in traces:
        stats = {(str(r["policy"]), str(r["metric"])): r for r in t.summary.to_dict("records")}
        for policy in _policies([t]):
            row: dict[str, Any] = {
                "workload": t.key,
                "folder": _rel(t.folder),
                "reference": t.reference,
                "reference_accuracy": t.reference_acc,
                "cost_unit": t.cost_unit,
                "costs": t.cost_source,
                "policy": policy,
            }
            for d in DELTAS:
                for k, v in _estimate(stats, policy, f"saving_at_delta_{d:g}").items():
                    row[f"saving_d{d:g}_{k}"] = v
            area = _estimate(stats, policy, "area")
            row["area_mean"], row["area_ci95_half"] = area["mean"], area["ci95_half"]
            gap = _estimate(stats, policy, GAP_METRIC)
            row["calibration_gap_mean"], row["calibration_gap_ci95_half"] = gap["mean"], gap["ci95_half"]
            row["n_splits"] = t.n_splits
            row["summary_source"] = t.summary_source
            rows.append(row)
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


def _ref_label(t: TraceRun) -> str:
    return f"{t.reference.replace('_', ' ')} ({t.reference_acc:.3f})"


def markdown(traces: Sequence[TraceRun], synthetic: Sequence[SyntheticRun], table: pd.DataFrame) -> str:
    """The Markdown tables (no top-level heading), as pasted into the README."""
    out: list[str] = []
    if traces:
        out += [
            "Saving = 1 − the normalised cost at which a policy's upper hull (randomising between its "
            "operating points) first reaches the reference accuracy minus δ points; mean ± 95% "
            'half-width (Student t) over the random fit/test splits; "(k/R unreached)": splits on '
            'which the policy never reaches that accuracy, left out of the mean; "—": unreached on '
            "every split. Area = mean hull accuracy over normalised cost from the cheapest point to 1 "
            "(the full chain), counting 0 below a policy's cheapest point (so the oracle, one point, "
            "scores low). Reference accuracy (mean over splits) in brackets. Calibration gap: for "
            "policies with a fitted model, predicted minus realised accuracy of the answers returned "
            "at the largest λ (mean ± 95% half-width over splits).",
            "",
            "| workload | reference | policy | saving, δ = 0 | saving, δ = 1 | area under hull "
            "| calibration gap |",
            "|---|---|---|---|---|---|---|",
        ]
        by_key = {t.key: t for t in traces}
        last = None
        for _, r in table.iterrows():
            t = by_key[str(r["workload"])]
            first = last != t.key
            last = t.key
            cells = [
                f"`{t.key}`" if first else "",
                _ref_label(t) if first else "",
                str(r["policy"]) + (f" ({POLICY_NOTES[r['policy']]})" if r["policy"] in POLICY_NOTES else ""),
                *(
                    fmt_estimate(
                        r[f"saving_d{d:g}_mean"],
                        r[f"saving_d{d:g}_ci95_half"],
                        int(r[f"saving_d{d:g}_n_reached"]),
                        int(r[f"saving_d{d:g}_n_unreached"]),
                    )
                    for d in DELTAS
                ),
                fmt_estimate(r["area_mean"], r["area_ci95_half"]),
                fmt_gap(r["calibration_gap_mean"], r["calibration_gap_ci95_half"]),
            ]
            out.append("| " + " | ".join(cells) + " |")
        out += [
            "",
            "| workload | splits × test samples | reference | costs | produced by |",
            "|---|---|---|---|---|",
        ]
        for t in traces:
            size = f"{t.n_splits} × {t.n_test}" if t.n_test else f"{t.n_splits} splits"
            cmd = f"`{t.command}`" if t.command else "unknown (no .hydra/ in the folder)"
            ref = f"{t.reference} — {t.reference_note}"
            out.append(f"| `{t.key}` | {size} | {ref} | {t.cost_source}; unit: {t.cost_unit} | {cmd} |")
    if synthetic:
        syn = synthetic_table(synthetic)
        if out:
            out.append("")
        out += [
            "Synthetic study (exact computation on random chains, no model run): ratios of expected "
            "objectives J = λ·loss + (1 − λ)·cost, median / max over the chains of each family.",
            "",
            "| folder | family | λ | chains | J no-recall / J recall | J best threshold / J recall "
            "| J recall / J prophet |",
            "|---|---|---|---|---|---|---|",
        ]
        for _, r in syn.iterrows():
            out.append(
                f"| `{r['folder']}` | {r['family']} | {r['lam']:g} | {r['n_chains']} "
                f"| {r['no_recall_over_recall_median']:.3f} / {r['no_recall_over_recall_max']:.3f} "
                f"| {r['best_threshold_over_recall_median']:.3f} / {r['best_threshold_over_recall_max']:.3f} "
                f"| {r['recall_over_prophet_median']:.3f} / {r['recall_over_prophet_max']:.3f} |"
            )
        for run in synthetic:
            lb = run.tables["lower_bound"]
            err = np.abs(lb["ratio"] - lb["ratio_closed"]) / np.abs(lb["ratio_closed"])
            cmd = f"`{run.command}`" if run.command else "unknown (no .hydra/ in the folder)"
            out += [
                "",
                f"`{run.key}`: lower-bound family, largest relative gap between the solver's ratio and "
                f"the closed form {float(err.max()):.1e} over {len(lb)} instances (α up to "
                f"{float(lb['alpha'].max()):g}); produced by {cmd}.",
            ]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------- writing


def write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())
    print(f"wrote {_rel(path)}", flush=True)


def update_readme(path: Path, body: str) -> bool:
    """Replace the text between the markers in ``path``; False if it has no markers."""
    text = path.read_text()
    start, end = text.find(BEGIN_MARK), text.find(END_MARK)
    if start < 0 or end < start:
        return False
    new = text[: start + len(BEGIN_MARK)] + "\n" + body + text[end:]
    if new != text:
        atomic_write_bytes(path, new.encode())
    return True


def _draw_trace(t: TraceRun, path: Path) -> Path:
    return plot_trace_pareto(t.points, path, t.title, t.cost_unit, t.stage_names, legend_loc="best")


def _draw_usage(t: TraceRun, path: Path) -> Path:
    assert t.usage is not None
    return plot_stage_usage(t.usage, t.points, path, t.key)


def _draw_calibration(t: TraceRun, path: Path) -> Path:
    assert t.calibration is not None
    return plot_calibration(t.calibration, path, f"{t.key}: calibration")


def _draw_table(plot: Plot, table: pd.DataFrame, path: Path) -> Path:
    return plot(table, path)


def make_figures(root: Path, out: Path, readme: Path | None) -> None:
    traces, synthetic = load_all(root, out)  # everything read and checked before writing
    names: dict[str, str] = {}

    def target(name: str, source: Path) -> Path:
        if name in names:
            raise ResultsError(f"{_rel(source)} and {names[name]} would both write {name}")
        names[name] = _rel(source)
        return out / name

    jobs: list[tuple[Path, Path, Callable[[Path], Path]]] = []
    for t in traces:
        draw = partial(_draw_trace, t)
        jobs.append((target(f"fig_{t.key}.png", t.folder), t.folder / f"{t.tag}_points.csv", draw))
        if t.usage is not None:
            source = t.folder / f"{t.tag}_usage.csv"
            jobs.append((target(f"fig_{t.key}_usage.png", t.folder), source, partial(_draw_usage, t)))
        if t.calibration is not None and not t.calibration.empty:
            source = t.folder / f"{t.tag}_calibration.csv"
            path = target(f"fig_{t.key}_calibration.png", t.folder)
            jobs.append((path, source, partial(_draw_calibration, t)))
    for s in synthetic:
        for fig, (name, plot) in SYNTHETIC_FIGURES.items():
            path = target(f"fig_{s.key}_{fig}.png", s.folder)
            jobs.append(
                (path, s.folder / f"synthetic_{name}.csv", partial(_draw_table, plot, s.tables[name]))
            )
    for i, (path, source, draw_one) in enumerate(jobs, 1):
        draw_one(path)
        print(f"[{i}/{len(jobs)}] wrote {_rel(path)} (from {_rel(source)})", flush=True)
    table = summary_table(traces)
    if traces:
        write_text(out / "summary.csv", table.to_csv(index=False))
    if synthetic:
        write_text(out / "summary_synthetic.csv", synthetic_table(synthetic).to_csv(index=False))
    body = markdown(traces, synthetic, table)
    header = (
        "# Headline results\n\nGenerated by `python scripts/make_figures.py` from the saved tables "
        f"under `{_rel(root)}/` only; do not edit by hand.\n\n"
    )
    write_text(out / "summary.md", header + body)
    if readme is not None and readme.is_file():
        if update_readme(readme, body):
            print(f"updated the table section of {_rel(readme)}", flush=True)
        else:
            print(
                f"note: {_rel(readme)} has no {BEGIN_MARK} / {END_MARK} markers; left unchanged", flush=True
            )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--results", type=Path, default=Path("results"), help="root of the results folders")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: <results>/figures)")
    parser.add_argument(
        "--readme",
        type=Path,
        default=None,
        help="Markdown file whose marked section receives the tables (default: <results>/README.md)",
    )
    parser.add_argument("--no-readme", action="store_true", help="do not touch any README")
    args = parser.parse_args(argv)
    out = args.out if args.out is not None else args.results / "figures"
    readme = (
        None if args.no_readme else (args.readme if args.readme is not None else args.results / "README.md")
    )
    try:
        make_figures(args.results, out, readme)
    except ResultsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
