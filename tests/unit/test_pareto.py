"""Hull, area, cost-to-reach, savings, compute reduction and summaries of ``ttamer.evaluation.pareto``,
each checked against an independent computation (brute force, Riemann sums, hand-computed
values, plain numpy)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

from ttamer.errors import FieldError
from ttamer.evaluation.pareto import (
    Hull,
    area_under_hull,
    compute_reduction,
    cost_to_reach,
    hull_accuracy_at,
    hull_table,
    lower_hull,
    mean_curve,
    savings,
    split_metrics,
    student_t_quantile,
    summarise,
    summary_stats,
    upper_hull,
    upper_hull_indices,
)

# --------------------------------------------------------------------------------------------
# Helpers: an independent brute-force "accuracy reachable at cost <= c"
# --------------------------------------------------------------------------------------------


def brute_reachable(cost: np.ndarray, acc: np.ndarray, c: np.ndarray) -> np.ndarray:
    """max over pairs (i, j) and weights w with w c_i + (1-w) c_j <= c of w a_i + (1-w) a_j.

    A 2-D linear programme is optimised by mixing at most two points, so pairs suffice. For a
    pair with c_i <= c_j the feasible w are [w*, 1] (all of [0, 1] if c_j <= c), and a linear
    function peaks at an end. NaN where no point costs <= c."""
    ci, cj = cost[:, None, None], cost[None, :, None]
    ai, aj = acc[:, None, None], acc[None, :, None]
    cc = c[None, None, :]
    lo_c, hi_c = np.minimum(ci, cj), np.maximum(ci, cj)
    lo_a = np.where(ci <= cj, ai, aj)
    hi_a = np.where(ci <= cj, aj, ai)
    span = hi_c - lo_c
    w = np.clip(np.divide(hi_c - cc, span, out=np.zeros(np.broadcast(span, cc).shape), where=span > 0), 0, 1)
    value = np.maximum(lo_a, w * lo_a + (1 - w) * hi_a)
    value = np.where(lo_c <= cc, value, -np.inf)
    best = value.max(axis=(0, 1))
    return np.where(np.isfinite(best), best, np.nan)


def random_points(rng: np.random.Generator, n: int, discrete: bool) -> tuple[np.ndarray, np.ndarray]:
    cost = rng.random(n)
    acc = rng.random(n)
    if discrete:  # many ties in cost and in accuracy, and duplicates
        cost = np.round(cost * 5) / 5
        acc = np.round(acc * 4) / 4
    return cost, acc


# --------------------------------------------------------------------------------------------
# Hull
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(60))
def test_hull_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    cost, acc = random_points(rng, int(rng.integers(1, 25)), discrete=seed % 3 == 0)
    hull = upper_hull(cost, acc)
    hc, ha = hull

    # every vertex is an input point
    pts = set(zip(cost.tolist(), acc.tolist(), strict=True))
    assert all((c, a) in pts for c, a in zip(hc.tolist(), ha.tolist(), strict=True))
    # strictly increasing in cost and accuracy; concave (slopes strictly decreasing)
    assert np.all(np.diff(hc) > 0) and np.all(np.diff(ha) > 0)
    slopes = np.diff(ha) / np.diff(hc)
    assert np.all(np.diff(slopes) < 0)
    # every input point lies on or below the hull
    assert np.all(acc <= hull_accuracy_at(hull, cost) + 1e-12)
    # the hull is exactly the brute-force reachable accuracy, everywhere
    grid = np.concatenate([cost, rng.random(200) * 1.2 - 0.1])
    np.testing.assert_allclose(hull_accuracy_at(hull, grid), brute_reachable(cost, acc, grid), atol=1e-12)


@pytest.mark.parametrize("seed", range(30))
def test_hull_vertex_iff_not_dominated_by_mixtures_of_others(seed: int) -> None:
    rng = np.random.default_rng(1000 + seed)
    cost, acc = random_points(rng, int(rng.integers(2, 20)), discrete=False)
    vertices = set(upper_hull_indices(cost, acc).tolist())
    for p in range(cost.size):
        others = np.delete(np.arange(cost.size), p)
        reach = brute_reachable(cost[others], acc[others], cost[p : p + 1])[0]
        dominated = not np.isnan(reach) and reach >= acc[p]
        assert (p in vertices) == (not dominated), p


@pytest.mark.parametrize("seed", range(30))
def test_lower_hull_is_least_reachable_loss(seed: int) -> None:
    """The loss frontier (synthetic figures): least loss reachable at cost <= c by mixing, and
    its vertices are the input points bit for bit."""
    rng = np.random.default_rng(2000 + seed)
    cost, loss = random_points(rng, int(rng.integers(1, 25)), discrete=seed % 3 == 0)
    hc, hl = lower_hull(cost, loss)
    pts = set(zip(cost.tolist(), loss.tolist(), strict=True))
    assert all((c, ell) in pts for c, ell in zip(hc.tolist(), hl.tolist(), strict=True))
    assert np.all(np.diff(hc) > 0) and np.all(np.diff(hl) < 0)
    assert np.all(np.diff(np.diff(hl) / np.diff(hc)) > 0)  # convex: slopes strictly increasing
    grid = np.concatenate([cost, rng.random(200) * 1.2 - 0.1])
    least = -brute_reachable(cost, -loss, grid)  # least mixed loss at cost <= c (NaN below all)
    frontier = np.where(grid >= hc[0], np.interp(grid, hc, hl), np.nan)
    np.testing.assert_allclose(frontier, least, atol=1e-12)


def test_hull_hand_example() -> None:
    cost = [0.2, 0.4, 0.5, 0.6, 0.8, 1.0, 0.3]
    acc = [0.5, 0.7, 0.7, 0.85, 0.84, 0.85, 0.55]
    # (0.3, 0.55) is under the chord (0.2,0.5)-(0.4,0.7); (0.5,0.7) under (0.4,0.7)-(0.6,0.85);
    # (0.8, 0.84) and (1.0, 0.85) are beyond the cheapest best point (0.6, 0.85).
    np.testing.assert_array_equal(upper_hull_indices(cost, acc), [0, 1, 3])
    hc, ha = upper_hull(cost, acc)
    np.testing.assert_allclose(hc, [0.2, 0.4, 0.6])
    np.testing.assert_allclose(ha, [0.5, 0.7, 0.85])
    got = hull_accuracy_at(Hull(hc, ha), [0.1, 0.2, 0.3, 0.5, 0.6, 0.9])
    np.testing.assert_allclose(got, [np.nan, 0.5, 0.6, 0.775, 0.85, 0.85])


def test_hull_drops_collinear_points() -> None:
    hc, ha = upper_hull([0.0, 0.5, 1.0], [0.0, 0.5, 1.0])
    np.testing.assert_allclose(hc, [0.0, 1.0])
    np.testing.assert_allclose(ha, [0.0, 1.0])


def test_hull_single_point_and_equal_costs() -> None:
    hull = upper_hull([0.3], [0.7])
    np.testing.assert_allclose(hull_accuracy_at(hull, [0.2, 0.3, 5.0]), [np.nan, 0.7, 0.7])
    hc, ha = upper_hull([0.4, 0.4, 0.4], [0.6, 0.9, 0.1])
    assert hc.tolist() == [0.4] and ha.tolist() == [0.9]


def test_hull_ignores_nan_and_rejects_all_nan() -> None:
    hc, ha = upper_hull([0.2, np.nan, 0.5, 0.6], [0.5, 0.99, np.nan, 0.8])
    assert hc.tolist() == [0.2, 0.6] and ha.tolist() == [0.5, 0.8]
    with pytest.raises(FieldError) as err:
        upper_hull([np.nan], [0.5])
    assert err.value.field == "accuracy"
    with pytest.raises(FieldError):
        upper_hull([0.1, 0.2], [0.5])


# --------------------------------------------------------------------------------------------
# Area
# --------------------------------------------------------------------------------------------


def riemann_area(hull: Hull, lo: float, hi: float, n: int = 400_000) -> float:
    x = lo + (np.arange(n) + 0.5) * (hi - lo) / n
    y = np.nan_to_num(hull_accuracy_at(hull, x), nan=0.0)
    return float(y.mean())


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize(("lo", "hi"), [(0.0, 1.0), (0.1, 0.7), (0.45, 1.3), (-0.2, 0.05)])
def test_area_matches_riemann_sum(seed: int, lo: float, hi: float) -> None:
    rng = np.random.default_rng(2000 + seed)
    cost, acc = random_points(rng, int(rng.integers(1, 15)), discrete=False)
    hull = upper_hull(cost, acc)
    assert area_under_hull(hull, lo, hi) == pytest.approx(riemann_area(hull, lo, hi), abs=2e-5)


def test_area_hand_values() -> None:
    hull = Hull(np.array([0.2, 0.6]), np.array([0.5, 0.9]))
    # [0.2, 0.6]: trapezoid 0.4 * 0.7 = 0.28; [0.6, 1.0]: flat 0.4 * 0.9 = 0.36; total / 0.8
    assert area_under_hull(hull, 0.2, 1.0) == pytest.approx(0.64 / 0.8)
    # [0, 0.2] counts as 0 accuracy
    assert area_under_hull(hull, 0.0, 1.0) == pytest.approx(0.64)
    assert area_under_hull(hull, 0.0, 0.1) == 0.0
    with pytest.raises(FieldError):
        area_under_hull(hull, 0.5, 0.5)


# --------------------------------------------------------------------------------------------
# Cost to reach
# --------------------------------------------------------------------------------------------


def test_cost_to_reach_hand_values() -> None:
    hull = Hull(np.array([0.2, 0.5, 1.0]), np.array([0.5, 0.8, 0.9]))
    targets = np.array([0.3, 0.5, 0.65, 0.8, 0.85, 0.9, 0.9 + 1e-12, 0.95, np.nan])
    want = np.array([0.2, 0.2, 0.35, 0.5, 0.75, 1.0, 1.0, np.inf, np.nan])
    np.testing.assert_allclose(cost_to_reach(hull, targets), want)
    assert float(cost_to_reach(hull, 0.65)) == pytest.approx(0.35)
    assert cost_to_reach(hull, [[0.95, 0.3]]).shape == (1, 2)


def test_cost_to_reach_single_vertex() -> None:
    hull = upper_hull([0.4], [0.7])
    np.testing.assert_allclose(cost_to_reach(hull, [0.1, 0.7, 0.71]), [0.4, 0.4, np.inf])


@pytest.mark.parametrize("seed", range(20))
def test_cost_to_reach_inverts_hull(seed: int) -> None:
    rng = np.random.default_rng(3000 + seed)
    cost, acc = random_points(rng, 12, discrete=False)
    hull = upper_hull(cost, acc)
    targets = rng.uniform(hull.accuracy[0], hull.accuracy[-1], 50)
    c = cost_to_reach(hull, targets)
    np.testing.assert_allclose(hull_accuracy_at(hull, c), targets, atol=1e-12)
    # and nothing cheaper reaches it (brute force just below)
    below = brute_reachable(cost, acc, c - 1e-7)
    assert np.all(np.nan_to_num(below, nan=-1.0) < targets)


# --------------------------------------------------------------------------------------------
# Points tables: a tiny hand-made table
# --------------------------------------------------------------------------------------------


def tiny_points() -> pd.DataFrame:
    rows = [
        # policy, knob, accuracy, normalized_cost, split
        ("static", 0, 0.60, 0.2, 0),
        ("static", 1, 0.80, 0.5, 0),
        ("static", 2, 0.85, 1.0, 0),
        ("cascade", 0.9, 0.60, 0.2, 0),
        ("cascade", 0.8, 0.80, 0.3, 0),
        ("cascade", 0.7, 0.86, 0.6, 0),
        ("weak", np.nan, 0.80, 0.4, 0),
        ("static", 0, 0.50, 0.2, 1),
        ("static", 1, 0.90, 0.5, 1),  # best single stage of split 1 is not the last one
        ("static", 2, 0.88, 1.0, 1),
        ("cascade", 0.9, 0.70, 0.25, 1),
        ("cascade", 0.8, 0.90, 0.45, 1),
        ("weak", np.nan, 0.70, 0.3, 1),
    ]
    df = pd.DataFrame(rows, columns=["policy", "knob", "accuracy", "normalized_cost", "split"])
    df["mean_cost"] = df["normalized_cost"] * 40.0  # e.g. ms
    return df


def test_savings_hand_values() -> None:
    pts = tiny_points()
    ref = {0: 0.85, 1: 0.88}
    s = savings(pts, ref, deltas=(0, 1, 2)).set_index(["policy", "split", "delta"])
    # cascade, split 0: hull (0.2,.6) (0.3,.8) (0.6,.86); 0.85 -> 0.3 + 0.05/0.06*0.3 = 0.55
    assert s.loc[("cascade", 0, 0.0), "cost"] == pytest.approx(0.55)
    assert s.loc[("cascade", 0, 1.0), "cost"] == pytest.approx(0.50)
    assert s.loc[("cascade", 0, 2.0), "saving"] == pytest.approx(0.55)
    # static, split 0: hull (0.2,.6) (0.5,.8) (1,.85); 0.83 -> 0.5 + 0.03/0.05*0.5 = 0.8
    assert s.loc[("static", 0, 0.0), "cost"] == pytest.approx(1.0)
    assert s.loc[("static", 0, 0.0), "saving"] == pytest.approx(0.0)
    assert s.loc[("static", 0, 2.0), "cost"] == pytest.approx(0.8)
    # split 1: static hull (0.2,.5) (0.5,.9); 0.88 -> 0.2 + 0.38/0.4*0.3 = 0.485
    assert s.loc[("static", 1, 0.0), "cost"] == pytest.approx(0.485)
    # cascade split 1: hull (0.25,.7) (0.45,.9); 0.86 -> 0.25 + 0.16/0.2*0.2 = 0.41
    assert s.loc[("cascade", 1, 2.0), "target_accuracy"] == pytest.approx(0.86)
    assert s.loc[("cascade", 1, 2.0), "cost"] == pytest.approx(0.41)
    # weak never reaches 0.85 or 0.83
    assert s.loc[("weak", 0, 2.0), "cost"] == np.inf
    assert s.loc[("weak", 0, 2.0), "saving"] == -np.inf


def test_savings_scalar_reference_and_missing_split() -> None:
    pts = tiny_points()
    s = savings(pts, 0.8, deltas=(0,))
    assert s.set_index(["policy", "split"]).loc[("weak", 0), "cost"] == pytest.approx(0.4)
    with pytest.raises(FieldError) as err:
        savings(pts, {0: 0.85})
    assert err.value.field == "split"


def test_compute_reduction_hand_values() -> None:
    pts = tiny_points()
    red = compute_reduction(pts, pts[pts["policy"] == "static"]).set_index(["policy", "split"])
    # split 0: best single stage (1.0, 0.85); cascade reaches 0.85 at 0.55
    assert red.loc[("cascade", 0), "compute_reduction"] == pytest.approx(1.0 / 0.55)
    assert red.loc[("static", 0), "compute_reduction"] == pytest.approx(1.0)
    # split 1: best single stage is stage 1 (0.5, 0.9); cascade reaches 0.9 at 0.45
    assert red.loc[("cascade", 1), "reference_cost"] == pytest.approx(0.5)
    assert red.loc[("cascade", 1), "compute_reduction"] == pytest.approx(0.5 / 0.45)
    assert red.loc[("static", 1), "compute_reduction"] == pytest.approx(1.0)
    # weak never reaches: cost inf, reduction NaN
    assert red.loc[("weak", 0), "cost"] == np.inf
    assert np.isnan(red.loc[("weak", 0), "compute_reduction"])


def test_compute_reduction_prefers_cheapest_of_tied_best_stages() -> None:
    pts = tiny_points()
    pts = pd.concat([pts, pts.iloc[[1]].assign(knob=5, normalized_cost=0.9, mean_cost=36.0, accuracy=0.85)])
    red = compute_reduction(pts, pts[pts["policy"] == "static"]).set_index(["policy", "split"])
    assert red.loc[("cascade", 0), "reference_cost"] == pytest.approx(0.9)


def test_split_metrics_hand_values() -> None:
    pts = tiny_points()
    m = split_metrics(pts, deltas=(0, 2)).set_index(["policy", "split", "metric"])["value"]
    # reference: the static last stage (knob 2): 0.85 on split 0, 0.88 on split 1
    assert m[("cascade", 0, "cost_at_delta_0")] == pytest.approx(0.55)
    assert m[("cascade", 1, "saving_at_delta_2")] == pytest.approx(1 - 0.41)
    # area, split 0, lo = 0.2: cascade over [0.2, 1]:
    # 0.1*(0.6+0.8)/2 + 0.3*(0.8+0.86)/2 + 0.4*0.86 = 0.07 + 0.249 + 0.344 = 0.663
    assert m[("cascade", 0, "area")] == pytest.approx(0.663 / 0.8)
    # weak on split 0 is a single point at 0.4: 0 on [0.2, 0.4], 0.8 on [0.4, 1]
    assert m[("weak", 0, "area")] == pytest.approx(0.8 * 0.6 / 0.8)
    assert m[("static", 1, "compute_reduction")] == pytest.approx(1.0)
    assert set(m.index.get_level_values("metric")) == {
        "area",
        "cost_at_delta_0",
        "cost_at_delta_2",
        "saving_at_delta_0",
        "saving_at_delta_2",
        "compute_reduction",
    }


def test_reference_needs_static_and_stage_knobs() -> None:
    pts = tiny_points()
    with pytest.raises(FieldError) as err:
        summarise(pts[pts["policy"] != "static"])
    assert err.value.field == "policy"
    no_knobs = pts.assign(knob=np.nan)
    with pytest.raises(FieldError) as err:
        summarise(no_knobs)
    assert err.value.field == "knob"
    assert not summarise(no_knobs, reference="best_stage").empty
    with pytest.raises(FieldError) as err:
        summarise(pts.drop(columns="mean_cost"))
    assert err.value.field == "mean_cost"


# --------------------------------------------------------------------------------------------
# Summaries over splits
# --------------------------------------------------------------------------------------------


def random_table(seed: int, n_splits: int = 6) -> pd.DataFrame:
    """static (3 stages) plus two swept policies on several splits."""
    rng = np.random.default_rng(seed)
    share = np.array([0.2, 0.5, 1.0])
    parts = []
    for s in range(n_splits):
        stage_acc = np.sort(rng.uniform(0.5, 0.9, 3))
        parts.append(
            pd.DataFrame(
                {
                    "policy": "static",
                    "knob": [0.0, 1.0, 2.0],
                    "accuracy": stage_acc,
                    "normalized_cost": share,
                    "split": s,
                }
            )
        )
        for name, boost in (("recall", 0.03), ("max_softmax", -0.01)):
            knob = np.linspace(0, 1, 15)
            cost = 0.2 + 0.8 * knob ** rng.uniform(0.5, 2.0)
            acc = np.clip(
                stage_acc[0]
                + (stage_acc[2] - stage_acc[0] + boost) * np.sqrt(knob)
                + rng.normal(0, 0.01, knob.size),
                0,
                1,
            )
            parts.append(
                pd.DataFrame(
                    {"policy": name, "knob": knob, "accuracy": acc, "normalized_cost": cost, "split": s}
                )
            )
    df = pd.concat(parts, ignore_index=True)
    df["mean_cost"] = df["normalized_cost"] * 12.5
    return df


def test_summarise_matches_numpy() -> None:
    pts = random_table(7)
    deltas = (0.0, 0.5, 1.0, 2.0)
    summ = summarise(pts, deltas=deltas).set_index(["policy", "metric"])
    assert len(summ) == 3 * (1 + 2 * len(deltas) + 1)
    t975 = {5: 2.7764451051977934, 6: 2.5705818356363146}  # keyed by n = df + 1
    for policy in ("static", "recall", "max_softmax"):
        per_split: dict[str, list[float]] = {}
        for s in range(6):
            sp = pts[pts["split"] == s]
            rows = sp[sp["policy"] == policy]
            hull = upper_hull(rows["normalized_cost"].to_numpy(), rows["accuracy"].to_numpy())
            static = sp[sp["policy"] == "static"]
            ref = static.loc[static["knob"].idxmax(), "accuracy"]
            lo = sp["normalized_cost"].min()
            per_split.setdefault("area", []).append(area_under_hull(hull, lo, 1.0))
            for d in deltas:
                c = float(cost_to_reach(hull, ref - d / 100))
                per_split.setdefault(f"cost_at_delta_{d:g}", []).append(c)
                per_split.setdefault(f"saving_at_delta_{d:g}", []).append(1 - c)
            best = static.sort_values(["accuracy", "normalized_cost"], ascending=[False, True]).iloc[0]
            c = float(cost_to_reach(hull, best["accuracy"]))
            reduction = best["normalized_cost"] / c if np.isfinite(c) else np.nan  # NaN if unreached
            per_split.setdefault("compute_reduction", []).append(reduction)
        for metric, values in per_split.items():
            v = np.array(values)
            ok = v[np.isfinite(v)]
            row = summ.loc[(policy, metric)]
            assert row["n_splits"] == ok.size and row["n_unreached"] == v.size - ok.size
            assert row["mean"] == pytest.approx(ok.mean())
            if ok.size >= 2:
                assert row["std"] == pytest.approx(ok.std(ddof=1))
                half = t975[ok.size] * ok.std(ddof=1) / np.sqrt(ok.size) if ok.size in t975 else None
                if half is not None:
                    assert row["ci95_low"] == pytest.approx(ok.mean() - half)
                    assert row["ci95_high"] == pytest.approx(ok.mean() + half)
    # the reference policy reaches its own last stage at full cost on every split
    assert summ.loc[("static", "cost_at_delta_0"), "mean"] == pytest.approx(1.0)
    assert summ.loc[("static", "cost_at_delta_0"), "std"] == pytest.approx(0.0)


def test_summary_stats_counts_unreached_and_small_n() -> None:
    mean, std, lo, hi, n, missing = summary_stats([1.0, 3.0, np.inf, np.nan])
    assert (mean, n, missing) == (2.0, 2, 2)
    assert std == pytest.approx(math.sqrt(2.0))
    assert hi - mean == pytest.approx(12.706204736174698 * math.sqrt(2.0) / math.sqrt(2.0))
    assert lo == pytest.approx(2 * mean - hi)
    one = summary_stats([0.4])
    assert one[0] == 0.4 and all(np.isnan(one[1:4])) and one[4:] == (1, 0)
    none = summary_stats([np.inf])
    assert np.isnan(none[0]) and none[4:] == (0, 1)


@pytest.mark.parametrize(
    ("df", "want"),
    [
        (1, 12.706204736174698),
        (2, 4.302652729749464),
        (3, 3.1824463052837078),
        (4, 2.7764451051977934),
        (5, 2.5705818356363146),
        (10, 2.2281388519862744),
        (29, 2.045229642132703),
        (200, 1.9718962236339088),
    ],
)
def test_student_t_quantile(df: int, want: float) -> None:
    assert student_t_quantile(0.95, df) == pytest.approx(want, rel=1e-10)


def test_student_t_quantile_against_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    for df in range(1, 60):
        for cov in (0.5, 0.9, 0.99):
            assert student_t_quantile(cov, df) == pytest.approx(stats.t.ppf(0.5 + cov / 2, df), rel=1e-9)


# --------------------------------------------------------------------------------------------
# Tables for plotting
# --------------------------------------------------------------------------------------------


def test_hull_table_rows_are_hull_vertices() -> None:
    pts = random_table(11, n_splits=3)
    ht = hull_table(pts)
    assert list(ht.columns) == [
        "policy",
        "split",
        "vertex",
        "knob",
        "accuracy",
        "mean_cost",
        "normalized_cost",
    ]
    for (policy, split), g in ht.groupby(["policy", "split"]):
        rows = pts[(pts["policy"] == policy) & (pts["split"] == split)]
        hc, ha = upper_hull(rows["normalized_cost"], rows["accuracy"])
        np.testing.assert_array_equal(g["normalized_cost"], hc)
        np.testing.assert_array_equal(g["accuracy"], ha)
        assert g["vertex"].tolist() == list(range(hc.size))
        # carried columns come from the same input rows
        merged = g.merge(rows, on=["knob", "accuracy", "normalized_cost"], suffixes=("", "_in"))
        assert len(merged) == len(g)
        np.testing.assert_allclose(merged["mean_cost"], merged["mean_cost_in"])


def test_hull_table_keeps_nan_knobs() -> None:
    ht = hull_table(tiny_points())
    weak = ht[ht["policy"] == "weak"]
    assert len(weak) == 2 and weak["knob"].isna().all()


def test_mean_curve_matches_numpy() -> None:
    pts = random_table(5, n_splits=4)
    # make split 3's recall curve start later, so it is undefined at the low end of the grid
    late = (pts["policy"] == "recall") & (pts["split"] == 3) & (pts["normalized_cost"] < 0.3)
    pts = pts[~late]
    grid = np.linspace(0.1, 1.0, 37)
    mc = mean_curve(pts, grid)
    assert list(mc.columns) == ["policy", "normalized_cost", "mean", "std", "n_splits"]
    for policy, g in mc.groupby("policy"):
        stack = np.vstack(
            [
                hull_accuracy_at(upper_hull(r["normalized_cost"], r["accuracy"]), grid)
                for _, r in pts[pts["policy"] == policy].groupby("split")
            ]
        )
        n = np.isfinite(stack).sum(axis=0)
        np.testing.assert_array_equal(g["n_splits"], n)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            want_mean = np.nanmean(stack, axis=0)
            want_std = np.nanstd(stack, axis=0, ddof=1)
        np.testing.assert_allclose(g["mean"], want_mean, equal_nan=True)
        np.testing.assert_allclose(g["std"], want_std, equal_nan=True, atol=1e-15)
    recall = mc[mc["policy"] == "recall"]
    assert recall["n_splits"].min() == 0 and recall["n_splits"].max() == 4


def test_compute_reduction_zero_costs() -> None:
    rows = [
        ("static", 0, 0.7, 0.0, 0),  # a free single stage
        ("static", 1, 0.9, 1.0, 0),
        ("free", np.nan, 0.95, 0.0, 0),  # reaches a_s = 0.9 at cost 0: infinite reduction
        ("static", 0, 0.9, 0.0, 1),  # the best stage is free: 0 / 0 is undefined
        ("static", 1, 0.8, 1.0, 1),
        ("free", np.nan, 0.95, 0.0, 1),
    ]
    pts = pd.DataFrame(rows, columns=["policy", "knob", "accuracy", "normalized_cost", "split"])
    pts["mean_cost"] = pts["normalized_cost"]
    red = compute_reduction(pts, pts[pts["policy"] == "static"]).set_index(["policy", "split"])
    assert red.loc[("free", 0), "compute_reduction"] == np.inf
    assert np.isnan(red.loc[("free", 1), "compute_reduction"])
    assert red.loc[("static", 0), "compute_reduction"] == pytest.approx(1.0)
