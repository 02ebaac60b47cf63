"""The Fashion-MNIST workload: the IDX reader, the config, determinism, and an end-to-end Hydra run
on a tiny subsample (real files when installed, else a small IDX folder written here)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import run_app

from ttamer.errors import FieldError
from ttamer.model.skip_costs import skip_structure
from ttamer.traces.trace import load_trace
from ttamer.workloads.latency import LatencyConfig
from ttamer.workloads.vision.fashion_mnist.config import (
    FashionMnistConfig,
    FashionMnistModelConfig,
    FashionMnistTrainConfig,
)
from ttamer.workloads.vision.fashion_mnist.data import (
    DEFAULT_DATA_DIR,
    load_split,
    parse_idx,
    read_idx,
    subsample,
    to_tensor,
)
from ttamer.workloads.vision.fashion_mnist.produce import (
    build_model,
    overthinking_fraction,
    produce,
    train_config,
)

ROOT = Path(__file__).resolve().parents[2]
REAL = Path(DEFAULT_DATA_DIR)
HAVE_REAL = all(
    (REAL / f"{s}-{k}.gz").is_file()
    for s in ("train", "t10k")
    for k in ("images-idx3-ubyte", "labels-idx1-ubyte")
)

_TYPE = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype(">i2"): 0x0B, np.dtype(">i4"): 0x0C,
         np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}  # fmt: skip


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file's bytes: big-endian header and data."""
    dt = array.dtype if array.dtype.itemsize == 1 else array.dtype.newbyteorder(">")
    head = bytes([0, 0, _TYPE[dt], array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return head + np.ascontiguousarray(array, dtype=dt).tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> Path:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_fashion_folder(folder: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """A Fashion-MNIST-like folder: 28x28 images whose bright row band gives the class."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(labels):
            images[i, 2 * c + 4 : 2 * c + 7, 4:24] = 230
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels)
    return folder


# ------------------------------------------------------------------------------ the IDX reader


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("dtype", ["u1", ">i4", ">f4"])
def test_idx_round_trip(tmp_path: Path, gz: bool, dtype: str) -> None:
    array = (np.arange(2 * 3 * 5) - 7).reshape(2, 3, 5).astype(np.dtype(dtype)) if dtype != "u1" else (
        np.arange(30, dtype=np.uint8).reshape(2, 3, 5)
    )  # fmt: skip
    back = read_idx(write_idx(tmp_path / "a-idx3-ubyte", array, gz=gz))
    assert back.shape == (2, 3, 5)
    np.testing.assert_array_equal(back, array)
    assert back.dtype.isnative


def test_idx_labels_are_one_dimensional(tmp_path: Path) -> None:
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    back = read_idx(write_idx(tmp_path / "l.gz", labels))
    np.testing.assert_array_equal(back, labels)


def test_idx_bad_magic_names_the_file(tmp_path: Path) -> None:
    data = bytearray(idx_bytes(np.zeros((2, 4, 4), np.uint8)))
    data[0] = 0x12
    path = tmp_path / "bad-images-idx3-ubyte"
    path.write_bytes(gzip.compress(bytes(data)))
    with pytest.raises(
        FieldError, match=r"bad-images-idx3-ubyte: is not an IDX file: bad magic number 0x12000803"
    ):
        read_idx(path)


@pytest.mark.parametrize("cut", [-1, 1])
def test_idx_size_mismatch_is_reported(tmp_path: Path, cut: int) -> None:
    data = idx_bytes(np.zeros((3, 4, 4), np.uint8))
    data = data[:-1] if cut < 0 else data + b"\x00"  # truncated, or trailing bytes
    path = tmp_path / "short.gz"
    path.write_bytes(gzip.compress(data))
    with pytest.raises(FieldError, match=r"short\.gz: IDX size mismatch: header says shape \(3, 4, 4\)"):
        read_idx(path)


def test_idx_truncated_header_and_corrupt_gzip(tmp_path: Path) -> None:
    with pytest.raises(FieldError, match="truncated IDX header"):
        parse_idx(bytes([0, 0, 8, 3, 0, 0, 0, 2]), "hdr")
    with pytest.raises(FieldError, match="shorter than the 4-byte magic"):
        parse_idx(b"\x00\x00", "tiny")
    path = tmp_path / "broken.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((5, 4, 4), np.uint8)))[:30])
    with pytest.raises(FieldError, match=r"broken\.gz: corrupt gzip data"):
        read_idx(path)


def test_load_split_checks_files(tmp_path: Path) -> None:
    folder = write_fashion_folder(tmp_path / "fm", 20, 10)
    images, labels = load_split(folder, "t10k")
    assert images.shape == (10, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10,) and labels.max() <= 9
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(9, np.uint8))
    with pytest.raises(FieldError, match=r"has 9 labels but t10k-images-idx3-ubyte\.gz has 10 images"):
        load_split(folder, "t10k")
    with pytest.raises(FieldError, match=r"workload\.data_dir: .*nowhere: no train-images-idx3-ubyte\.gz"):
        load_split(tmp_path / "nowhere", "train")


@pytest.mark.skipif(
    not HAVE_REAL, reason=f"Fashion-MNIST IDX files not in {REAL} (apt-get install dataset-fashion-mnist)"
)
def test_real_files_have_the_published_shapes() -> None:
    for split, n in (("train", 60000), ("t10k", 10000)):
        images, labels = load_split(REAL, split)
        assert images.shape == (n, 28, 28)
        assert labels.shape == (n,)
        np.testing.assert_array_equal(np.bincount(labels), np.full(10, n // 10))  # balanced classes


# -------------------------------------------------------------------------- config and tensors


def test_subsample_and_padding() -> None:
    rng = np.random.default_rng(0)
    idx = subsample(100, 10, rng, "workload.train_subsample")
    assert len(set(idx.tolist())) == 10 and list(idx) == sorted(idx)
    np.testing.assert_array_equal(subsample(5, None, rng, "x"), np.arange(5))
    with pytest.raises(FieldError, match=r"workload\.test_subsample: must be in 1\.\.100"):
        subsample(100, 101, rng, "workload.test_subsample")
    x = to_tensor(np.full((2, 28, 28), 255, np.uint8), 32)
    assert x.shape == (2, 1, 32, 32)
    assert float(x[0, 0, 0, 0]) < float(x[0, 0, 2, 2])  # the zero padding surrounds the image
    with pytest.raises(FieldError, match=r"workload\.image_size"):
        to_tensor(np.zeros((1, 28, 28), np.uint8), 27)


def test_config_defaults_and_errors() -> None:
    cfg = FashionMnistConfig()
    assert cfg.name == "fashion_mnist" and cfg.reference == "last_stage" and cfg.data_dir == DEFAULT_DATA_DIR
    train = train_config(cfg, 3)
    assert train.max_seconds == 600 and train.seed == 3 and train.epochs == 4
    uncapped = FashionMnistConfig(train=FashionMnistTrainConfig(max_seconds=None))
    assert train_config(uncapped, 0).max_seconds == float("inf")
    assert cfg.latency.batch_sizes[0] == 1 and len(cfg.latency.batch_sizes) >= 2
    assert len(cfg.model.out_indices) >= 4
    with pytest.raises(FieldError, match=r"^threads: must be >= 1 or null, got 0"):
        FashionMnistTrainConfig(threads=0)
    with pytest.raises(FieldError, match=r"^out_indices: needs at least one"):
        FashionMnistModelConfig(out_indices=())
    with pytest.raises(FieldError, match=r"^test_subsample: must be >= 1 or null, got 0"):
        FashionMnistConfig(test_subsample=0)
    with pytest.raises(FieldError, match=r"^image_size: must be at least 28, got 27"):
        FashionMnistConfig(image_size=27)


def test_the_app_builds_the_defaults_and_names_bad_keys() -> None:
    from hydra import compose, initialize_config_dir
    from hydra.errors import ConfigCompositionException

    from ttamer.app.configs import build_run, register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        overrides = ["workload=fashion_mnist", "logger=none"]
        assert build_run(compose("config", overrides)).workload == FashionMnistConfig()
        with pytest.raises(FieldError, match=r"^workload\.train\.threads: must be >= 1"):
            build_run(compose("config", [*overrides, "workload.train.threads=0"]))
        with pytest.raises(ConfigCompositionException, match="epoch"):
            compose("config", [*overrides, "workload.train.epoch=1"])


def test_model_kwargs_lists_reach_timm_as_tuples() -> None:
    model = FashionMnistModelConfig(kwargs={"channels": [4, 4, 8, 8], "stem_type": "deep", "stem_width": 4})
    net, modules = build_model(FashionMnistConfig(model=model), 0)
    assert net.n_stages == 4 and modules == ["layer1", "layer2", "layer3", "layer4"]
    assert net.heads[3](torch.zeros(2, 8, 1, 1)).shape == (2, 10)  # the last stage's width: 8


# ------------------------------------------------------------------------ model, determinism


def _tiny_config(data_dir: Path | str) -> FashionMnistConfig:
    return FashionMnistConfig(
        data_dir=str(data_dir), train_subsample=200, test_subsample=100, image_size=28,
        model=FashionMnistModelConfig(
            name="resnet18", out_indices=(1, 2, 3, 4),
            kwargs={"channels": [8, 8, 16, 16], "stem_type": "deep", "stem_width": 4},
        ),
        train=FashionMnistTrainConfig(epochs=1, batch_size=50, lr=0.003, max_seconds=60, threads=1),
        latency=LatencyConfig(batch_sizes=(1, 8), warmup=1, repeats=2, threads=1),
    )  # fmt: skip


def test_produce_is_deterministic_given_the_seed(tmp_path: Path) -> None:
    folder = write_fashion_folder(tmp_path / "fm", 300, 150)
    a = produce(_tiny_config(folder), 0, tmp_path)
    b = produce(_tiny_config(folder), 0, tmp_path)
    c = produce(_tiny_config(folder), 1, tmp_path)
    assert a.n_stages == 4 and a.n_samples == 100
    assert list(a.stage_names) == ["stage1", "stage2", "stage3", "stage4"]
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.probs, b.probs)
    assert a.probs is not None and c.probs is not None
    assert not np.array_equal(a.labels, c.labels) or not np.array_equal(a.probs, c.probs)
    acc = json.loads(a.meta["exit_test_accuracy"])
    np.testing.assert_allclose(acc, (a.pred == a.labels[:, None]).mean(axis=0))
    assert float(a.meta["train_seconds"]) > 0 and a.meta["train_stopped_by_max_seconds"] == "false"
    assert a.meta["n_train"] == "200" and a.meta["model"] == "resnet18"
    assert 0.0 <= float(a.meta["overthinking_fraction"]) == overthinking_fraction(a) <= 1.0
    assert a.cost.shape == (4,) and (a.cost > 0).all()
    s = skip_structure(a)  # one backbone; each head's measured share of its stage
    assert s.group.tolist() == [0, 0, 0, 0] and (s.head > 0).all() and (s.head <= a.cost).all()


# --------------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_hydra_run_end_to_end(tmp_path: Path) -> None:
    data_dir = REAL if HAVE_REAL else write_fashion_folder(tmp_path / "fm", 600, 300)
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    args = [
        "workload=fashion_mnist", f"hydra.run.dir={run_dir}",
        f"workload.cache_dir={cache}", "logger=none", "progress=false", f"workload.data_dir={data_dir}",
        "workload.train_subsample=600", "workload.test_subsample=300", "workload.train.epochs=1",
        "workload.model.kwargs.channels=[8,8,16,16]", "workload.model.kwargs.stem_width=4",
        "workload.latency.repeats=3", "workload.latency.warmup=1", "workload.n_splits=2",
    ]  # fmt: skip
    proc = run_app(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    (trace_file,) = cache.glob("fashion_mnist-*.npz")
    trace = load_trace(trace_file)
    assert trace.n_samples == 300 and trace.n_stages == 4
    assert trace.cost_unit.startswith("ms per request (batch 1")
    assert len(json.loads(trace.meta["exit_test_accuracy"])) == 4
    assert trace.meta["n_train"] == "600" and float(trace.meta["train_seconds"]) > 0

    (bench,) = run_dir.glob("benchmark-infer-fp32-*-fashion_mnist.csv")
    table = pd.read_csv(bench)
    assert sorted(set(table["batch_size"])) == [1, 64]
    assert list(table[table["batch_size"] == 1]["stage_name"]) == ["stage1", "stage2", "stage3", "stage4"]
    batch1 = table[table["batch_size"] == 1].sort_values("stage")["median_ms"].to_numpy()
    np.testing.assert_allclose(trace.cost, batch1)

    points = pd.read_csv(run_dir / "fashion_mnist_points.csv")
    assert set(points["policy"]) >= {
        "recall",
        "no_recall",
        "max_softmax",
        "entropy",
        "patience",
        "static",
        "oracle",
    }
    static = points[points["policy"] == "static"].groupby("knob")["mean_cost"].first()
    np.testing.assert_allclose(static.to_numpy(), np.cumsum(trace.cost))
    summary = pd.read_csv(run_dir / "fashion_mnist_summary.csv")
    assert "saving_at_delta_1" in set(summary["metric"])
    assert (run_dir / "fig_fashion_mnist.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / ".cache").exists()  # the cache went where it was told
