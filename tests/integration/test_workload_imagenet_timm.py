"""The ``imagenet_timm`` workload on a tiny generated ImageFolder (3 ImageNet wnid classes x 8
random 32x32 PNGs per split) with random-weight tiny timm models: both modes end to end through
the Hydra app, the measured cost source in process, and the clear errors."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import run_app
from PIL import Image

from ttamer.errors import FieldError
from ttamer.evaluation.scoring import COLUMNS
from ttamer.model.skip_costs import skip_structure
from ttamer.traces.trace import Trace, load_trace
from ttamer.workloads.latency import LatencyConfig
from ttamer.workloads.trace_from_model import latency_table_from_trace
from ttamer.workloads.vision.imagenet_timm.config import HeadTraining, ImageNetTimmConfig
from ttamer.workloads.vision.imagenet_timm.data import read_split
from ttamer.workloads.vision.imagenet_timm.produce import imagenet_trace, produce

WNIDS = ("n01440764", "n01443537", "n01484850")  # ImageNet-1k classes 0, 1, 2
PER_CLASS = 8
FAST: dict[str, Any] = {
    "num_workers": 0, "batch_size": 8, "latency": LatencyConfig(batch_sizes=(2, 4), warmup=1, repeats=2),
    "tables_dir": None, "pretrained": False,
}  # fmt: skip
BENCH_NAME = "benchmark-infer-amp-nhwc-pt240-cu124-rtx3090.csv"
# made-up throughputs (images/s): test_vit at 160 px, resnet10t at 176 px (its default input size)
THROUGHPUT = {("test_vit", 160): 2000.0, ("resnet10t", 176): 400.0, ("resnet10t", 224): 250.0}


def write_imagenet(root: Path) -> Path:
    """``root/imagenet/{train,val}/<wnid>/<i>.png``; class c has its colour channel c at 255, so
    that exit heads can learn it."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c, wnid in enumerate(WNIDS):
            folder = root / "imagenet" / split / wnid
            folder.mkdir(parents=True)
            for i in range(PER_CLASS):
                img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                img[..., c] = 255
                Image.fromarray(img).save(folder / f"{i}.png")
    return root / "imagenet"


def write_tables(root: Path) -> Path:
    """A timm-results folder without ``historical/``: the default benchmark falls back to the
    newest RTX 3090 AMP NHWC file of ``results/``."""
    (root / "results").mkdir(parents=True)
    rows = [f"{m},{s},{v},1.0,1024" for (m, s), v in THROUGHPUT.items()]
    header = "model,infer_img_size,infer_samples_per_sec,infer_step_time,infer_batch_size"
    (root / "results" / BENCH_NAME).write_text("\n".join([header, *rows]) + "\n")
    (root / "results" / "results-imagenet.csv").write_text(
        "model,img_size,top1,top5,param_count\ntest_vit.r160_in1k,160,41.0,67.0,0.37\n"
    )
    return root


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_imagenet(root)
    write_tables(root / "timm-results")
    return root


