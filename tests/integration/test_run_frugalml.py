"""End-to-end run of the Hydra ``frugalml`` workload on a small FrugalML-like folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _frugal import write_frugal_folder
from conftest import run_app

from ttamer.evaluation.scoring import COLUMNS


@pytest.mark.slow
def test_frugalml_workload_writes_tables_and_figure(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "frugalml" / "mlserviceperformance_TINY"
    write_frugal_folder(folder, n=400)
    run_dir = tmp_path / "run"
    proc = run_app(
        f"hydra.run.dir={run_dir}", "workload=frugalml", "workload.dataset=TINY",
        f"data_root={tmp_path / 'data'}", "workload.n_splits=3", "workload.fit.n_bins=4", "logger=none",
        "progress=false",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr

    points = pd.read_csv(run_dir / "frugalml_tiny_points.csv")
    assert list(points.columns) == list(COLUMNS)
    assert set(points["split"]) == {0, 1, 2}
    assert set(points["policy"]) >= {"recall", "no_recall", "max_softmax", "static", "oracle"}
    assert points["accuracy"].between(0, 1).all()
    # static stage k costs the cumulative price of the k cheapest models (0.001, 0.75, 2.5)
    static = points[points["policy"] == "static"].groupby("knob")["mean_cost"].first()
    np.testing.assert_allclose(static.to_numpy(), np.cumsum([0.001, 0.75, 2.5]))
    assert (points["cost_unit"] == "USD per 10k calls").all()

    summary = pd.read_csv(run_dir / "frugalml_tiny_summary.csv")
    assert {"policy", "metric", "mean", "ci95_low", "ci95_high", "n_splits"} <= set(summary.columns)
    assert "saving_at_delta_1" in set(summary["metric"])
    assert (run_dir / "fig_frugalml_tiny.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    # the posterior policies are scored, and every policy with a model is calibrated
    assert {"posterior_recall", "posterior_no_recall", "auto"} <= set(points["policy"])
    calibration = pd.read_csv(run_dir / "frugalml_tiny_calibration.csv")
    assert {"recall", "no_recall", "posterior_recall", "posterior_no_recall"} <= set(calibration["policy"])
    assert "calibration_gap" in set(summary.loc[summary["policy"] == "posterior_recall", "metric"])
    assert (run_dir / "fig_frugalml_tiny_calibration.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_frugalml_workload_missing_folder_fails_clearly(tmp_path: Path) -> None:
    proc = run_app(f"hydra.run.dir={tmp_path / 'run'}", "workload=frugalml",
                   f"data_root={tmp_path / 'nowhere'}", "logger=none")  # fmt: skip
    assert proc.returncode == 2
    assert "mlserviceperformance_IMDB is not a folder" in proc.stderr
    assert "Traceback" not in proc.stderr
