"""The W&B summary run of a multirun (README: W&B): one run named ``summary`` in the sweep's
group with the headline table of the sweep's results; none when W&B is off or every job was
skipped."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from _frugal import write_frugal_folder
from conftest import app_env, run_app
from test_wandb_outputs import run_record, wandb_records

from ttamer.evaluation.report import load_results, summary_table


def _sweep(tmp: Path, mode: str) -> tuple[Path, str]:
    folder = tmp / "data" / "frugalml" / "mlserviceperformance_TINY"
    if not folder.exists():
        write_frugal_folder(folder, n=300)
    sweep = tmp / "sweeps" / "s1"
    proc = run_app(
        "-m", f"hydra.sweep.dir={sweep}", "workload=frugalml", "workload.dataset=TINY",
        f"data_root={tmp / 'data'}", "workload.n_splits=2", "workload.fit.n_bins=4", "progress=false",
        "policy.trace=[recall,no_recall,static]", "seed=0,1", env=app_env(WANDB_MODE=mode),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return sweep, proc.stdout + proc.stderr


def _table(run: Path, key: str) -> pd.DataFrame:
    (path,) = (run / "files" / "media" / "table").glob(f"{key}_*.table.json")
    data = json.loads(path.read_text())
    return pd.DataFrame(data["data"], columns=data["columns"])


@pytest.mark.slow
def test_summary_run_holds_the_headline_table_and_is_not_redone(tmp_path: Path) -> None:
    sweep, _ = _sweep(tmp_path, "offline")
    (run,) = sorted((sweep / "wandb").glob("offline-run-*"))
    meta = run_record(wandb_records(run))
    assert (meta.display_name, meta.job_type, meta.run_group) == ("summary", "summary", "sweeps/s1")
    jobs = sorted(p.parent for p in sweep.rglob("DONE") if "wandb" not in p.parts)
    assert len(jobs) == 2
    for job in jobs:  # the jobs' runs share the group
        (job_run,) = (job / "wandb").glob("offline-run-*")
        assert run_record(wandb_records(job_run)).run_group == "sweeps/s1"
    rows = _table(run, "multirun_summary")
    assert sorted(rows["job"]) == sorted(j.relative_to(sweep).as_posix() for j in jobs)
    assert (rows["status"] == "done").all()
    headline = _table(run, "headline/trace")
    expected = summary_table(load_results(sweep)[0])
    assert list(headline.columns) == list(expected.columns)
    assert len(headline) == len(expected) == 2 * 3  # two jobs, three policies
    pd.testing.assert_series_equal(headline["saving_d1_mean"], expected["saving_d1_mean"], check_dtype=False)

    _, out = _sweep(tmp_path, "offline")  # every job skipped: no second summary run
    assert out.count("skipping: already done") == 2
    assert sorted((sweep / "wandb").glob("offline-run-*")) == [run]


def test_no_summary_run_when_wandb_is_off(tmp_path: Path) -> None:
    sweep, _ = _sweep(tmp_path, "disabled")
    assert (sweep / "multirun_summary.csv").is_file()
    assert not (sweep / "wandb").exists()
