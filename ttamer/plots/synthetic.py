"""Figures drawn from result tables only (README: experiments): each function takes a tidy DataFrame, as
written by a study to CSV, and writes one PNG. Nothing here solves a chain, so every figure can
be regenerated from saved results.

Units: losses are error probabilities; synthetic costs are fractions of the full chain's cost.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from numpy.typing import NDArray

from ttamer.evaluation.pareto import lower_hull
from ttamer.fileio import atomic_write_bytes

FloatArray = NDArray[np.float64]

COST_LABEL = "expected cost (fraction of full chain)"
LOSS_LABEL = "expected loss (error probability)"

RATIO_LABELS = {
    "ratio_no_recall": r"$J^*_{\mathrm{no\ recall}} / J^*_{\mathrm{recall}}$",
    "ratio_best_threshold": r"$J_{\mathrm{best\ threshold}} / J^*_{\mathrm{recall}}$",
    "ratio_prophet": r"$J^*_{\mathrm{recall}} / J_{\mathrm{prophet}}$",
}

POLICY_STYLE: dict[str, dict[str, object]] = {
    "recall": {"label": "recall optimum (T-Tamer index)", "color": "C0", "marker": "o"},
    "no_recall": {"label": "no-recall optimum (optimal stopping)", "color": "C3", "marker": "s"},
    "threshold": {"label": "single threshold (every t)", "color": "C2", "marker": "^"},
    "best_threshold": {"label": "best single threshold", "color": "C2", "marker": "^"},
    "prophet": {"label": "prophet (knows all states)", "color": "0.35", "marker": "x"},
}


def new_figure(
    nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] = (7.5, 5.2), **kwargs: Any
) -> tuple[Figure, NDArray[Any]]:
    """A figure on the Agg canvas (no pyplot, no global state) and its ``(nrows, ncols)`` axes."""
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, np.asarray(fig.subplots(nrows, ncols, squeeze=False, **kwargs))


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 150) -> Path:
    """Render ``fig`` to PNG and write it atomically (temporary file, then rename)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


# ------------------------------------------------------------------- (a) lower-bound family


