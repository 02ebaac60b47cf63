"""Where graph policies go (README: graphs), drawn from the saved usage and points tables only: for
each stage, the fraction of requests that ran it, whose answer it gave, and that skipped it,
against the policy's mean normalised cost, one line per ``lam`` sweep point averaged over the
random splits."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ttamer.plots.synthetic import new_figure, save_figure

USAGE_POLICIES = ("skip_recall", "tree_recall")
FRACTIONS = {
    "run_fraction": "ran the stage",
    "returned_fraction": "got the stage's answer",
    "skipped_fraction": "skipped the stage (ran a later one)",
}


def usage_curves(usage: pd.DataFrame, points: pd.DataFrame, policy: str) -> pd.DataFrame:
    """Per (knob, stage): mean normalised cost and the :data:`FRACTIONS` over the splits."""
    cost = points[points["policy"] == policy].groupby("knob")["normalized_cost"].mean()
    rows = usage[usage["policy"] == policy]
    mean = rows.groupby(["knob", "stage", "stage_name"], as_index=False)[list(FRACTIONS)].mean()
    mean["normalized_cost"] = mean["knob"].map(cost)
    return mean.sort_values(["stage", "normalized_cost"])


def plot_stage_usage(
    usage: pd.DataFrame, points: pd.DataFrame, path: str | os.PathLike[str], title: str
) -> Path:
    """The run and returned fraction of every stage for the first of :data:`USAGE_POLICIES` in
    ``usage``, against normalised cost."""
    policy = next((p for p in USAGE_POLICIES if p in set(usage["policy"])), None)
    if policy is None:
        raise ValueError(f"usage table has none of the policies {USAGE_POLICIES}")
    curves = usage_curves(usage, points, policy)
    fig, axes = new_figure(1, 3, figsize=(18.0, 4.8), sharex=True)
    for (stage, name), rows in curves.groupby(["stage", "stage_name"], sort=True):
        for ax, column in zip(axes[0], FRACTIONS, strict=True):
            ax.plot(rows["normalized_cost"], rows[column], marker=".", ms=3, label=f"{stage}: {name}")
    for ax, what in zip(axes[0], FRACTIONS.values(), strict=True):
        ax.set_xlabel("normalised cost of the policy (mean / full cascade cost)")
        ax.set_ylabel(f"fraction of test requests that {what}")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0, 0].set_title(f"{title}: {policy}, one point per lam (mean over splits)")
    axes[0, 2].legend(fontsize=8, title="stage")
    return save_figure(fig, path)
