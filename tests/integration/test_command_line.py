"""``ttamer-run`` refuses a bad command before running anything: one line naming the key, exit
status 2, no traceback, nothing trained and no folder written."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import app_env, run_app

BAD = [
    (["seed=-1"], "seed"),
    (["-m", "workload=synthetic", "seed=0,1,-2"], "seed"),
    (["seed=abc"], "seed"),
    (["workload=synthetic", "workload.chains_per_family=0"], "workload.chains_per_family"),
    (["-m", "workload=synthetic", "workload.n_states=4,0"], "workload.n_states"),
    (["workload=digits", "workload.train.lr=-1"], "workload.train.lr"),
    (["workload=digits", "workload.test_size=???"], "workload.test_size"),
    (["sweep.lam_grid.num=1"], "sweep.lam_grid.num"),
    (["workload=synthetic", "workload.chains_per_famly=3"], "workload.chains_per_famly"),
    (["workload=nope"], "workload"),
    (["workload=digits", "workload.cache_dir=/etc/hostname"], "workload.cache_dir"),
    (["workload=frugalml", "workload.dataset=../../escape"], "workload.dataset"),
    (["workload=digits", "workload.target=backbone"], "workload.target"),
    (["logger.mode=bogus"], "logger.mode"),
    (["policy.trace=[recall,nope]"], "policy.trace"),
    (["workload=synthetic", "seed=0,1"], "command line"),
    (["seed=[1"], "command line"),
]


@pytest.mark.parametrize(("args", "field"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_commands_stop_with_one_line(tmp_path: Path, args: list[str], field: str) -> None:
    proc = run_app(*args, "logger=none", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}:"), proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not any(tmp_path.iterdir())  # no output or multirun folder was made


def test_a_bad_wandb_mode_in_the_environment_stops_before_running(tmp_path: Path) -> None:
    proc = run_app("workload=synthetic", cwd=tmp_path, env=app_env(WANDB_MODE="bogus"), timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: WANDB_MODE: (environment) must be one of offline, online, disabled, got 'bogus'"
    ]
    assert not any(tmp_path.iterdir())
