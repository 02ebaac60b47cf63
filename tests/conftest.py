"""Shared test set-up: the helper modules beside this file (``_chains``, ``_frugal``, ...) are
importable from ``tests/unit`` and ``tests/integration`` (pytest puts this folder on ``sys.path``
for its conftest), and :func:`run_app` is the one way tests start ``ttamer-run`` in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# a synthetic study small enough for a test run (a few seconds): tiny families, few alphas
SMALL_SYNTHETIC = [
    "workload=synthetic",
    "workload.chains_per_family=3",
    "workload.lower_bound.n_alphas=6",
    "workload.lower_bound.n_stages=[2,3]",
    "workload.n_stages=4",
    "workload.n_states=4",
    "sweep.lam_grid.num=12",
    "progress=false",
]


def app_env(**extra: str) -> dict[str, str]:
    """The environment of a subprocess run: W&B never online or chatty, full Hydra errors, one
    torch thread (runs stay fast on a busy machine; no result here depends on it)."""
    base = {"WANDB_MODE": "disabled", "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "1", "OMP_NUM_THREADS": "1"}
    return {**os.environ, **base, **extra}


def run_app(
    *overrides: str,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
    module: str = "ttamer.app.run",
    args: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m <module> <args> <overrides>`` (default: the ``ttamer-run`` entry point)
    and return the finished process (text output captured); ``env`` defaults to :func:`app_env`."""
    cmd = [sys.executable, "-m", module, *args, *overrides]
    return subprocess.run(
        cmd, cwd=cwd, env=dict(env) if env is not None else app_env(), capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests under ``tests/integration`` carry the ``integration`` marker (``-m "not integration"``
    runs the unit tests alone); ``gpu`` tests are skipped where CUDA is missing."""
    no_gpu = pytest.mark.skip(reason="no CUDA device (gpu test)")
    cuda: bool | None = None
    for item in items:
        if "integration" in Path(str(item.fspath)).parts:
            item.add_marker(pytest.mark.integration)
        if item.get_closest_marker("gpu") is not None:
            cuda = _cuda_available() if cuda is None else cuda
            if not cuda:
                item.add_marker(no_gpu)
