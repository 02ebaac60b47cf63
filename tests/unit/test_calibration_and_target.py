"""The ``predicted_accuracy`` column, the calibration table and gap metric, and accuracy
measured as agreement with the last stage (``target = last_stage``), against hand computations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_trace_policies import random_trace

from ttamer.cli import main
from ttamer.evaluation.calibration import GAP_METRIC, calibration_table, gap_at_largest_knob
from ttamer.evaluation.pareto import summarise
from ttamer.evaluation.scoring import ScoringConfig, score_policies
from ttamer.traces.trace import repeated_splits, save_trace


def points_frame() -> pd.DataFrame:
    rows = [
        # policy, knob, split, accuracy, predicted
        ("a", 0.5, 0, 0.80, 0.84),
        ("a", 0.9, 0, 0.90, 0.95),
        ("a", 0.5, 1, 0.70, 0.72),
        ("a", 0.9, 1, 0.88, 0.89),
        ("b", 1.0, 0, 0.60, np.nan),
        ("b", 2.0, 0, 0.70, np.nan),
    ]
    df = pd.DataFrame(rows, columns=["policy", "knob", "split", "accuracy", "predicted_accuracy"])
    df["knob_name"] = "lam"
    df["mean_cost"] = df["normalized_cost"] = df["knob"] / 2.0
    return df


def test_calibration_table_and_gap_by_hand():
    df = points_frame()
    table = calibration_table(df)
    assert list(table["policy"]) == ["a", "a"]  # b has no model
    top = table[table["knob"] == 0.9].iloc[0]
    assert top["predicted_accuracy"] == pytest.approx((0.95 + 0.89) / 2)
    assert top["accuracy"] == pytest.approx((0.90 + 0.88) / 2)
    assert top["gap"] == pytest.approx(0.03) and top["n_splits"] == 2
    gap = gap_at_largest_knob(df).sort_values("split")
    np.testing.assert_allclose(gap["value"], [0.05, 0.01])
    assert set(gap["metric"]) == {GAP_METRIC}


def test_summary_reports_the_gap_only_for_policies_with_a_model():
    trace = random_trace(3, "binary", seed=2)
    points = score_policies(trace, ScoringConfig(policies=("recall", "max_softmax", "static"), n_splits=3))
    summary = summarise(points, reference="best_stage")
    gaps = summary[summary["metric"] == GAP_METRIC].set_index("policy")
    assert list(gaps.index) == ["recall"]
    recall = points[points["policy"] == "recall"]
    last = recall[recall["knob"] == recall["knob"].max()]
    want = (last["predicted_accuracy"] - last["accuracy"]).mean()
    assert gaps.loc["recall", "mean"] == pytest.approx(want)
    assert points.loc[points["policy"] == "max_softmax", "predicted_accuracy"].isna().all()


def test_last_stage_target_measures_agreement_with_the_backbone():
    trace = random_trace(4, "multiclass", seed=9)
    points = score_policies(
        trace, ScoringConfig(policies=("static", "posterior_recall"), n_splits=2, target="last_stage")
    )
    assert set(points["target"]) == {"last_stage"}
    splits = repeated_splits(trace.n_samples, 2, 0.5, 0)
    for r, (_, test) in enumerate(splits):
        static = points[(points["policy"] == "static") & (points["split"] == r)].sort_values("knob")
        want = (trace.pred[test] == trace.pred[test][:, -1:]).mean(axis=0)
        np.testing.assert_allclose(static["accuracy"], want)
    assert (points.loc[points["policy"] == "static", "accuracy"].iloc[-1]) == 1.0
    with pytest.raises(Exception, match="target"):
        ScoringConfig(target="backbone")


def test_cli_sweep_target_option(tmp_path: Path):
    trace = random_trace(3, "binary", seed=1)
    path = tmp_path / "t.npz"
    save_trace(trace, path)
    out = tmp_path / "r.csv"
    args = [
        "sweep",
        str(path),
        "--out",
        str(out),
        "--policies",
        "static,recall",
        "--splits",
        "2",
        "--no-progress",
    ]
    assert main([*args, "--target", "last_stage"]) == 0
    table = pd.read_csv(out)
    assert set(table["target"]) == {"last_stage"}
    assert table.loc[table["policy"] == "recall", "predicted_accuracy"].notna().all()
    assert table.loc[table["policy"] == "static", "predicted_accuracy"].isna().all()
    assert main([*args, "--target", "backbone"]) == 2  # one line on stderr, no traceback
