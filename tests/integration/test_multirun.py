"""Multiruns of the Hydra app (``python -m ttamer.app.run -m``): provenance, skipping finished jobs,
resuming after a kill, failed jobs, the multirun summary and W&B offline runs per job."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from _frugal import write_frugal_folder
from conftest import SMALL_SYNTHETIC, app_env, run_app

SMALL = SMALL_SYNTHETIC
CSVS = ("synthetic_lower_bound.csv", "synthetic_ratios.csv", "synthetic_pareto.csv")
PNG = b"\x89PNG\r\n\x1a\n"
# files that Hydra itself touches on every invocation: the job log (appended to; a skipped job
# logs "skipping" there) and the sweep's multirun.yaml (rewritten by the sweeper)


def _env(tmp: Path, mode: str) -> dict[str, str]:
    return app_env(WANDB_MODE=mode, WANDB_DIR=str(tmp / "wandb_env"))  # the job folder must win


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "ttamer.app.run", *args]


def _multirun(sweep: Path, *overrides: str, mode: str = "disabled", rc: int = 0) -> str:
    proc = run_app("-m", f"hydra.sweep.dir={sweep}", *SMALL, *overrides, env=_env(sweep.parent, mode))
    assert proc.returncode == rc, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def _jobs(sweep: Path) -> list[Path]:
    return sorted(p.parent.parent for p in sweep.glob("*/.hydra/config.yaml"))


def _snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Every file and link under ``root`` (not followed): mtime (ns) and content hash."""
    snap = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = Path(dirpath, name)
            st = path.lstat()
            data = os.readlink(path).encode() if path.is_symlink() else path.read_bytes()
            snap[path.relative_to(root).as_posix()] = (st.st_mtime_ns, hashlib.sha256(data).hexdigest())
    return snap


def _provenance(job: Path) -> dict:
    return json.loads((job / "provenance.json").read_text())


def _check_files_intact(root: Path) -> None:
    """Every CSV parses, every PNG starts with the PNG signature, every JSON loads."""
    for path in root.rglob("*"):
        if not path.is_file() or path.name.endswith(".tmp") or "wandb" in path.relative_to(root).parts:
            continue
        if path.suffix == ".csv":
            assert len(pd.read_csv(path)) > 0, path
        elif path.suffix == ".png":
            assert path.read_bytes()[:8] == PNG, path
        elif path.suffix == ".json" or path.name == "DONE":
            json.loads(path.read_text())