@pytest.fixture
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_imagenet(tmp_path: Path, data_root: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    return run_app(
        "workload=imagenet_timm", f"data_root={data_root}",
        "workload.pretrained=false", "workload.num_workers=0", "workload.batch_size=8",
        "workload.latency.batch_sizes=[1,4]", "workload.latency.warmup=1", "workload.latency.repeats=2",
        "workload.n_splits=2", "workload.fit.n_bins=3", "policy.trace=[recall,max_softmax,static]",
        "logger=none", "progress=false", f"hydra.run.dir={tmp_path / 'run'}",
        f"workload.cache_dir={tmp_path / 'cache'}", *overrides,
    )  # fmt: skip


def cached(tmp_path: Path) -> Trace:
    files = list((tmp_path / "cache").glob("imagenet_timm-*.npz"))
    assert len(files) == 1, files
    return load_trace(files[0])


def check_results(run_dir: Path, trace: Trace) -> None:
    points = pd.read_csv(run_dir / "imagenet_timm_points.csv")
    assert list(points.columns) == list(COLUMNS)
    assert set(points["policy"]) == {"recall", "max_softmax", "static"}
    assert (points["cost_unit"] == trace.cost_unit).all()
    static = points[points["policy"] == "static"].groupby("knob")["mean_cost"].first()
    np.testing.assert_allclose(static.to_numpy(), np.cumsum(trace.cost))
    assert (run_dir / "imagenet_timm_summary.csv").is_file()
    assert (run_dir / "fig_imagenet_timm.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bench = list(run_dir.glob("benchmark-infer-*-imagenet_timm.csv"))
    assert len(bench) == 1
    latency = pd.read_csv(bench[0])
    assert list(latency["stage_name"].unique()) == list(trace.stage_names)
    assert set(latency["batch_size"]) == {1, 4}


@pytest.mark.slow
def test_cascade_end_to_end_with_timm_table_costs(tmp_path: Path, data_root: Path) -> None:
    proc = run_imagenet(
        tmp_path, data_root, "workload.mode=cascade", "workload.models=[test_vit,resnet10t]",
        "cost=timm_table",  # the cost group sets workload.cost_source
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    trace = cached(tmp_path)
    assert trace.stage_names == ("test_vit", "resnet10t")
    # each model's own cost, from the table at the model's own input size (160 and 176 px)
    np.testing.assert_allclose(trace.cost, [1000.0 / 2000.0, 1000.0 / 400.0])
    assert trace.cost_unit == f"ms per image (timm benchmark: {BENCH_NAME})"
    assert trace.meta["stage1_input_size"] == "3x160x160"
    assert trace.meta["stage2_input_size"] == "3x176x176"
    assert trace.meta["stage1_table_top1"] == "41.000"
    assert "stage2_table_top1" not in trace.meta  # resnet10t is not in the accuracy table
    assert trace.n_samples == 3 * PER_CLASS
    np.testing.assert_array_equal(np.sort(trace.labels), np.repeat([0, 1, 2], PER_CLASS))
    assert trace.probs is not None and trace.probs.shape == (3 * PER_CLASS, 2, 1000)
    np.testing.assert_array_equal(trace.pred, trace.probs.argmax(axis=2))
    check_results(tmp_path / "run", trace)
    config = json.loads(trace.meta["config"])
    assert config["mode"] == "cascade" and config["cost_source"] == "timm_table"
    s = skip_structure(trace)  # separate models: skipping one skips all of it
    assert s.group.tolist() == [0, 1] and s.head.tolist() == [0.0, 0.0]


@pytest.mark.slow
def test_exits_end_to_end_trains_heads(tmp_path: Path, data_root: Path) -> None:
    proc = run_imagenet(
        tmp_path, data_root, "workload.mode=exits", "workload.model=test_convnext",
        "workload.final_head=linear", "workload.train.epochs=12", "workload.train.lr=0.05",
        "workload.reference=last_stage",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    trace = cached(tmp_path)
    assert trace.n_stages == 4  # test_convnext has 4 feature stages
    assert trace.stage_names == ("stages.0", "stages.1", "stages.2", "stages.3")
    # the colour signal is learnable from every stage: trained heads beat chance (1/3) by far
    assert trace.correct.mean(axis=0).min() >= 0.8, trace.correct.mean(axis=0)
    losses = [float(v) for v in trace.meta["train_loss"].split(",")]
    assert len(losses) == 12 and losses[-1] < 0.5 * losses[0]
    # costs are the measured per-stage medians at batch 1
    table = latency_table_from_trace(trace)
    at1 = table[table["batch_size"] == 1].sort_values("stage")["median_ms"].to_numpy()
    np.testing.assert_allclose(trace.cost, at1)
    assert trace.cost_unit.startswith("ms per request (batch 1")
    s = skip_structure(trace)  # one backbone; each head's share measured at batch 1
    assert s.group.tolist() == [0, 0, 0, 0]
    heads = table[table["batch_size"] == 1].sort_values("stage")["head_median_ms"].to_numpy()
    np.testing.assert_allclose(s.head, np.minimum(heads, trace.cost))
    check_results(tmp_path / "run", trace)


def test_cascade_measured_costs(tmp_path: Path, data_root: Path, one_thread: None) -> None:
    cfg = ImageNetTimmConfig(
        **FAST, data_dir=str(data_root / "imagenet"), mode="cascade", models=("test_vit", "test_byobnet"),
        cost_source="measured", store_probs=False, val_per_class=5, cache_dir=str(tmp_path),
    )  # fmt: skip
    trace = imagenet_trace(cfg, 0)
    assert trace.probs is None and trace.n_samples == 15
    table = latency_table_from_trace(trace)
    per_batch = table[table["batch_size"] == 2].sort_values("stage")["median_ms"].to_numpy()
    np.testing.assert_allclose(trace.cost, per_batch / 2)  # ms per image at the first batch size
    assert trace.cost_unit == "ms per image (measured, batch 2, cpu)"
    assert float(trace.meta["stage1_measured_ms_per_image"]) == pytest.approx(trace.cost[0], rel=1e-5)


def test_subsets_are_per_class_and_seeded(data_root: Path) -> None:
    a, space = read_split(data_root / "imagenet", "train", 3, None, "auto", seed=0)
    b, _ = read_split(data_root / "imagenet", "train", 3, None, "auto", seed=1)
    assert space == "imagenet"
    np.testing.assert_array_equal(a.labels, np.repeat([0, 1, 2], 3))
    assert a.paths != b.paths
    again, _ = read_split(data_root / "imagenet", "train", 3, None, "auto", seed=0)
    assert again.paths == a.paths
    val, _ = read_split(data_root / "imagenet", "val", None, None, "auto", seed=0)
    assert len(val.paths) == 3 * PER_CLASS  # null: every image


def test_folder_labels(tmp_path: Path, data_root: Path) -> None:
    """Class folders that are not ImageNet wnids: labels in sorted folder order; a 1000-class
    model cannot serve them."""
    for i, name in enumerate(("cat", "dog")):
        (tmp_path / "val" / name).mkdir(parents=True)
        Image.fromarray(np.full((8, 8, 3), 40 * i, dtype=np.uint8)).save(tmp_path / "val" / name / "a.png")
    split, space = read_split(tmp_path, "val", None, None, "auto", seed=0)
    assert space == "folder" and split.classes == ("cat", "dog")
    np.testing.assert_array_equal(split.labels, [0, 1])
    with pytest.raises(FieldError, match=r"^labels: imagenet labels need ImageNet-1k wnid folders"):
        read_split(tmp_path, "val", None, None, "imagenet", seed=0)
    cfg = ImageNetTimmConfig(**FAST, data_dir=str(tmp_path), models=("test_vit",), cache_dir=str(tmp_path))
    with pytest.raises(FieldError, match=r"^models: test_vit predicts 1000 classes.*need 2"):
        imagenet_trace(cfg, 0)


def test_config_errors_name_the_field() -> None:
    """Bad values fail when the config is built, naming the field (the app prefixes
    ``workload.``); the defaults are the YAML's."""
    assert ImageNetTimmConfig().mode == "cascade" and ImageNetTimmConfig().train == HeadTraining()
    with pytest.raises(FieldError, match=r"^cost_source: must be one of"):
        ImageNetTimmConfig(cost_source="guess")
    with pytest.raises(FieldError, match=r"^cost_source: timm_table costs whole models"):
        ImageNetTimmConfig(mode="exits", cost_source="timm_table")
    with pytest.raises(FieldError, match=r"^models: the cascade needs at least one"):
        ImageNetTimmConfig(models=())
    with pytest.raises(FieldError, match=r"^val_per_class: must be an integer >= 1 or null, got 0"):
        ImageNetTimmConfig(val_per_class=0)
    with pytest.raises(FieldError, match=r"^data_dir: must name the ImageNet folder"):
        ImageNetTimmConfig(data_dir="")
    with pytest.raises(FieldError, match=r"^repeats: must be >= 1"):
        LatencyConfig(repeats=0)
    with pytest.raises(FieldError, match=r"^epochs: must be an integer >= 0"):
        HeadTraining(epochs=-1)


def test_clear_errors(tmp_path: Path, data_root: Path) -> None:
    """Errors found while the trace is made name the config field as typed on the command line
    (``workload.<field>``)."""
    base = ImageNetTimmConfig(**FAST, data_dir=str(data_root / "imagenet"), cache_dir=str(tmp_path / "cache"))

    def run(**changes: Any) -> Trace:
        return produce(replace(base, **changes), 0, tmp_path)

    with pytest.raises(FieldError, match=r"^workload\.data_dir: .*is not a folder.*ImageFolder layout"):
        run(data_dir=str(tmp_path / "none"))
    with pytest.raises(FieldError, match=r"^workload\.models: 'no_such_net' is not a timm model"):
        run(models=("no_such_net",))
    with pytest.raises(FieldError, match=r"^workload\.model: 'resnet10t\.nope': Invalid pretrained tag"):
        run(mode="exits", model="resnet10t.nope")
    tables = {"cost_source": "timm_table", "tables_dir": str(data_root / "timm-results"), "val_per_class": 1}
    with pytest.raises(
        FieldError, match=r"^workload\.models: .*'test_byobnet'.*not in the benchmark table .*rtx3090"
    ):
        run(**tables, models=("test_byobnet",))
    with pytest.raises(FieldError, match=r"^workload\.benchmark_file: table 'nope\.csv' not found"):
        run(**tables, models=("test_vit",), benchmark_file="nope.csv")
    with pytest.raises(FieldError, match=r"^workload\.tables_dir: cost_source timm_table needs the folder"):
        run(cost_source="timm_table")
