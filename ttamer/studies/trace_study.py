"""A trace study (README: traces): score every policy on repeated fit/test splits of one trace and
summarise the Pareto metrics. Plain library code: the Hydra workloads call it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd

from ttamer.evaluation.calibration import calibration_table
from ttamer.evaluation.pareto import DEFAULT_DELTAS, hull_table, summarise
from ttamer.evaluation.scoring import ScoringConfig, score_policies
from ttamer.traces.trace import Trace


@dataclass(frozen=True)
class TraceStudyConfig:
    """``scoring``: policies, splits, fitting. ``reference``: the accuracy that savings are
    measured at, ``"best_stage"`` (the most accurate single stage) or ``"last_stage"``.
    ``deltas``: accuracy points below the reference at which the cost is also reported."""

    scoring: ScoringConfig
    reference: Literal["best_stage", "last_stage"] = "best_stage"
    deltas: tuple[float, ...] = DEFAULT_DELTAS


@dataclass(frozen=True)
class TraceStudyResult:
    """``points``: the tidy points table (:data:`ttamer.evaluation.scoring.COLUMNS`);
    ``summary``: policy x metric with error bars over splits; ``hulls``: the upper-hull vertices
    of every policy and split; ``calibration``: predicted against realised accuracy per policy
    with a fitted model and knob value."""

    points: pd.DataFrame
    summary: pd.DataFrame
    hulls: pd.DataFrame
    calibration: pd.DataFrame


def run_trace_study(trace: Trace, config: TraceStudyConfig) -> TraceStudyResult:
    points = score_policies(trace, config.scoring)
    summary = summarise(points, reference=config.reference, deltas=config.deltas)
    return TraceStudyResult(points, summary, hull_table(points), calibration_table(points))


def headline(summary: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One metric per policy as ``mean ± half-width of the 95% interval`` plus unreached splits."""
    rows = summary[summary["metric"] == metric].set_index("policy")
    half = (rows["ci95_high"] - rows["ci95_low"]) / 2.0
    return pd.DataFrame(
        {
            "mean": rows["mean"],
            "ci95_half_width": half,
            "n_splits": rows["n_splits"],
            "n_unreached": rows["n_unreached"],
        }
    )
