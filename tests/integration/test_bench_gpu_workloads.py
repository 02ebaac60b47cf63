"""``scripts/bench_gpu_workloads.py`` on a CPU with tiny models: every check runs end to end on
the generated stand-ins, the reordered cascade runs no model again and costs what the first
cascade measured, and the tables record the speed options and the device used."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "bench_gpu_workloads.py"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, pd.DataFrame]:
    out = tmp_path_factory.mktemp("gpu")
    proc = run("--device", "cpu", "--size", "tiny", "--precision", "bf16", "--no-compile", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    stem = out / "bench_gpu_workloads-cpu-bf16"
    return pd.read_csv(f"{stem}-runs.csv"), pd.read_csv(f"{stem}-stages.csv")


def test_every_check_runs_on_the_device_asked_for(tables: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    runs, stages = tables
    assert list(runs["check"]) == [
        "imagenet_cascade", "imagenet_cascade_reordered", "imagenet_exits_cnn", "imagenet_exits_vit",
        "glue_bert", "glue_gpt2",
    ]  # fmt: skip
    assert set(runs["device"]) == {"cpu"} and set(runs["precision"]) == {"bf16"}
    assert (runs["wall_s"] > 0).all() and (runs["n_samples"] > 0).all()
    assert set(stages["precision"]) == {"bf16"} and set(stages["compile"]) == {False}
    assert (stages["median_ms"] > 0).all() and set(stages["batch_size"]) == {1, 4}


def test_reordered_cascade_reuses_every_model(tables: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    runs, stages = tables
    by = runs.set_index("check")
    assert by.loc["imagenet_cascade", "models_run"] == 2
    assert by.loc["imagenet_cascade_reordered", "models_run"] == 0
    first = np.array(by.loc["imagenet_cascade", "cost_ms"].split(), dtype=float)
    again = np.array(by.loc["imagenet_cascade_reordered", "cost_ms"].split(), dtype=float)
    np.testing.assert_array_equal(again, first[::-1])
    names = stages[stages["check"] == "imagenet_cascade_reordered"].sort_values("stage")["stage_name"]
    assert list(dict.fromkeys(names)) == ["test_vit", "resnet10t"]


def test_text_checks_time_every_layer(tables: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    runs, stages = tables
    for check in ("glue_bert", "glue_gpt2"):
        rows = stages[stages["check"] == check]
        assert sorted(set(rows["stage_name"])) == ["layer1", "layer2", "layer3"]
        assert rows["head_median_ms"].notna().all() and (rows["head_median_ms"] > 0).all()
    assert runs.set_index("check").loc["glue_bert", "stages"] == "layer1 > layer2 > layer3"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--device", "cpu", "--only", "imagenet_cascade,nope"), "--only: unknown checks ['nope']"),
        (("--device", "cpu", "--only", ","), "--only: unknown checks []"),
        (("--device", "bogus"), "--device: not a torch device: 'bogus'"),
        (("--device", "meta"), "--device: cpu or cuda[:<index>], got 'meta'"),
    ],
)
def test_bad_arguments_are_refused_in_one_line(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    proc = run(*args, "--out", str(tmp_path))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith(message)
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where CUDA is missing")
def test_cuda_refused_where_missing(tmp_path: Path) -> None:
    proc = run("--device", "cuda", "--out", str(tmp_path))
    expected = "--device: 'cuda' asked for, but CUDA is not available here"
    assert proc.returncode == 2 and proc.stderr.strip() == expected


def test_device_check_dry_run_on_the_cpu(tmp_path: Path) -> None:
    """The device check's whole flow on a CPU with tiny sizes: every step runs, the tables land
    in $RESULTS/all, and $OUT gets what the device tool can bring back (at most 8 plain files with
    plain names), the archive holding every table."""
    import os
    import re
    import tarfile

    out, results = tmp_path / "out", tmp_path / "device"
    out.mkdir()
    env = {
        **os.environ, "DEVICE": "cpu", "SIZE": "tiny", "CHECK_ARGS": "--no-compile --only glue_gpt2",
        "SOLVER_ARGS": "--sizes 20:3 --main 20:3 --repeats 1", "SERVING": "off", "RESULTS": str(results),
        "OUT": str(out),
    }  # fmt: skip
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "device_check.sh")], env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    made = sorted(p.name for p in (results / "all").iterdir())
    assert made == [
        "bench_gpu_workloads-cpu-bf16-runs.csv", "bench_gpu_workloads-cpu-bf16-stages.csv",
        "bench_gpu_workloads-cpu-fp32-runs.csv", "bench_gpu_workloads-cpu-fp32-stages.csv",
        "bench_solver_cpu.json",
    ]  # fmt: skip
    back = sorted(p.name for p in out.iterdir())
    assert len(back) <= 8 and all(re.fullmatch(r"[A-Za-z0-9._-]+", n) for n in back)
    assert back == sorted([*made[:4], "device_check.tgz"])
    with tarfile.open(out / "device_check.tgz") as tar:
        assert sorted(Path(n).name for n in tar.getnames() if n.count("/")) == made
    eager = pd.read_csv(results / "all" / "bench_gpu_workloads-cpu-fp32-runs.csv")
    assert set(eager["check"]) == {"glue_gpt2"}
