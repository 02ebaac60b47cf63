"""End-to-end runs of the Hydra app (``python -m ttamer.app.run``) on a small synthetic workload."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SMALL_SYNTHETIC, app_env, run_app

SMALL = SMALL_SYNTHETIC


def _run(run_dir: Path, *overrides: str, **env: str) -> subprocess.CompletedProcess[str]:
    proc = run_app(f"hydra.run.dir={run_dir}", *SMALL, *overrides, env=app_env(WANDB_DIR=str(run_dir), **env))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "out"
    _run(out, "logger=none")
    return out


def test_writes_tables_figures_and_config(run_dir: Path) -> None:
    for name in (
        "synthetic_lower_bound.csv",
        "synthetic_ratios.csv",
        "synthetic_pareto.csv",
        "fig_lower_bound.png",
        "fig_ratio_distribution.png",
        "fig_pareto.png",
        ".hydra/config.yaml",
    ):
        path = run_dir / name
        assert path.is_file() and path.stat().st_size > 0, name
    for name in ("fig_lower_bound.png", "fig_ratio_distribution.png", "fig_pareto.png"):
        assert (run_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(run_dir.glob(".*.tmp")), "atomic writes left temporary files"
    assert not (run_dir / "wandb").exists()


def test_lower_bound_table(run_dir: Path) -> None:
    lb = pd.read_csv(run_dir / "synthetic_lower_bound.csv")
    cols = {
        "case",
        "alpha",
        "n_stages",
        "cost_scale",
        "lam",
        "no_recall",
        "recall",
        "prophet",
        "no_recall_closed",
        "recall_closed",
        "ratio",
        "ratio_closed",
    }
    assert cols <= set(lb.columns)
    assert set(lb["case"]) == {"generalised", "theorem_3_4"}
    assert set(lb["n_stages"]) == {2, 3}
    for col in ("no_recall", "recall", "ratio"):
        np.testing.assert_allclose(lb[col], lb[f"{col}_closed"], rtol=1e-9, atol=1e-12)
    assert (lb["ratio"] >= 1 - 1e-9).all()
    thm = lb[lb["case"] == "theorem_3_4"]
    assert (thm["lam"] == 1.0).all() and (thm["cost_scale"] == 0.0).all() and (thm["n_stages"] == 2).all()
    np.testing.assert_allclose(thm["ratio"], thm["alpha"], rtol=1e-9)  # Theorem 3.4: ratio = alpha
    np.testing.assert_allclose(thm["prophet"], thm["alpha"] ** -3.0, rtol=1e-9)
    big = lb[lb["alpha"] == lb["alpha"].max()]
    assert (big["ratio"] > 0.05 * big["alpha"]).all(), "the ratio must grow with alpha"


def test_ratio_table(run_dir: Path) -> None:
    rt = pd.read_csv(run_dir / "synthetic_ratios.csv")
    cols = {
        "family",
        "chain",
        "lam",
        "j_recall",
        "j_no_recall",
        "j_best_threshold",
        "j_prophet",
        "ratio_no_recall",
        "ratio_best_threshold",
        "ratio_prophet",
    }
    assert cols <= set(rt.columns)
    assert set(rt["family"]) == {"improving", "overthinking", "independent", "correlated", "dirichlet"}
    assert len(rt) == 5 * 3 * 2  # families x chains x lams
    assert (rt["ratio_no_recall"] >= 1 - 1e-9).all()
    assert (rt["ratio_best_threshold"] >= rt["ratio_no_recall"] - 1e-9).all()
    assert (rt["ratio_prophet"] <= 1 + 1e-9).all() and (rt["ratio_prophet"] > 0).all()
    np.testing.assert_allclose(rt["ratio_no_recall"], rt["j_no_recall"] / rt["j_recall"], rtol=1e-12)


def test_pareto_table(run_dir: Path) -> None:
    pt = pd.read_csv(run_dir / "synthetic_pareto.csv")
    assert {"chain", "policy", "knob", "knob_value", "expected_loss", "expected_cost"} <= set(pt.columns)
    assert set(pt["policy"]) == {"recall", "no_recall", "threshold", "prophet"}
    assert (pt.loc[pt["policy"] != "threshold", "knob"] == "lam").all()
    assert (pt["expected_loss"].between(0, 1)).all()
    assert (pt["expected_cost"].between(0, 1 + 1e-9)).all()  # synthetic costs sum to 1
    rec = pt[pt["policy"] == "recall"].sort_values("knob_value")
    assert len(rec) == 12
    # a larger lam weighs loss more: loss does not increase, cost does not decrease
    assert (np.diff(rec["expected_loss"]) <= 1e-12).all() and (np.diff(rec["expected_cost"]) >= -1e-12).all()


@pytest.mark.slow
def test_seed_drives_the_chains(tmp_path: Path, run_dir: Path) -> None:
    again, other = tmp_path / "again", tmp_path / "other"
    _run(again, "logger=none")
    _run(other, "logger=none", "seed=1")
    base = pd.read_csv(run_dir / "synthetic_ratios.csv")
    pd.testing.assert_frame_equal(base, pd.read_csv(again / "synthetic_ratios.csv"))
    assert not np.allclose(base["j_recall"], pd.read_csv(other / "synthetic_ratios.csv")["j_recall"])


def test_policy_subset(tmp_path: Path) -> None:
    _run(tmp_path, "logger=none", "policy.compare=[recall,no_recall]")
    rt = pd.read_csv(tmp_path / "synthetic_ratios.csv")
    assert "ratio_no_recall" in rt.columns and "j_prophet" not in rt.columns
    assert set(pd.read_csv(tmp_path / "synthetic_pareto.csv")["policy"]) == {"recall", "no_recall"}
    assert (tmp_path / "fig_ratio_distribution.png").stat().st_size > 0


def test_wandb_offline_run_folder(tmp_path: Path) -> None:
    _run(tmp_path, "logger=wandb", WANDB_MODE="offline")
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, list(tmp_path.rglob("*"))
    assert any(runs[0].glob("*.wandb")), "the offline run holds no data file"


def test_wandb_disabled_by_environment(tmp_path: Path) -> None:
    _run(tmp_path, "logger=wandb", WANDB_MODE="disabled")
    assert not (tmp_path / "wandb").exists()


def test_every_lower_bound_instance_is_saved_and_solves_to_its_ratio(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """instances/lower_bound/ holds every instance of the table; solving each file (the
    library, and ``ttamer solve`` on some) gives the table's ratio within 1e-9."""
    import json

    from ttamer.cli import main
    from ttamer.model.chain import load_chain
    from ttamer.solvers import solve_no_recall, solve_recall

    table = pd.read_csv(run_dir / "synthetic_lower_bound.csv")
    files = sorted((run_dir / "instances" / "lower_bound").glob("*.json"))
    assert len(files) == len(table) == table["instance"].nunique()
    for row in table.itertuples():
        chain = load_chain(run_dir / row.instance)
        ratio = float(solve_no_recall(chain, row.lam).value[0] / solve_recall(chain, row.lam).value[0])
        assert ratio == pytest.approx(row.ratio, rel=1e-9, abs=1e-9)
    for row in table.iloc[:: max(1, len(table) // 6)].itertuples():
        values = {}
        for policy in ("recall", "no_recall"):
            args = ["solve", str(run_dir / row.instance), "--lam", repr(row.lam), "--policy", policy]
            assert main(args) == 0
            values[policy] = json.loads(capsys.readouterr().out)["objective"]
        assert values["no_recall"] / values["recall"] == pytest.approx(row.ratio, rel=1e-9)


def test_every_random_chain_is_saved_and_solves_to_its_objectives(run_dir: Path) -> None:
    from ttamer.model.chain import load_chain
    from ttamer.solvers import solve_no_recall, solve_recall

    ratios = pd.read_csv(run_dir / "synthetic_ratios.csv")
    assert (run_dir / "instances" / "random").is_dir()
    assert len(list((run_dir / "instances" / "random").glob("*.json"))) == ratios["instance"].nunique()
    for row in ratios.itertuples():
        chain = load_chain(run_dir / row.instance)
        assert float(solve_recall(chain, row.lam).value[0]) == pytest.approx(row.j_recall, rel=1e-12)
        assert float(solve_no_recall(chain, row.lam).value[0]) == pytest.approx(row.j_no_recall, rel=1e-12)
