"""Curves, hulls, areas, savings and error bars for scored trace policies (README: traces).

Input everywhere is a tidy *points* table, one row per (policy, knob value, split):

=================== ======= ============================================================
``policy``          str     policy name (``static`` is the single-stage reference)
``knob``            float   the swept knob (NaN allowed; ``static``: its stage number)
``accuracy``        float   fraction of test samples answered correctly, in [0, 1]
``mean_cost``       float   mean cost per request, in the trace's cost unit
``normalized_cost`` float   ``mean_cost`` / the full chain's cost, in (0, 1]
``split``           int     index of the repeated random fit/test split
=================== ======= ============================================================

Every metric is computed on the **normalised** cost axis, per policy and per split, and only
then aggregated over splits. Conventions:

* **Hull.** The upper non-decreasing hull of a policy's (cost, accuracy) points on one split:
  the accuracy reachable at expected cost <= c by randomising between the policy's own points
  (concave upper envelope) and by never paying for accuracy that is not used (non-decreasing).
  Its vertices are input points, strictly increasing in cost *and* in accuracy, ending at the
  cheapest point of maximal accuracy. It is undefined (NaN) below its first vertex's cost and
  flat after its last vertex.
* **Area.** Mean hull accuracy over the normalised cost range ``[lo, hi]``; costs in that
  range below the hull's first vertex (unreachable by the policy) count as accuracy 0. In
  :func:`split_metrics` ``lo`` is the smallest normalised cost any policy reaches on that split
  (the first stage's share, as ``static`` stage 0 attains it) and ``hi`` = 1 (the full chain).
* **Cost to reach** a target accuracy: the smallest normalised cost at which the hull reaches
  it (linear between vertices), ``inf`` if the hull never does (a tolerance of
  :data:`ACCURACY_ATOL` absorbs float noise at the top). **Saving** = 1 - that cost (``-inf``
  when unreached). Targets are the reference accuracy minus ``delta`` percentage points.
* **Compute reduction** (Lebovitz et al.): ``c_s / cost_to_reach(hull, a_s)`` where (c_s, a_s)
  is the best single stage of the split (the ``static`` point of highest accuracy, the cheapest
  among ties). ``NaN`` when the hull never reaches ``a_s``; ``inf`` if it reaches it at cost 0.
* **Error bars.** Over splits: sample mean, sample standard deviation (ddof=1) and a two-sided
  95% Student-t interval ``mean ± t_{0.975, n-1} · std / sqrt(n)``. Splits on which a metric is
  not finite (target never reached) are excluded and counted in ``n_unreached``, so a mean with
  ``n_unreached > 0`` is conditional on reaching the target.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, cast

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from ttamer.errors import FieldError

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

POINT_COLUMNS = ("policy", "knob", "accuracy", "mean_cost", "normalized_cost", "split")
"""Columns of a points table."""

DEFAULT_DELTAS: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0)
"""Accuracy drops (percentage points) below the reference at which cost and saving are read."""

ACCURACY_ATOL = 1e-9
"""A target at most this far above a hull's top accuracy counts as reached at the top vertex."""

STATIC = "static"
"""Name of the single-stage policy used as the reference in :func:`summarise`."""

SUMMARY_COLUMNS = ("policy", "metric", "mean", "std", "ci95_low", "ci95_high", "n_splits", "n_unreached")


# --------------------------------------------------------------------------------------------
# Hull of one curve
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hull:
    """Vertices of an upper non-decreasing hull, sorted by cost.

    ``cost`` and ``accuracy``: (V,), V >= 1, both strictly increasing; cost in the unit of the
    input (normalised cost in this module's tables), accuracy a fraction. Unpacks as
    ``cost, accuracy = hull``."""

    cost: FloatArray
    accuracy: FloatArray

    def __iter__(self) -> Iterator[FloatArray]:
        return iter((self.cost, self.accuracy))


