"""The figures of a results tree, redrawn from its saved tables only (README: experiments).

Per trace workload ``<key>`` (:class:`ttamer.evaluation.report.TraceRun`): ``fig_<key>.png``
(accuracy against normalised cost for every policy), ``fig_<key>_usage.png`` (graph studies)
and ``fig_<key>_calibration.png`` (where a policy has a fitted model); per synthetic folder:
``fig_<key>_lower_bound.png``, ``fig_<key>_ratio_distribution.png``, ``fig_<key>_pareto.png``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pandas as pd

from ttamer.evaluation.report import SyntheticRun, TraceRun
from ttamer.evaluation.results import (
    SYNTHETIC_TAG,
    ResultsError,
    display_path,
    figure_name,
    table_path,
)
from ttamer.plots.graphs import plot_stage_usage
from ttamer.plots.synthetic import SYNTHETIC_FIGURES, SyntheticPlot
from ttamer.plots.traces import plot_calibration, plot_trace_pareto


@dataclass(frozen=True)
class FigureJob:
    """One figure to draw: ``draw(path)`` writes the PNG ``path`` from the table ``source``."""

    path: Path
    source: Path
    draw: Callable[[Path], Path]


def draw_trace(t: TraceRun, path: Path) -> Path:
    """Accuracy against normalised cost for every policy of ``t``."""
    return plot_trace_pareto(t.points, path, t.title, t.cost_unit, t.stage_names, legend_loc="best")


def draw_usage(t: TraceRun, path: Path) -> Path:
    """How often each stage ran, answered and was skipped (``t`` has a usage table)."""
    assert t.usage is not None
    return plot_stage_usage(t.usage, t.points, path, t.key)


def draw_calibration(t: TraceRun, path: Path) -> Path:
    """Predicted against realised accuracy (``t`` has a calibration table)."""
    assert t.calibration is not None
    return plot_calibration(t.calibration, path, f"{t.key}: calibration")


def draw_table(plot: SyntheticPlot, table: pd.DataFrame, path: Path) -> Path:
    """``plot(table, path)``."""
    return plot(table, path)


def _trace_jobs(t: TraceRun) -> list[tuple[str, Path, Callable[[Path], Path]]]:
    """(figure name, source table, drawer) of one trace workload's figures."""
    jobs: list[tuple[str, Path, Callable[[Path], Path]]] = [
        (figure_name(t.key), table_path(t.folder, t.tag, "points"), partial(draw_trace, t))
    ]
    if t.usage is not None:
        source = table_path(t.folder, t.tag, "usage")
        jobs.append((figure_name(t.key, "usage"), source, partial(draw_usage, t)))
    if t.calibration is not None and not t.calibration.empty:
        source = table_path(t.folder, t.tag, "calibration")
        jobs.append((figure_name(t.key, "calibration"), source, partial(draw_calibration, t)))
    return jobs


def _synthetic_jobs(s: SyntheticRun) -> list[tuple[str, Path, Callable[[Path], Path]]]:
    """(figure name, source table, drawer) of one synthetic folder's figures."""
    return [
        (
            figure_name(s.key, fig),
            table_path(s.folder, SYNTHETIC_TAG, kind),
            partial(draw_table, plot, s.tables[kind]),
        )
        for fig, (kind, plot) in SYNTHETIC_FIGURES.items()
    ]


def figure_jobs(traces: Sequence[TraceRun], synthetic: Sequence[SyntheticRun], out: Path) -> list[FigureJob]:
    """Every figure of the loaded runs, to be written into ``out``: the trace workloads' first,
    then the synthetic folders'. :class:`ResultsError` if two runs would write one file name."""
    writers: dict[str, str] = {}
    jobs = []
    runs: list[tuple[Path, list[tuple[str, Path, Callable[[Path], Path]]]]] = [
        *((t.folder, _trace_jobs(t)) for t in traces),
        *((s.folder, _synthetic_jobs(s)) for s in synthetic),
    ]
    for folder, planned in runs:
        for name, source, draw in planned:
            if name in writers:
                raise ResultsError(f"{display_path(folder)} and {writers[name]} would both write {name}")
            writers[name] = display_path(folder)
            jobs.append(FigureJob(out / name, source, draw))
    return jobs
