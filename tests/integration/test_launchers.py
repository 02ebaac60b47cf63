"""Multiruns through Hydra's launcher plugins: joblib (parallel processes), submitit's local
executor and a local Ray instance. Each runs a two-job sweep, leaves a DONE marker per job, and
the same command run again skips every job without writing a file in the sweep folder."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from conftest import app_env, run_app

SMALL = ["workload=synthetic", "workload.chains_per_family=2", "workload.lower_bound.n_alphas=4",
         "workload.n_stages=3", "workload.n_states=3", "sweep.lam_grid.num=6", "progress=false",
         "logger=none", "seed=0,1"]  # fmt: skip
LAUNCHERS = {
    "joblib": ("hydra_plugins.hydra_joblib_launcher", ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]),
    "submitit_local": ("hydra_plugins.hydra_submitit_launcher", ["hydra/launcher=submitit_local"]),
    "ray": (
        "hydra_plugins.hydra_ray_launcher",
        ["hydra/launcher=ray", "+hydra.launcher.ray.init.num_cpus=2"],
    ),
}


EXPECTED = {"joblib": "JoblibLauncher", "submitit_local": "LocalLauncher", "ray": "RayLauncher"}


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {
        p.relative_to(folder).as_posix(): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
@pytest.mark.slow
def test_launcher_multirun_then_skip_everything(tmp_path: Path, launcher: str) -> None:
    module, overrides = LAUNCHERS[launcher]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{launcher} launcher not installed (pip install -e '.[launchers]')")
    args = ("-m", *SMALL, *overrides)
    env = app_env(RAY_ENABLE_UV_RUN_RUNTIME_ENV="0")
    first = run_app(*args, cwd=tmp_path, env=env, timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    (sweep,) = [p for p in (tmp_path / "multirun").iterdir() if not p.name.startswith(".")]
    assert len(list(sweep.rglob("DONE"))) == 2
    assert (sweep / "multirun_summary.csv").read_text().count(",done,") == 2
    records = [json.loads(p.read_text()) for p in sweep.rglob("provenance.json")]
    assert {r["launcher"] for r in records} == {EXPECTED[launcher]} and all(r["host"] for r in records)
    before = snapshot(sweep)
    again = run_app(*args, cwd=tmp_path, env=env, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "skipped 2 of 2 jobs" in again.stdout
    assert snapshot(sweep) == before  # not a file written, not a time touched


@pytest.mark.slow
def test_parallel_jobs_needing_one_trace_build_it_once(tmp_path: Path) -> None:
    """Two joblib jobs of one digits trace (they differ only in how it is fitted): one trains
    and caches it, the other waits for the lock and reuses it."""
    if importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher") is None:
        pytest.skip("joblib launcher not installed")
    proc = run_app("-m", "workload=digits", "workload.train.epochs=2", "workload.fit.n_bins=4,6",
                   "workload.n_splits=2", "policy.trace=[recall,static]", "logger=none", "progress=false",
                   f"workload.cache_dir={tmp_path / 'cache'}", "hydra/launcher=joblib",
                   "hydra.launcher.n_jobs=2", cwd=tmp_path, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    traces = sorted(p.name for p in (tmp_path / "cache").glob("digits-*.npz"))
    assert len(traces) == 1
    logs = [p.read_text() for p in (tmp_path / "multirun").rglob("run.log")]
    assert sum("digits trace: 500 samples, 4 stages (computed)" in log for log in logs) == 1
    assert sum("(reused from cache)" in log for log in logs) == 1


@pytest.mark.slow
def test_wandb_offline_runs_stay_one_per_job_with_joblib(tmp_path: Path) -> None:
    if importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher") is None:
        pytest.skip("joblib launcher not installed")
    env = app_env(WANDB_MODE="offline", WANDB_DIR=str(tmp_path / "elsewhere"))
    proc = run_app("-m", *[a for a in SMALL if a != "logger=none"], *LAUNCHERS["joblib"][1], cwd=tmp_path,
                   env=env, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    jobs = sorted(p.parent for p in (tmp_path / "multirun").rglob("DONE"))
    assert len(jobs) == 2
    for job in jobs:
        assert len(list((job / "wandb").glob("offline-run-*"))) == 1, job