@pytest.mark.slow
def test_multirun_writes_provenance_and_wandb_then_skips(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    _multirun(sweep, "seed=1,2", mode="offline")
    jobs = _jobs(sweep)
    assert len(jobs) == 2, list(sweep.iterdir())
    for seed, job in zip((1, 2), jobs, strict=True):
        for name in (*CSVS, "fig_pareto.png", ".hydra/config.yaml", "provenance.json", "DONE"):
            assert (job / name).is_file() and (job / name).stat().st_size > 0, (job, name)
        prov = _provenance(job)
        assert prov["status"] == "done" and prov["error"] is None
        assert f"seed={seed}" in prov["overrides"]
        assert prov["packages"]["numpy"] and prov["packages"]["hydra-core"] and prov["python"]
        assert set(prov["git"]) == {"commit", "dirty", "root"}
        assert prov["started"] <= prov["ended"]
        assert json.loads((job / "DONE").read_text())["config_hash"] == prov["config_hash"]
        # one W&B offline run per job, inside the job folder, with the tables and figures
        runs = list((job / "wandb").glob("offline-run-*"))
        assert len(runs) == 1 and any(runs[0].glob("*.wandb")), list(job.rglob("*"))
        media = runs[0] / "files" / "media"
        assert any((media / "table").rglob("*.json")) and any((media / "images").rglob("*.png"))
        # grouped by the sweep: the run's group is the sweep folder's name (not a path prefix)
        data = next(runs[0].glob("*.wandb")).read_bytes()
        assert re.search(rb"(?<!/)" + re.escape(f"{sweep.parent.name}/{sweep.name}".encode()), data)
    assert not (tmp_path / "wandb_env").exists(), "W&B files must go into the job folders"
    summary = pd.read_csv(sweep / "multirun_summary.csv")
    assert len(summary) == 2 and (summary["status"] == "done").all()
    assert (
        hashlib.sha256(jobs[0].joinpath(CSVS[1]).read_bytes()).digest()
        != hashlib.sha256(jobs[1].joinpath(CSVS[1]).read_bytes()).digest()
    ), "the seed must change the results"

    before = _snapshot(sweep)
    out = _multirun(sweep, "seed=1,2", mode="offline")
    assert out.count("skipping: already done") == 2, out
    after = _snapshot(sweep)
    assert after == before  # no file rewritten: same bytes and mtimes, run.log and multirun.yaml too


@pytest.mark.slow
def test_killed_multirun_resumes(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    log_file = tmp_path / "killed.log"
    cmd = _cmd("-m", f"hydra.sweep.dir={sweep}", *SMALL, "seed=1,2,3", "logger=none")
    with log_file.open("wb") as fh:
        proc = subprocess.Popen(
            cmd, env=_env(tmp_path, "disabled"), stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            deadline = time.monotonic() + 120
            while not list(sweep.glob("*/DONE")):
                assert proc.poll() is None, log_file.read_text()
                assert time.monotonic() < deadline, "no job finished"
                time.sleep(0.02)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    done = sorted(p.parent for p in sweep.glob("*/DONE"))
    assert 1 <= len(done) < 3
    for job in _jobs(sweep):
        if job not in done and (job / "provenance.json").exists():
            assert _provenance(job)["status"] == "running"  # killed: no marker, no final status
    _check_files_intact(sweep)
    before = {job: _snapshot(job) for job in done}

    out = _multirun(sweep, "seed=1,2,3", "logger=none")
    jobs = _jobs(sweep)
    assert len(jobs) == 3
    assert out.count("skipping: already done") == len(done), out
    for job in done:  # untouched
        assert _snapshot(job) == before[job]
    for job in jobs:
        assert _provenance(job)["status"] == "done" and (job / "DONE").is_file()
        assert all((job / name).is_file() for name in CSVS)
    assert not list(sweep.rglob(".*.tmp")), "temporary files of the killed run were not cleaned"
    _check_files_intact(sweep)
    assert (pd.read_csv(sweep / "multirun_summary.csv")["status"] == "done").all()


def _frugal_jobs(tmp_path: Path, datasets: str, *args: str, rc: int) -> str:
    """FrugalML jobs on a small generated folder (TINY); another dataset has no folder, which
    only the run can find out (the command's checks pass)."""
    folder = tmp_path / "data" / "frugalml" / "mlserviceperformance_TINY"
    if not folder.exists():
        write_frugal_folder(folder, n=200)
    env = {**_env(tmp_path, "disabled"), "TTAMER_DATA_ROOT": str(tmp_path / "data")}  # not in the job names
    proc = run_app(*args, "workload=frugalml", f"workload.dataset={datasets}", "workload.n_splits=2",
                   "workload.fit.n_bins=3", "policy.trace=[recall,static]", "logger=none", "progress=false",
                   env=env)  # fmt: skip
    assert proc.returncode == rc, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_failed_job_does_not_stop_the_sweep(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    # the second job's folder does not exist: it fails when it runs; the first one is fine
    out = _frugal_jobs(tmp_path, "TINY,NONE", "-m", f"hydra.sweep.dir={sweep}", rc=1)
    good, bad = _jobs(sweep)
    assert "workload.dataset=TINY" in good.name and "workload.dataset=NONE" in bad.name
    assert _provenance(good)["status"] == "done" and (good / "DONE").is_file()
    assert (good / "frugalml_tiny_points.csv").is_file()
    prov = _provenance(bad)
    assert prov["status"] == "failed" and "is not a folder" in prov["error"] and prov["traceback"]
    assert not (bad / "DONE").exists()
    summary = pd.read_csv(sweep / "multirun_summary.csv").fillna("")
    assert list(summary["status"]) == ["done", "failed"]
    assert "is not a folder" in summary["error"].iloc[1] and summary["error"].iloc[0] == ""
    assert "1 of 2 jobs did not finish" in out and "failed" in out

    # a rerun skips the finished job and retries the failed one
    before = _snapshot(good)
    out = _frugal_jobs(tmp_path, "TINY,NONE", "-m", f"hydra.sweep.dir={sweep}", rc=1)
    assert out.count("skipping: already done") == 1
    assert _snapshot(good) == before
    assert _provenance(bad)["status"] == "failed"


def test_a_value_out_of_range_stops_the_whole_multirun_first(tmp_path: Path) -> None:
    """What the configs can check (a chain needs states) is refused before any job runs."""
    sweep = tmp_path / "sweep"
    out = _multirun(sweep, "workload.n_states=4,0", "logger=none", rc=2)
    assert out.strip().splitlines() == ["error: workload.n_states: must be >= 1, got 0"]
    assert not sweep.exists()


def _single(run_dir: Path, *overrides: str, rc: int = 0) -> str:
    env = _env(run_dir.parent, "disabled")
    proc = run_app(f"hydra.run.dir={run_dir}", *SMALL, "logger=none", *overrides, env=env)
    assert proc.returncode == rc, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_single_run_skips_then_force_and_a_changed_config_rerun(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    _single(run_dir)
    first = _snapshot(run_dir)
    assert "skipping: already done" in _single(run_dir)
    assert _snapshot(run_dir) == first

    assert "skipping" not in _single(run_dir, "force=true")  # same config, recomputed
    forced = _snapshot(run_dir)
    assert forced["synthetic_ratios.csv"][0] > first["synthetic_ratios.csv"][0]
    assert forced["synthetic_ratios.csv"][1] == first["synthetic_ratios.csv"][1]  # deterministic
    assert forced["DONE"][0] > first["DONE"][0] and _provenance(run_dir)["status"] == "done"

    assert "skipping" not in _single(run_dir, "seed=5")  # another config: the marker does not match
    changed = _snapshot(run_dir)
    assert changed["synthetic_ratios.csv"][1] != first["synthetic_ratios.csv"][1]
    assert json.loads((run_dir / "DONE").read_text())["config_hash"] == _provenance(run_dir)["config_hash"]
    assert "seed=5" in _provenance(run_dir)["overrides"]


def test_single_run_failure_exits_nonzero_and_records_it(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    out = _frugal_jobs(tmp_path, "NONE", f"hydra.run.dir={run_dir}", rc=2)  # a FieldError: one line
    assert out.strip().splitlines()[-1].startswith("error: ") and "Traceback" not in out
    assert _provenance(run_dir)["status"] == "failed" and not (run_dir / "DONE").exists()


def test_results_record_no_path_of_the_machine(tmp_path: Path) -> None:
    """A job launched inside a folder writes paths relative to it (and to the Python
    installation): its results can be committed and read on another machine."""
    launch = tmp_path / "launch"
    launch.mkdir()
    args = ("hydra.run.dir=runs/one", *SMALL, "logger=none", "seed=4")
    env = {**_env(tmp_path, "disabled"), "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    for _ in range(2):  # a rerun (skipped) must keep it so
        proc = run_app(*args, cwd=launch, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    job = launch / "runs" / "one"
    for path in [*job.glob(".hydra/*.yaml"), job / "provenance.json", *job.glob("*.log")]:
        text = path.read_text()
        for machine_path in (str(launch), sys.prefix, str(Path(__file__).resolve().parents[2])):
            assert machine_path not in text, (path, machine_path)
    hydra_yaml = (job / ".hydra" / "hydra.yaml").read_text()
    assert "cwd: .\n" in hydra_yaml and "output_dir: runs/one\n" in hydra_yaml
    prov = _provenance(job)
    assert prov["output_dir"] == "runs/one" and prov["argv"][0].startswith(("<python>/", "<source>/"))
    assert "skipping: already done (runs/one" in proc.stdout


def _snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``root`` but Hydra's own logs and multirun.yaml: (mtime, bytes)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name not in ("run.log", "multirun.yaml"):
            out[p.relative_to(root).as_posix()] = (p.stat().st_mtime_ns, p.read_bytes())
    return out


@pytest.mark.slow
def test_the_same_command_resumes_its_own_sweep_folder(tmp_path: Path) -> None:
    """No hydra.sweep.dir: the README's command, run twice from the same folder, finds the same
    sweep (named after its overrides), skips every job and says so; a deleted result is redone."""
    args = ("-m", *SMALL, "seed=1,2", "logger=none")
    env = _env(tmp_path, "disabled")
    first = run_app(*args, cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    (sweep,) = (tmp_path / "multirun").iterdir()
    assert re.fullmatch(r"[A-Za-z0-9._-]+-[0-9a-f]{8}", sweep.name)
    jobs = sorted(p.parent for p in sweep.rglob("DONE"))
    assert len(jobs) == 2
    before = _snapshot(tmp_path)
    again = run_app(*args, cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "skipped 2 of 2 jobs" in again.stdout
    assert _snapshot(tmp_path) == before  # nothing rewritten
    assert [p.name for p in (tmp_path / "multirun").iterdir()] == [sweep.name]
    (jobs[0] / CSVS[1]).unlink()
    third = run_app(*args, cwd=tmp_path, env=env)
    assert third.returncode == 0, third.stdout + third.stderr
    assert "skipped 1 of 2 jobs" in third.stdout and f"{CSVS[1]} is missing" in third.stdout + third.stderr
    assert (jobs[0] / CSVS[1]).is_file()


def test_a_changed_result_or_a_stale_wandb_run_makes_a_job_redone(tmp_path: Path) -> None:
    from ttamer.app import provenance

    out = tmp_path / "job"
    out.mkdir()
    (out / "table.csv").write_text("a\n1\n")
    (out / "wandb" / "offline-run-1").mkdir(parents=True)
    record = provenance.JobRecord(out, "k", [], {}).begin()
    record.finish("done")
    assert provenance.completed(out, "k") == (True, "")
    assert provenance.completed(out, "other")[0] is False
    (out / "table.csv").write_text("a\n2\n")
    assert provenance.completed(out, "k") == (False, "table.csv changed")
    assert provenance.remove_unfinished_wandb_runs(out) == [out / "wandb" / "offline-run-1"]
    assert not (out / "wandb" / "offline-run-1").exists()
