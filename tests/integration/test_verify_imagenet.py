"""``scripts/verify_imagenet.py`` on a generated ImageFolder with a random-weight timm model: the
images are filed under the classes the model predicts for two of every three (and a wrong class
for the third), so the expected top-1 is known by construction; checked against a generated
published table (pass, fail, tolerance, a model missing from the table)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from conftest import app_env
from PIL import Image

from ttamer.workloads.vision.imagenet_timm.cascade import model_seed
from ttamer.workloads.vision.imagenet_timm.data import imagenet_wnids
from ttamer.workloads.vision.imagenet_timm.verify import TopOne

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "verify_imagenet.py"
MODEL = "test_vit"  # published as test_vit.r160_in1k at 160 px
N_IMAGES = 9


def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("verify_imagenet", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def independent_predictions(paths: list[Path], seed: int) -> list[int]:
    """``MODEL``'s random-weight predictions, one image at a time, through timm directly."""
    import timm
    from timm.data import create_transform, resolve_data_config
    from timm.models import get_pretrained_cfg

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(model_seed(seed, MODEL))
        model = timm.create_model(MODEL, pretrained=False).eval()
    data_cfg = resolve_data_config(pretrained_cfg=get_pretrained_cfg(MODEL).to_dict(), use_test_size=True)
    transform = create_transform(**data_cfg, is_training=False)
    with torch.no_grad():
        return [int(model(transform(Image.open(p).convert("RGB"))[None]).argmax()) for p in paths]


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``val/<wnid>/<i>.png``: image i under the model's predicted class, except every third
    image, under the next class: top-1 = 6/9 by construction."""
    root = tmp_path_factory.mktemp("verify")
    rng = np.random.default_rng(1)
    pool = []
    for i in range(N_IMAGES):
        pool.append(root / "pool" / f"{i}.png")
        pool[-1].parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(pool[-1])
    wnids = imagenet_wnids()
    for i, pred in enumerate(independent_predictions(pool, seed=0)):
        label = pred if i % 3 else (pred + 1) % 1000
        (root / "imagenet" / "val" / wnids[label]).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pool[i], root / "imagenet" / "val" / wnids[label] / f"{i}.png")
    return root


def tables(root: Path, top1: float) -> Path:
    folder = root / f"tables-{top1:g}" / "results"
    folder.mkdir(parents=True)
    (folder / "results-imagenet.csv").write_text(
        f"model,img_size,top1,top5,param_count\n{MODEL}.r160_in1k,160,{top1},90.0,0.37\n"
    )
    return folder.parent


def args(data: Path, root: Path, top1: float, *extra: str) -> list[str]:
    """The script's arguments: ImageNet under ``data``, a published table written under ``root``."""
    return [
        "--data-dir", str(data / "imagenet"), "--models", MODEL, "--per-class", "0", "--device", "cpu",
        "--tables-dir", str(tables(root, top1)), "--num-workers", "0", "--batch-size", "4",
        "--random-weights", *extra,
    ]  # fmt: skip


def test_measured_top1_and_the_decision(
    tmp_path: Path, imagenet: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main = script().main
    expected = 100.0 * 6 / N_IMAGES
    assert main(args(imagenet, tmp_path, round(expected, 3))) == 0
    out = capsys.readouterr().out
    assert f"{expected:.3f}" in out and out.rstrip().endswith("OK")
    assert "sampling margin exceeds the tolerance" in out  # 9 images: a margin of tens of points
    assert main(args(imagenet, tmp_path, 60.0)) == 1  # 6.7 points off
    assert "FAIL: test_vit differ by more than 1 points" in capsys.readouterr().out
    assert main(args(imagenet, tmp_path, 61.0, "--tolerance", "6")) == 0
    capsys.readouterr()
    assert main([*args(imagenet, tmp_path, 66.0), "--models", "test_byobnet"]) == 2  # not in the table
    assert "not in the accuracy table" in capsys.readouterr().err


def test_script_runs_as_a_command(tmp_path: Path, imagenet: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args(imagenet, tmp_path, 50.0)], env=app_env(), capture_output=True,
        text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "66.667" in proc.stdout and "FAIL" in proc.stdout


def test_sampling_margin() -> None:
    """1.96 standard errors of a binomial proportion: 80% on 10,000 images -> 0.784 points."""
    r = TopOne("m", 224, 0.95, 10_000, 8_000, 80.0)
    assert r.measured == 80.0
    assert r.margin95 == pytest.approx(0.784)
