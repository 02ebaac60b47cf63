"""How well a fitted model predicts the accuracy of the answers its policy returns.

A policy with a fitted model (recall, no_recall, the posterior policies, graph policies) is
scored with a ``predicted_accuracy`` column: 1 - the model's mean estimated error of the answers
it returned on the test split. Where the model's estimate of a returned answer is biased
(recall picks the answer whose estimate is smallest: a winner's curse when the estimate is
noisy or ignores later evidence) predicted accuracy exceeds the realised one. The gap is read
per split at the policy's largest knob value (the largest lam: the most accurate operating
point, where the policy leans on the estimates most).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CALIBRATION_COLUMNS = ("policy", "knob", "knob_name", "predicted_accuracy", "accuracy", "gap", "n_splits")
GAP_METRIC = "calibration_gap"
"""Summary metric: predicted minus realised accuracy at the largest knob value, per split."""


def _with_prediction(points: pd.DataFrame) -> pd.DataFrame:
    if "predicted_accuracy" not in points.columns:
        return points.iloc[0:0]
    return points[np.isfinite(points["predicted_accuracy"].to_numpy(dtype=np.float64))]


def calibration_table(points: pd.DataFrame) -> pd.DataFrame:
    """Per policy with a model and knob value: predicted and realised accuracy (means over
    splits), their gap (predicted - realised) and the number of splits."""
    rows = _with_prediction(points)
    if rows.empty:
        return pd.DataFrame(columns=list(CALIBRATION_COLUMNS))
    g = rows.groupby(["policy", "knob"], sort=False)
    table = g.agg(
        knob_name=("knob_name", "first"),
        predicted_accuracy=("predicted_accuracy", "mean"),
        accuracy=("accuracy", "mean"),
        n_splits=("split", "nunique"),
    ).reset_index()
    table["gap"] = table["predicted_accuracy"] - table["accuracy"]
    return table[list(CALIBRATION_COLUMNS)]


def gap_at_largest_knob(points: pd.DataFrame) -> pd.DataFrame:
    """Tidy ``policy, split, metric, value``: predicted minus realised accuracy at the largest
    knob value of every policy with a model, on every split."""
    rows = _with_prediction(points)
    if rows.empty:
        return pd.DataFrame(columns=["policy", "split", "metric", "value"])
    last = rows.sort_values("knob", kind="stable").groupby(["policy", "split"], sort=False).tail(1)
    return pd.DataFrame(
        {
            "policy": last["policy"].to_numpy(),
            "split": last["split"].to_numpy(),
            "metric": GAP_METRIC,
            "value": (last["predicted_accuracy"] - last["accuracy"]).to_numpy(dtype=np.float64),
        }
    )
