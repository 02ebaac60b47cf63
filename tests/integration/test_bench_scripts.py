"""The benchmark scripts run end to end on tiny sizes, print their JSON as the last line, write
the same object to ``--out``, and report numbers consistent with each other (no timing targets
here: those are measured by the scripts themselves)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_script(name: str, *args: str) -> tuple[dict[str, Any], str]:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / name), *args], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    return json.loads(last), proc.stdout


def test_bench_solver_tiny(tmp_path: Path) -> None:
    out = tmp_path / "solver.json"
    result, text = run_script("bench_solver.py", "--sizes", "20:3,30:4", "--main", "30:4", "--repeats", "1",
                              "--out", str(out))  # fmt: skip
    assert json.loads(out.read_text()) == result
    assert [(r["K"], r["n"]) for r in result["grid"]] == [(20, 3), (30, 4)]
    head = result["grid"][1]
    assert result["ratio_solver_to_matmul"] == pytest.approx(head["solver_s"] / head["matmul_s"], rel=1e-2)
    batch = result["lambda_batch"]
    assert result["lambda_batch_speedup"] == pytest.approx(batch["separate_s"] / batch["batch_s"], rel=1e-2)
    assert [r["lam"] for r in result["banded"]] == [0.1, 0.5, 0.9, 0.99]
    assert all(0.0 <= r["band_share"] <= 1.0 for r in result["banded"])
    assert result["per_stage_support"]["grid_rows"] == 4 * 30 + 1
    f64, f32 = result["torch"]
    assert f64["dtype"] == "float64" and f64["max_rel_error"] < 1e-12
    assert f32["dtype"] == "float32" and f32["max_rel_error"] < 1e-4
    for row in (f64, f32):
        assert row["lambda_batch_speedup"] == pytest.approx(row["lambda_separate_s"] / row["lambda_batch_s"])
    assert batch["lambda_batch_ceiling"] == pytest.approx(batch["separate_s"] / batch["products_floor_64_s"])
    assert batch["products_floor_64_s"] == pytest.approx(
        64 * min(batch["products_one_lam_s"], batch["products_per_lam_stacked8_s"])
    )
    assert "dense recall solver" in text


@pytest.mark.slow
def test_bench_scoring_tiny(tmp_path: Path) -> None:
    from ttamer.policies import POLICIES

    out = tmp_path / "scoring.json"
    result, _ = run_script("bench_scoring.py", "--samples", "3000", "--stages", "4", "--knobs", "8",
                           "--repeats", "1", "--no-memory", "--out", str(out))  # fmt: skip
    assert json.loads(out.read_text()) == result
    assert set(result["evals_per_second"]) == set(POLICIES)
    assert all(v > 0 for v in result["evals_per_second"].values())
    ratio = result["ratio_to_numpy_pass"]
    for name, evals in result["evals_per_second"].items():
        assert ratio[name] == pytest.approx(result["numpy_pass_evals_per_second"] / evals, rel=1e-6)


def test_bench_aggregation_quick(tmp_path: Path) -> None:
    import pandas as pd

    result, _ = run_script("bench_aggregation.py", "--quick", "--out", str(tmp_path))
    table = pd.read_csv(tmp_path / "aggregation_ablation.csv")
    assert (tmp_path / "fig_aggregation_ablation.png").read_bytes()[:4] == b"\x89PNG"
    assert [int(q) for q in result["q_values"]] == sorted(set(table["q"]))
    assert (table["gap"] >= -1e-12).all()  # the lifted policy never beats the optimum
    for q, gap in result["gap_at_q"].items():
        assert gap == pytest.approx(float(table.loc[table["q"] == int(q), "gap"].max()))
    assert np.isfinite(result["exact_seconds"])


@pytest.mark.slow
def test_bench_serving_digits_tiny(tmp_path: Path) -> None:
    """Trains the digits model into a fresh cache, serves 60 held-out requests in every mode and
    both load loops; every served decision equals the replay's."""
    import pandas as pd

    out = tmp_path / "serving"
    result, _ = run_script("bench_serving.py", "--workload", "digits", "--quick", "--max-requests", "60",
                              "--rates", "4", "--load-requests", "40", "--cache-dir", str(tmp_path / "cache"),
                              "--out", str(out))  # fmt: skip
    files = sorted(p.name for p in out.iterdir())
    assert len(files) == 5 and all(f.endswith("-quick.csv") or f.endswith("-quick.json") for f in files)
    tag = files[0].removeprefix("serving-batch1-").removesuffix(".csv")
    summary = json.loads((out / f"serving-summary-{tag}.json").read_text())
    assert {k: v for k, v in summary.items() if not k.startswith("env_")} == {
        k: v for k, v in result.items() if not k.startswith("env_")
    }
    assert summary["recall_agrees_with_replay"] == 1.0 and summary["n_held_out"] == 60
    assert 0.0 < summary["predicted_saving"] < 1.0 and summary["decision_overhead_fraction"] > 0.0
    load = pd.read_csv(out / f"serving-load-{tag}.csv")
    assert set(load["loop"]) == {"batch", "stagewise"} and len(load) == 2 * 5  # full + 4 policies
    assert (load["agrees_with_replay"] == 1.0).all() and (load["n_requests"] == 40).all()
    for name in ("batch1", "batched"):
        table = pd.read_csv(out / f"serving-{name}-{tag}.csv")
        assert (table["agrees_with_replay"] == 1.0).all()
        assert "posterior_recall" in set(table["policy"])
    overhead = pd.read_csv(out / f"serving-overhead-{tag}.csv")
    assert list(overhead["batch_size"]) == [1, 4, 16, 64, 256]
    assert sorted(summary["decision_overhead_fraction_by_batch_size"]) == ["1", "16", "256", "4", "64"]