def _as_curve(cost: ArrayLike, acc: ArrayLike) -> tuple[FloatArray, FloatArray]:
    c = np.asarray(cost, dtype=np.float64)
    a = np.asarray(acc, dtype=np.float64)
    if c.ndim != 1 or c.shape != a.shape:
        raise FieldError("cost", f"cost and accuracy must be 1-D of one length, got {c.shape}, {a.shape}")
    return c, a


def upper_hull_indices(cost: ArrayLike, acc: ArrayLike) -> IntArray:
    """Indices into ``cost``/``acc`` (both (P,)) of the upper non-decreasing hull's vertices.

    Points with a non-finite cost or accuracy are ignored. Sorted by cost; both coordinates
    strictly increase along the result. Raises :class:`FieldError` if no point is finite."""
    c, a = _as_curve(cost, acc)
    idx = np.flatnonzero(np.isfinite(c) & np.isfinite(a))
    if idx.size == 0:
        raise FieldError("accuracy", "no point with finite cost and accuracy")
    idx = idx[np.lexsort((-a[idx], c[idx]))]  # cost ascending, accuracy descending among ties
    idx = idx[: int(np.argmax(a[idx])) + 1]  # up to the cheapest point of maximal accuracy
    idx = idx[np.r_[True, np.diff(c[idx]) > 0]]  # best point of each cost
    return np.asarray(_monotone_chain(c, a, idx), dtype=np.int64)


def _monotone_chain(c: FloatArray, a: FloatArray, idx: IntArray) -> list[int]:
    """Andrew's monotone chain, upper half, over ``idx`` (sorted by strictly increasing cost);
    collinear middle points are dropped."""
    hull: list[int] = []
    for k in idx.tolist():
        while len(hull) >= 2:
            o, m = hull[-2], hull[-1]
            turn = (c[m] - c[o]) * (a[k] - a[o]) - (a[m] - a[o]) * (c[k] - c[o])
            if turn < 0:  # strict right turn: m stays
                break
            hull.pop()
        hull.append(k)
    return hull


def upper_hull(cost: ArrayLike, acc: ArrayLike) -> Hull:
    """The upper non-decreasing hull of the points ``(cost[i], acc[i])`` (both (P,)).

    This is the accuracy reachable at expected cost <= c by randomising between points; its
    vertices are input points. See the module docstring for the conventions."""
    c, a = _as_curve(cost, acc)
    idx = upper_hull_indices(c, a)
    return Hull(cost=c[idx], accuracy=a[idx])