def plot_lower_bound(table: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Log-log no-recall/recall ratio against alpha, from :func:`lower_bound_table` output.

    Closed forms are lines (colour: cost scale; style: chain length), solver values markers;
    the exact Theorem 3.4 instance is drawn as black stars on the line ``ratio = alpha``."""
    fig, axes = new_figure()
    ax: Axes = axes[0, 0]
    gen = table[table["case"] == "generalised"]
    scales = sorted(gen["cost_scale"].unique())
    lengths = sorted(gen["n_stages"].unique())
    styles, markers = ["-", "--", ":", "-."], ["o", "s", "D", "v", "^"]
    for ci, cs in enumerate(scales):
        for ni, n in enumerate(lengths):
            d = gen[(gen["cost_scale"] == cs) & (gen["n_stages"] == n)].sort_values("alpha")
            color = f"C{ci}"
            ax.plot(d["alpha"], d["ratio_closed"], styles[ni % 4], color=color, lw=1.4, alpha=0.85)
            ax.plot(d["alpha"], d["ratio"], markers[ni % 5], color=color, ms=4.5, mfc="none", ls="none")
    thm = table[table["case"] == "theorem_3_4"].sort_values("alpha")
    if not thm.empty:
        thm_label = "Theorem 3.4 (n=2, cost 0, λ=1): solver"
        ax.plot(thm["alpha"], thm["ratio"], "*", color="k", ms=7, label=thm_label)
    lam = gen["lam"].iloc[0] if not gen.empty else float("nan")
    scale_labels = [f"cost scale {cs:g}" + (" (ratio = α, any n)" if cs == 0 else "") for cs in scales]
    handles: list[Artist] = [
        Line2D([], [], color=f"C{i}", lw=2, label=label) for i, label in enumerate(scale_labels)
    ]
    handles += [
        Line2D([], [], color="0.3", ls=styles[i % 4], marker=markers[i % 5], mfc="none", label=f"{n} stages")
        for i, n in enumerate(lengths)
    ]
    handles += [
        Line2D([], [], color="0.3", lw=1.4, label="closed form (line)"),
        Line2D([], [], color="0.3", marker="o", mfc="none", ls="none", label="DP solver (marker)"),
        *ax.get_legend_handles_labels()[0],
    ]
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("α (gamble parameter of the lower-bound chain, dimensionless)")
    ax.set_ylabel(RATIO_LABELS["ratio_no_recall"] + "  (ratio of objectives)")
    ax.set_title(
        f"Without recall no constant factor is possible: ratio grows ∝ α\n"
        f"(generalised lower-bound family at λ = {lam:g}; total cost = scale · α⁻³)",
        fontsize=10,
    )
    ax.grid(True, which="both", alpha=0.25)
    return save_figure(fig, path)


# ----------------------------------------------------------------- (b) ratio distributions


def _ecdf(values: FloatArray) -> tuple[FloatArray, FloatArray]:
    x = np.sort(np.asarray(values, dtype=float))
    return x, np.arange(1, x.size + 1) / x.size


def plot_ratio_distribution(table: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """ECDFs of each ``ratio_*`` column of :func:`ratio_table` output, one curve per family.

    Rows of panels: trade-off weights ``lam``; columns: the compared policy. Every panel shows a
    ratio >= 1: a policy's objective over the recall optimum, and for the prophet (a bound no
    real policy reaches) the inverse, the recall optimum over the prophet."""
    ratio_cols = [c for c in RATIO_LABELS if c in table.columns]
    lams = sorted(table["lam"].unique())
    families = list(dict.fromkeys(table["family"]))
    fig, axes = new_figure(
        len(lams), len(ratio_cols), figsize=(4.6 * len(ratio_cols), 3.4 * len(lams)), sharey=True
    )
    for r, lam in enumerate(lams):
        for c, col in enumerate(ratio_cols):
            ax = axes[r, c]
            sub = table[table["lam"] == lam]
            for f, fam in enumerate(families):
                vals = sub.loc[sub["family"] == fam, col].to_numpy()
                vals = 1.0 / vals if col == "ratio_prophet" else vals
                x, y = _ecdf(vals)
                ax.step(
                    x,
                    y,
                    where="post",
                    color=f"C{f}",
                    label=f"{fam}: {np.median(vals):.3f} / {vals.max():.3f}",
                )
            ax.axvline(1.0, color="k", lw=0.8, ls=":")
            ax.set_xlabel(f"{RATIO_LABELS[col]} (ratio of objectives)", fontsize=9)
            ax.set_title(f"{RATIO_LABELS[col]},  λ = {lam:g}", fontsize=10)
            ax.grid(True, which="both", alpha=0.25)
            ax.legend(
                fontsize=7,
                title="family: median / max",
                title_fontsize=7,
                loc="center right" if col == "ratio_prophet" else "lower right",
            )
        axes[r, 0].set_ylabel("fraction of chains with ratio ≤ x")
    n_chains = table.groupby(["family", "chain"]).ngroups
    fig.suptitle(
        f"How much recall saves on {n_chains} random chains "
        f"({len(families)} families; J = λ·loss + (1−λ)·cost, cost as a fraction of the full chain)",
        fontsize=11,
    )
    fig.tight_layout()
    return save_figure(fig, path)


# ----------------------------------------------------------------------------- (c) Pareto


def _hull_gap(
    hull: tuple[FloatArray, FloatArray], ref: tuple[FloatArray, FloatArray], n: int = 300
) -> tuple[FloatArray, FloatArray]:
    """``hull`` minus ``ref`` (both piecewise-linear lower hulls), on ``n`` costs where both
    are defined: shapes ``(m,)``, ``m <= n``."""
    lo, hi = max(hull[0][0], ref[0][0]), min(hull[0][-1], ref[0][-1])
    if not lo < hi:
        return np.empty(0), np.empty(0)
    cost = np.linspace(lo, hi, n)
    return cost, np.interp(cost, *hull) - np.interp(cost, *ref)


def plot_pareto(table: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Expected loss against expected cost per policy, from :func:`pareto_table` output.

    Left: each policy's operating points (markers) and lower convex hull (line: what
    randomising between its rules reaches). Right: each hull's excess loss over the recall
    hull at equal cost, in percentage points of error."""
    fig, axes = new_figure(1, 2, figsize=(13.0, 5.0), gridspec_kw={"width_ratios": [1.25, 1.0]})
    ax, gap_ax = axes[0, 0], axes[0, 1]
    policies = list(dict.fromkeys(table["policy"]))
    hulls = {}
    for z, policy in enumerate(reversed(policies)):  # the first policy (recall) drawn on top
        d = table[table["policy"] == policy]
        style = POLICY_STYLE.get(policy, {"label": policy, "color": "k", "marker": "."})
        cost, loss = d["expected_cost"].to_numpy(), d["expected_loss"].to_numpy()
        hulls[policy] = lower_hull(cost, loss)
        ls = "--" if policy == "prophet" else "-"
        ax.plot(cost, loss, str(style["marker"]), color=style["color"], ms=4, mfc="none", alpha=0.7, zorder=z)
        ax.plot(*hulls[policy], ls, color=style["color"], lw=1.8, label=str(style["label"]), zorder=z + 0.5)
    gap_ax.axhline(
        0.0,
        color=POLICY_STYLE["recall"]["color"],
        lw=1.6,
        label=f"{POLICY_STYLE['recall']['label']} (reference)",
    )
    if "recall" in hulls:
        for policy in (p for p in policies if p != "recall"):
            style = POLICY_STYLE.get(policy, {"label": policy, "color": "k"})
            cost, gap = _hull_gap(hulls[policy], hulls["recall"])
            ls = "--" if policy == "prophet" else "-"
            gap_ax.plot(cost, 100.0 * gap, ls, color=style["color"], lw=1.6, label=str(style["label"]))
    knobs = table[table["knob"] == "lam"]["knob_value"]
    lam_note = f"λ from {knobs.min():.3g} to {knobs.max():.3g}" if not knobs.empty else ""
    ax.set_xlabel(COST_LABEL)
    ax.set_ylabel(LOSS_LABEL)
    ax.set_title(
        f"Loss–cost trade-off on one random chain ({table['chain'].iloc[0]})\n"
        f"markers: operating points ({lam_note}; every threshold t); lines: lower convex hulls",
        fontsize=10,
    )
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles[::-1], labels[::-1], fontsize=8, title="policy (line = lower hull)", title_fontsize=8)
    gap_ax.set_xlabel(COST_LABEL)
    gap_ax.set_ylabel("excess expected loss over the recall hull\n(percentage points of error)")
    gap_ax.set_title(
        "Gap to the recall optimum at equal expected cost\n(> 0: worse than recall)", fontsize=10
    )
    gap_ax.legend(fontsize=8)
    for a in (ax, gap_ax):
        a.grid(True, alpha=0.25)
    fig.tight_layout()
    return save_figure(fig, path)


SyntheticPlot = Callable[[pd.DataFrame, Path], Path]
SYNTHETIC_FIGURES: dict[str, tuple[str, SyntheticPlot]] = {
    "lower_bound": ("lower_bound", plot_lower_bound),
    "ratio_distribution": ("ratios", plot_ratio_distribution),
    "pareto": ("pareto", plot_pareto),
}
"""The synthetic study's figures: figure kind (``fig_[<tag>_]<kind>.png``) -> (the kind of the
table it is drawn from, ``synthetic_<table kind>.csv``; the function that draws it)."""
