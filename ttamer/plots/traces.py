"""Figures of policies scored on traces, drawn from the tidy points table only (as written by
``ttamer sweep`` or a Hydra trace workload): accuracy against normalised cost, the mean upper
hull of every policy over the random splits with a ±1 standard deviation band, the single
stages and the oracle as points."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from ttamer.evaluation.pareto import mean_curve
from ttamer.plots.synthetic import new_figure, save_figure

CURVE_STYLE: dict[str, dict[str, object]] = {
    "recall": {"label": "recall (T-Tamer index)", "color": "C0", "lw": 2.2},
    "no_recall": {"label": "no recall (optimal stopping)", "color": "C3", "lw": 1.6},
    "posterior_recall": {
        "label": "posterior recall (later stages revise errors)",
        "color": "navy",
        "lw": 2.4,
    },
    "posterior_no_recall": {"label": "posterior no recall", "color": "darkred", "lw": 1.6, "ls": "-."},
    "auto": {"label": "auto (policy chosen by cross-validation)", "color": "0.2", "lw": 1.2, "ls": ":"},
    "max_softmax": {"label": "one max-softmax threshold", "color": "C2", "lw": 1.6},
    "entropy": {"label": "one entropy threshold", "color": "C8", "lw": 1.3},
    "patience": {"label": "patience (K agreements)", "color": "C5", "lw": 1.3},
    "per_stage_threshold": {"label": "per-stage thresholds (Apparate-style)", "color": "C1", "lw": 1.6},
    "threshold_with_recall": {"label": "max-softmax threshold + recall", "color": "C4", "lw": 1.3},
    # graph policies (ttamer.studies.graph_study)
    "skip_recall": {"label": "skipping: recall (closure index)", "color": "C9", "lw": 2.2, "ls": "--"},
    "skip_no_recall": {"label": "skipping: no recall", "color": "C6", "lw": 1.6, "ls": "--"},
    "single_exit": {"label": "one exit alone (no earlier heads)", "color": "0.45", "lw": 1.0, "ls": ":"},
    "tree_recall": {"label": "tree: recall (tree index)", "color": "C9", "lw": 2.2, "ls": "--"},
    "tree_no_recall": {"label": "tree: no recall (descending)", "color": "C6", "lw": 1.6, "ls": "--"},
    "chain_recall_best_order": {"label": "chain recall, best order on fit split", "color": "C7", "lw": 1.4},
}
POINT_POLICIES = ("static", "oracle")


def _curves(ax: Axes, curve: pd.DataFrame, policies: Sequence[str]) -> None:
    for policy in policies:
        rows = curve[curve["policy"] == policy]
        if rows.empty:
            continue
        style = CURVE_STYLE.get(policy, {"label": policy, "color": "k", "lw": 1.0})
        rows = rows[rows["n_splits"] == rows["n_splits"].max()]  # where every split's hull is defined
        x, m, s = rows["normalized_cost"], rows["mean"], rows["std"].fillna(0.0)
        ax.plot(x, m, color=style["color"], lw=style["lw"], ls=style.get("ls", "-"), label=style["label"])
        ax.fill_between(x, m - s, m + s, color=style["color"], alpha=0.15, lw=0)


def _points(ax: Axes, points: pd.DataFrame, stage_names: Sequence[str] | None) -> None:
    static = points[points["policy"] == "static"].groupby("knob")[["normalized_cost", "accuracy"]].mean()
    for knob, row in static.iterrows():
        k = int(float(str(knob)))
        name = stage_names[k - 1] if stage_names and 0 < k <= len(stage_names) else f"stage {k}"
        ax.plot(row["normalized_cost"], row["accuracy"], "ks", ms=6)
        ax.annotate(
            name,
            (row["normalized_cost"], row["accuracy"]),
            textcoords="offset points",
            xytext=(5, -11),
            fontsize=8,
        )
    oracle = points[points["policy"] == "oracle"][["normalized_cost", "accuracy"]].mean()
    if not oracle.isna().any():
        ax.plot(
            oracle["normalized_cost"],
            oracle["accuracy"],
            "k*",
            ms=11,
            label="oracle (cheapest correct stage)",
        )
    ax.plot([], [], "ks", ms=6, label="single stages (mean over splits)")


def plot_trace_pareto(
    points: pd.DataFrame,
    path: str | os.PathLike[str],
    title: str,
    cost_unit: str,
    stage_names: Sequence[str] | None = None,
    zoom_points: float = 4.0,
    legend_loc: str = "lower right",
) -> Path:
    """Accuracy against normalised cost for every policy in ``points``; the right panel zooms
    on accuracies within ``zoom_points`` percentage points of the best single stage.
    ``legend_loc``: a matplotlib legend location for the left panel (``"best"`` avoids data)."""
    lo = float(points["normalized_cost"].min())
    grid = np.linspace(lo, 1.0, 400)
    curve = mean_curve(points, grid)
    policies = [p for p in CURVE_STYLE if p in set(points["policy"])]
    fig, axes = new_figure(1, 2, figsize=(14.5, 5.6))
    best = points[points["policy"] == "static"].groupby("knob")["accuracy"].mean().max()
    n_splits = points["split"].nunique()
    for ax, zoom in zip(axes[0], (False, True), strict=True):
        _curves(ax, curve, policies)
        _points(ax, points, stage_names)
        ax.axhline(best, color="0.5", ls=":", lw=1)
        ax.set_xlabel(f"normalised cost (mean / full cascade cost; costs in {cost_unit})")
        ax.set_ylabel("accuracy (fraction of test samples)")
        ax.grid(alpha=0.3)
        if zoom:
            top = float(points.loc[points["policy"] != "oracle", "accuracy"].max())
            ax.set_ylim(best - zoom_points / 100.0, max(best, top) + 0.005)
            ax.set_title(f"zoom: within {zoom_points:g} points of the best single stage (dotted)")
        else:
            ax.set_title(title)
            ax.legend(fontsize=8, loc=legend_loc)
    fig.suptitle(
        f"lines: mean upper hull over {n_splits} random fit/test splits; bands: ±1 std", fontsize=9, y=0.005
    )
    return save_figure(fig, path)


def plot_calibration(table: pd.DataFrame, path: str | os.PathLike[str], title: str) -> Path:
    """Predicted (dashed) and realised (solid) accuracy of every policy with a fitted model
    against its trade-off weight lam (log-odds axis), from a calibration table
    (:func:`ttamer.evaluation.calibration.calibration_table`); the right panel shows the gap."""
    fig, axes = new_figure(1, 2, figsize=(13.5, 5.0))
    left, right = axes[0]
    for policy, rows in table.groupby("policy", sort=False):
        rows = rows[(rows["knob"] > 0) & (rows["knob"] < 1)].sort_values("knob")
        style = CURVE_STYLE.get(str(policy), {"label": str(policy), "color": "k"})
        odds = rows["knob"] / (1.0 - rows["knob"])
        color, label = style["color"], style["label"]
        left.plot(odds, rows["accuracy"], color=color, lw=1.6, label=f"{label}: realised")
        left.plot(
            odds, rows["predicted_accuracy"], color=color, lw=1.2, ls="--", label="  predicted by its model"
        )
        right.plot(odds, rows["gap"], color=color, lw=1.6, label=str(label))
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xlabel("trade-off odds lam / (1 - lam) (larger: accuracy weighs more than cost)")
        ax.grid(alpha=0.3)
    left.set_ylabel("accuracy on the test split (fraction, mean over splits)")
    left.set_title(title)
    left.legend(fontsize=7, loc="lower right")
    right.axhline(0.0, color="0.4", lw=1)
    right.set_ylabel("predicted - realised accuracy (fraction)")
    right.set_title("winner's curse: how far each model over-promises")
    right.legend(fontsize=7)
    return save_figure(fig, path)