def lower_hull(cost: ArrayLike, loss: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Vertices ``(cost, loss)`` of the lower-left convex frontier of the points
    ``(cost[i], loss[i])`` (both (P,); loss e.g. an error probability): the upper
    non-decreasing hull of ``(cost, -loss)``, so from the cheapest point (lowest loss among
    the cheapest) to the cheapest point of least loss, loss strictly decreasing, slope
    increasing. Negating the loss is exact, so the vertices are the input points unchanged."""
    c, ell = _as_curve(cost, loss)
    idx = upper_hull_indices(c, -ell)
    return c[idx], ell[idx]


def hull_accuracy_at(hull: Hull, cost_grid: ArrayLike) -> FloatArray:
    """Hull accuracy at each cost of ``cost_grid`` (any shape, same unit as the hull).

    Linear between vertices, flat after the last vertex, NaN below the first vertex (and at
    NaN costs)."""
    grid = np.asarray(cost_grid, dtype=np.float64)
    out = np.interp(grid, hull.cost, hull.accuracy)
    return np.where(grid >= hull.cost[0], out, np.nan)


def area_under_hull(hull: Hull, lo: float, hi: float) -> float:
    """Mean hull accuracy over costs in ``[lo, hi]`` (a fraction): the exact integral of the
    piecewise-linear hull divided by ``hi - lo``.

    The hull is extended flat after its last vertex; costs below its first vertex count as
    accuracy 0 (the policy cannot run that cheaply). Requires ``lo < hi``."""
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise FieldError("lo", f"need finite lo < hi, got lo={lo}, hi={hi}")
    start = max(lo, float(hull.cost[0]))
    if start >= hi:
        return 0.0
    inner = hull.cost[(hull.cost > start) & (hull.cost < hi)]
    x = np.concatenate([[start], inner, [hi]])
    y = np.interp(x, hull.cost, hull.accuracy)
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(x)) / (hi - lo))


def cost_to_reach(hull: Hull, target_acc: ArrayLike, atol: float = ACCURACY_ATOL) -> FloatArray:
    """Smallest cost at which the hull's accuracy is >= each target (targets: any shape, fractions).

    Linear interpolation between vertices; the first vertex's cost for targets at or below its
    accuracy; ``inf`` for targets above the top accuracy by more than ``atol``; NaN for NaN."""
    t = np.asarray(target_acc, dtype=np.float64)
    top = hull.accuracy[-1]
    t = np.where((t > top) & (t <= top + atol), top, t)
    k = np.searchsorted(hull.accuracy, t, side="left")  # first vertex with accuracy >= t
    k_hi = np.minimum(k, hull.accuracy.size - 1)
    k_lo = np.maximum(k_hi - 1, 0)
    da = hull.accuracy[k_hi] - hull.accuracy[k_lo]
    frac = np.divide(t - hull.accuracy[k_lo], da, out=np.ones_like(t), where=da > 0)
    out = hull.cost[k_lo] + frac * (hull.cost[k_hi] - hull.cost[k_lo])
    out = np.where(k == 0, hull.cost[0], out)
    out = np.where(k >= hull.accuracy.size, np.inf, out)
    return np.where(np.isnan(t), np.nan, out)


# --------------------------------------------------------------------------------------------
# Points tables
# --------------------------------------------------------------------------------------------


def check_points(points: pd.DataFrame) -> None:
    """Raise :class:`FieldError` naming the column if ``points`` is not a valid points table."""
    for col in POINT_COLUMNS:
        if col not in points.columns:
            raise FieldError(col, "missing column in the points table")
    if points.empty:
        raise FieldError("policy", "the points table is empty")
    acc = points["accuracy"].to_numpy(dtype=np.float64)
    if np.any((acc < 0) | (acc > 1)):
        raise FieldError("accuracy", "accuracy must be a fraction in [0, 1]")
    cost = points["normalized_cost"].to_numpy(dtype=np.float64)
    if np.any(cost < 0):
        raise FieldError("normalized_cost", "normalised costs must be >= 0")


def _groups(points: pd.DataFrame) -> Iterator[tuple[str, int, pd.DataFrame]]:
    """(policy, split, rows) for each (policy, split) pair, in order of first appearance."""
    for (policy, split), rows in points.groupby(["policy", "split"], sort=False):
        yield str(policy), int(cast(int, split)), rows


def _curve_hull(rows: pd.DataFrame) -> Hull:
    return upper_hull(rows["normalized_cost"], rows["accuracy"])


def hull_table(points: pd.DataFrame) -> pd.DataFrame:
    """The hull vertices of every policy and split, for plotting.

    Columns: ``policy, split, vertex`` (0-based, by increasing cost), then the vertex rows'
    ``knob, accuracy, mean_cost, normalized_cost`` (the hull is taken on normalised cost)."""
    check_points(points)
    parts = []
    for _, _, rows in _groups(points):
        idx = upper_hull_indices(rows["normalized_cost"], rows["accuracy"])
        part = rows.iloc[idx][list(POINT_COLUMNS)].reset_index(drop=True)
        part.insert(2, "vertex", np.arange(idx.size))
        parts.append(part)
    cols = ["policy", "split", "vertex", "knob", "accuracy", "mean_cost", "normalized_cost"]
    return pd.concat(parts, ignore_index=True)[cols]


def mean_curve(points: pd.DataFrame, grid: ArrayLike) -> pd.DataFrame:
    """Per policy, hull accuracy on a common normalised-cost ``grid`` ((G,)), over splits.

    Columns: ``policy, normalized_cost, mean, std, n_splits``. At each grid cost the statistics
    use the splits whose hull is defined there (cost >= its first vertex); ``n_splits`` counts
    them. ``std`` is the sample standard deviation (ddof=1; NaN with fewer than 2 splits)."""
    check_points(points)
    g = np.asarray(grid, dtype=np.float64).ravel()
    curves: dict[str, list[FloatArray]] = {}
    for policy, _, rows in _groups(points):
        curves.setdefault(policy, []).append(hull_accuracy_at(_curve_hull(rows), g))
    parts = []
    for policy, stack in curves.items():
        mean, std, n = _column_stats(np.vstack(stack))
        parts.append(
            pd.DataFrame({"policy": policy, "normalized_cost": g, "mean": mean, "std": std, "n_splits": n})
        )
    return pd.concat(parts, ignore_index=True)


def _column_stats(values: FloatArray) -> tuple[FloatArray, FloatArray, IntArray]:
    """Mean, sample std (ddof=1) and count of the finite entries of each column of (S, G)."""
    ok = np.isfinite(values)
    n = ok.sum(axis=0)
    v = np.where(ok, values, 0.0)
    mean = np.divide(v.sum(axis=0), n, out=np.full(n.shape, np.nan), where=n > 0)
    sq = np.where(ok, (values - mean) ** 2, 0.0).sum(axis=0)
    std = np.sqrt(np.divide(sq, n - 1, out=np.full(n.shape, np.nan), where=n > 1))
    return mean, std, n.astype(np.int64)


def _reference_by_split(
    reference: float | Mapping[int, float] | pd.Series, splits: Sequence[int]
) -> dict[int, float]:
    if isinstance(reference, (int, float)):
        return dict.fromkeys(splits, float(reference))
    ref = dict(reference.items())
    missing = [s for s in splits if s not in ref]
    if missing:
        raise FieldError("split", f"no reference accuracy for splits {missing}")
    return {s: float(ref[s]) for s in splits}


def delta_label(delta: float) -> str:
    """``0.5 -> "0.5"``, ``1.0 -> "1"``: the suffix of ``cost_at_delta_*`` metric names."""
    return f"{delta:g}"


def savings(
    points: pd.DataFrame,
    reference_acc: float | Mapping[int, float] | pd.Series,
    deltas: Sequence[float] = DEFAULT_DELTAS,
) -> pd.DataFrame:
    """Cost to reach ``reference_acc - delta/100`` and the saving ``1 - cost``, per policy and split.

    ``reference_acc`` is a fraction, one for all splits or per split (a mapping or Series indexed
    by split); ``deltas`` are in accuracy percentage points. Columns: ``policy, split, delta,
    target_accuracy, cost`` (normalised; ``inf`` if never reached) ``, saving`` (``-inf`` then)."""
    check_points(points)
    d = np.asarray(deltas, dtype=np.float64)
    ref = _reference_by_split(reference_acc, sorted(int(s) for s in points["split"].unique()))
    parts = []
    for policy, split, rows in _groups(points):
        target = ref[split] - d / 100.0
        cost = cost_to_reach(_curve_hull(rows), target)
        parts.append(
            pd.DataFrame(
                {
                    "policy": policy,
                    "split": split,
                    "delta": d,
                    "target_accuracy": target,
                    "cost": cost,
                    "saving": 1.0 - cost,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def best_single_stage(single_stage_points: pd.DataFrame) -> pd.DataFrame:
    """Per split, the single-stage point of highest accuracy (cheapest among ties).

    Returns a frame indexed by ``split`` with columns ``accuracy, normalized_cost``."""
    check_points(single_stage_points)
    ranked = single_stage_points.dropna(subset=["accuracy", "normalized_cost"]).sort_values(
        ["split", "accuracy", "normalized_cost"], ascending=[True, False, True]
    )
    return ranked.groupby("split").head(1).set_index("split")[["accuracy", "normalized_cost"]]


def compute_reduction(points: pd.DataFrame, single_stage_points: pd.DataFrame) -> pd.DataFrame:
    """The Lebovitz metric per policy and split: ``c_s / cost_to_reach(hull, a_s)``.

    (c_s, a_s): normalised cost and accuracy of the split's best single stage
    (:func:`best_single_stage`). Columns: ``policy, split, reference_accuracy, reference_cost,
    cost, compute_reduction``; ``cost`` is ``inf`` and the reduction NaN when the policy never
    reaches ``a_s``; the reduction is ``inf`` if it reaches it at zero cost (NaN if c_s is 0 too)."""
    check_points(points)
    best = best_single_stage(single_stage_points)
    rows_out = []
    for policy, split, rows in _groups(points):
        if split not in best.index:
            raise FieldError("split", f"no single-stage point for split {split}")
        ref = best.loc[split, ["accuracy", "normalized_cost"]].to_numpy(dtype=np.float64)
        a_s, c_s = float(ref[0]), float(ref[1])
        cost = float(cost_to_reach(_curve_hull(rows), a_s))
        rows_out.append((policy, split, a_s, c_s, cost, _ratio(c_s, cost)))
    cols = ["policy", "split", "reference_accuracy", "reference_cost", "cost", "compute_reduction"]
    return pd.DataFrame(rows_out, columns=cols)


def _ratio(num: float, den: float) -> float:
    if not np.isfinite(den) or (num == 0 and den == 0):
        return math.nan
    return math.inf if den == 0 else num / den


# --------------------------------------------------------------------------------------------
# Per-split metrics and their summary over splits
# --------------------------------------------------------------------------------------------


def reference_accuracy(
    points: pd.DataFrame, reference: Literal["last_stage", "best_stage"] = "last_stage", static: str = STATIC
) -> pd.Series:
    """Per split (index), the reference accuracy (a fraction) from the ``static`` policy's points.

    ``last_stage``: the point of largest knob (the full chain); ``best_stage``: the most
    accurate single stage."""
    rows = points[points["policy"] == static]
    if rows.empty:
        raise FieldError("policy", f"the reference needs the {static!r} policy's points")
    if reference == "best_stage":
        return best_single_stage(rows)["accuracy"]
    if reference != "last_stage":
        raise FieldError("reference", f"unknown reference {reference!r}")
    rows = rows.dropna(subset=["knob"])
    if rows.empty:
        raise FieldError("knob", f"the {static!r} policy's knobs (stage indices) are all NaN")
    last = rows.sort_values(["split", "knob"]).groupby("split").tail(1).set_index("split")
    return last["accuracy"]


def split_metrics(
    points: pd.DataFrame,
    reference: Literal["last_stage", "best_stage"] | float = "last_stage",
    deltas: Sequence[float] = DEFAULT_DELTAS,
    hi: float = 1.0,
    static: str = STATIC,
) -> pd.DataFrame:
    """Every metric of every policy on every split, tidy: ``policy, split, metric, value``.

    Metrics: ``area`` (mean hull accuracy over normalised cost in [lo, ``hi``], lo = the smallest
    normalised cost of any point of the split), ``cost_at_delta_<d>`` and ``saving_at_delta_<d>``
    for each delta (see :func:`savings`, against :func:`reference_accuracy` or a fixed float),
    and ``compute_reduction`` (against the ``static`` policy's best stage)."""
    check_points(points)
    ref = reference if isinstance(reference, (int, float)) else reference_accuracy(points, reference, static)
    sav = savings(points, ref, deltas)
    sav["label"] = [delta_label(d) for d in sav["delta"]]
    parts = [
        _metric_frame(sav, "cost", "cost_at_delta_" + sav["label"]),
        _metric_frame(sav, "saving", "saving_at_delta_" + sav["label"]),
        _area_frame(points, hi),
    ]
    statics = points[points["policy"] == static]
    if not statics.empty:
        red = compute_reduction(points, statics)
        parts.append(_metric_frame(red, "compute_reduction", pd.Series("compute_reduction", index=red.index)))
    return pd.concat(parts, ignore_index=True)


def _metric_frame(table: pd.DataFrame, value: str, metric: pd.Series) -> pd.DataFrame:
    return pd.DataFrame(
        {"policy": table["policy"], "split": table["split"], "metric": metric, "value": table[value]}
    )


def _area_frame(points: pd.DataFrame, hi: float) -> pd.DataFrame:
    lo = points.groupby("split")["normalized_cost"].min()
    rows = [
        (policy, split, "area", area_under_hull(_curve_hull(g), float(lo[split]), hi))
        for policy, split, g in _groups(points)
    ]
    return pd.DataFrame(rows, columns=["policy", "split", "metric", "value"])


def summarise(
    points: pd.DataFrame,
    reference: Literal["last_stage", "best_stage"] | float = "last_stage",
    deltas: Sequence[float] = DEFAULT_DELTAS,
    hi: float = 1.0,
    static: str = STATIC,
) -> pd.DataFrame:
    """One row per policy x metric of :func:`split_metrics`, aggregated over splits.

    Columns: ``policy, metric, mean, std`` (ddof=1) ``, ci95_low, ci95_high`` (two-sided 95%
    Student-t interval with n-1 degrees of freedom; NaN for n < 2) ``, n_splits`` (splits with a
    finite value, the ones used) ``, n_unreached`` (splits where the value is not finite).
    With a ``predicted_accuracy`` column, policies with a fitted model also get the metric
    ``calibration_gap`` (:func:`ttamer.evaluation.calibration.gap_at_largest_knob`)."""
    from ttamer.evaluation.calibration import gap_at_largest_knob

    per_split = split_metrics(points, reference, deltas, hi, static)
    per_split = pd.concat([per_split, gap_at_largest_knob(points)], ignore_index=True)
    rows = []
    for (policy, metric), g in per_split.groupby(["policy", "metric"], sort=False):
        rows.append((policy, metric, *summary_stats(g["value"].to_numpy(dtype=np.float64))))
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def summary_stats(values: ArrayLike) -> tuple[float, float, float, float, int, int]:
    """(mean, std, ci95_low, ci95_high, n_finite, n_not_finite) of the finite entries of ``values``.

    ``std`` is the sample standard deviation (ddof=1); the interval is the Student-t one."""
    v = np.asarray(values, dtype=np.float64).ravel()
    ok = v[np.isfinite(v)]
    n, missing = int(ok.size), int(v.size - ok.size)
    if n == 0:
        return math.nan, math.nan, math.nan, math.nan, 0, missing
    mean = float(ok.mean())
    if n == 1:
        return mean, math.nan, math.nan, math.nan, 1, missing
    std = float(ok.std(ddof=1))
    half = student_t_quantile(0.95, n - 1) * std / math.sqrt(n)
    return mean, std, mean - half, mean + half, n, missing


def _t_central_probability(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with integer ``df`` >= 1 (Abramowitz & Stegun 26.7.3-4)."""
    theta = math.atan(t / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    if df % 2 == 0:  # sin(theta) * (1 + 1/2 c^2 + 1·3/(2·4) c^4 + ... up to c^(df-2))
        term, total = 1.0, 1.0
        for k in range(1, df // 2):
            term *= c2 * (2 * k - 1) / (2 * k)
            total += term
        return math.sin(theta) * total
    # odd: 2/pi * (theta + sin(theta) (cos + 2/3 cos^3 + 2·4/(3·5) cos^5 + ... up to cos^(df-2)))
    if df == 1:
        return 2.0 * theta / math.pi
    term = math.cos(theta)
    total = term
    for k in range(1, (df - 1) // 2):
        term *= c2 * (2 * k) / (2 * k + 1)
        total += term
    return 2.0 / math.pi * (theta + math.sin(theta) * total)


def student_t_quantile(coverage: float, df: int) -> float:
    """The t such that P(|T| <= t) = ``coverage`` for Student's t with ``df`` degrees of freedom
    (e.g. 12.706 for 0.95 and df=1); bisection on the exact CDF, to ~1e-12."""
    if not 0.0 < coverage < 1.0 or df < 1:
        raise FieldError("coverage", f"need 0 < coverage < 1 and df >= 1, got {coverage}, {df}")
    lo, hi = 0.0, 1.0
    while _t_central_probability(hi, df) < coverage:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _t_central_probability(mid, df) < coverage:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * hi:
            break
    return 0.5 * (lo + hi)
