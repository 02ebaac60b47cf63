"""The vision early-exit workload (README: workloads): a timm backbone with an exit head after every stage,
trained from scratch on Fashion-MNIST, turned into a trace on the held-out test images.

Data: the IDX files of Fashion-MNIST (``train``/``t10k`` ``-images-idx3-ubyte`` and
``-labels-idx1-ubyte``, gzipped or not) in a configurable folder, by default where the Debian
package ``dataset-fashion-mnist`` puts them. Model: ``timm.create_model(<name>, in_chans=1,
num_classes=10, **kwargs)`` cut at its feature stages (``ttamer.workloads.vision.timm_exits``), all
exits trained jointly (mean cross-entropy) under a wall-clock cap. The trace's cost is each
stage's measured latency at batch size 1; its ``meta`` carries the per-exit test accuracy and
the training time. Plain library code: ``produce`` takes the resolved ``workload`` config dict.
"""

from __future__ import annotations

import gzip
import json
import logging
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from ttamer.errors import FieldError
from ttamer.traces.trace import Trace
from ttamer.workloads.latency import LatencyConfig
from ttamer.workloads.multi_exit import MultiExitNet, TrainConfig, train_exits
from ttamer.workloads.trace_from_model import model_trace
from ttamer.workloads.vision.timm_exits import timm_multi_exit

log = logging.getLogger(__name__)

DEFAULT_DATA_DIR = "/usr/share/datasets/fashion-mnist"
CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
MEAN, STD = 0.2860, 0.3530  # pixel statistics of the Fashion-MNIST training images (in [0, 1])

# IDX element types: the third byte of the magic number.
_IDX_DTYPES: dict[int, str] = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


# --------------------------------------------------------------------------------------- data


def parse_idx(data: bytes, name: str) -> NDArray[Any]:
    """Decode the bytes of an IDX file (magic ``00 00 <type> <ndim>``, then ``ndim`` big-endian
    uint32 sizes, then the elements in C order). Errors name the file ``name``."""
    if len(data) < 4:
        raise FieldError(name, f"is not an IDX file: {len(data)} bytes, shorter than the 4-byte magic number")
    magic = int.from_bytes(data[:4], "big")
    if data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES or data[3] == 0:
        raise FieldError(
            name,
            f"is not an IDX file: bad magic number 0x{magic:08X} (expected 0x0000TTNN: type TT, NN dims)",
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise FieldError(
            name, f"truncated IDX header: {ndim} dimensions need {header} bytes, got {len(data)}"
        )
    shape = tuple(int.from_bytes(data[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise FieldError(
            name,
            f"IDX size mismatch: header says shape {shape} of {dtype.str} ({expected} bytes of data), "
            f"file has {len(data) - header}",
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path: str | Path) -> NDArray[Any]:
    """Read an IDX file, gzipped (by its magic bytes) or not; errors name the file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise FieldError(str(path), f"cannot read: {exc.strerror or exc}") from exc
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise FieldError(str(path), f"corrupt gzip data: {exc}") from exc
    return parse_idx(raw, str(path))


def _find(data_dir: Path, stem: str) -> Path:
    for candidate in (data_dir / f"{stem}.gz", data_dir / stem):
        if candidate.is_file():
            return candidate
    raise FieldError(
        "workload.data_dir",
        f"{data_dir}: no {stem}.gz or {stem} (install the Debian package dataset-fashion-mnist, or point "
        "data_dir at a folder with the Fashion-MNIST IDX files)",
    )


def load_split(data_dir: str | Path, split: str) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """Images (N, H, W) uint8 and labels (N,) of ``split`` (``"train"`` or ``"t10k"``)."""
    if split not in ("train", "t10k"):
        raise ValueError(f"split: must be train or t10k, got {split!r}")
    folder = Path(data_dir).expanduser()
    img_path, lab_path = (
        _find(folder, f"{split}-images-idx3-ubyte"),
        _find(folder, f"{split}-labels-idx1-ubyte"),
    )
    images, labels = read_idx(img_path), read_idx(lab_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise FieldError(str(img_path), f"expected (N, H, W) uint8 images, got {images.shape} {images.dtype}")
    if labels.ndim != 1:
        raise FieldError(str(lab_path), f"expected (N,) labels, got shape {labels.shape}")
    if len(labels) != len(images):
        raise FieldError(
            str(lab_path), f"has {len(labels)} labels but {img_path.name} has {len(images)} images"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= len(CLASSES)):
        raise FieldError(str(lab_path), f"labels must lie in 0..{len(CLASSES) - 1}")
    return images, labels.astype(np.int64)


def subsample(n: int, size: int | None, rng: np.random.Generator, field_name: str) -> NDArray[np.intp]:
    """Indices of a seeded random subset of ``range(n)`` of ``size`` (None: all, in order)."""
    if size is None:
        return np.arange(n)
    if not 1 <= size <= n:
        raise FieldError(field_name, f"must be in 1..{n}, got {size}")
    return np.sort(rng.choice(n, size=size, replace=False))


def to_tensor(images: NDArray[np.uint8], image_size: int) -> torch.Tensor:
    """(N, H, W) uint8 -> (N, 1, S, S) float32, scaled to [0, 1], zero-padded (centred) to
    ``image_size`` and standardised with the training set's mean and std."""
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    h, w = x.shape[-2:]
    if image_size < max(h, w):
        raise FieldError("workload.image_size", f"must be at least {max(h, w)}, got {image_size}")
    top, left = (image_size - h) // 2, (image_size - w) // 2
    x = torch.nn.functional.pad(x, (left, image_size - w - left, top, image_size - h - top))
    return (x - MEAN) / STD


# -------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class FashionMnistConfig:
    """The workload, typed. ``train_subsample`` / ``test_subsample``: seeded random subsets of
    the 60k training and 10k test images (None: all); the trace is made on the test subset.
    ``model_name`` / ``model_kwargs`` go to ``timm.create_model``; ``out_indices`` pick the
    feature stages that get an exit. ``threads``: torch CPU threads while training (None: leave)."""

    data_dir: str = DEFAULT_DATA_DIR
    train_subsample: int | None = None
    test_subsample: int | None = None
    image_size: int = 28
    model_name: str = "resnet18"
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    out_indices: tuple[int, ...] | None = (1, 2, 3, 4)
    head_dropout: float = 0.0
    train: TrainConfig = field(default_factory=TrainConfig)
    threads: int | None = 1
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    seed: int = 0

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> FashionMnistConfig:
        """From the resolved ``workload`` config (see ``conf/workload/fashion_mnist.yaml``)."""
        seed = int(config.get("seed", 0))
        model = dict(config.get("model") or {})
        tr = dict(config.get("train") or {})
        lat = dict(config.get("latency") or {})
        kwargs = {
            k: tuple(v) if isinstance(v, list) else v for k, v in dict(model.get("kwargs") or {}).items()
        }
        out = model.get("out_indices")
        threads = tr.pop("threads", 1)
        known = {"epochs", "batch_size", "lr", "weight_decay", "max_seconds"}
        if set(tr) - known:
            raise FieldError(
                "workload.train", f"unknown fields {sorted(set(tr) - known)}; known: {sorted(known)}"
            )
        default = TrainConfig()
        cap = tr.get("max_seconds", default.max_seconds)
        train = TrainConfig(
            epochs=int(tr.get("epochs", default.epochs)),
            batch_size=int(tr.get("batch_size", default.batch_size)),
            lr=float(tr.get("lr", default.lr)),
            weight_decay=float(tr.get("weight_decay", default.weight_decay)),
            max_seconds=float("inf") if cap is None else float(cap),
            seed=seed,
        )
        latency = LatencyConfig(
            batch_sizes=tuple(int(b) for b in lat.get("batch_sizes", (1, 64))),
            warmup=int(lat.get("warmup", 5)),
            repeats=int(lat.get("repeats", 30)),
            threads=None if lat.get("threads") is None else int(lat["threads"]),
        )

        def opt_int(key: str) -> int | None:
            value = config.get(key)
            return None if value is None else int(value)

        return cls(
            data_dir=str(config.get("data_dir") or DEFAULT_DATA_DIR),
            train_subsample=opt_int("train_subsample"),
            test_subsample=opt_int("test_subsample"),
            image_size=int(config.get("image_size", 28)),
            model_name=str(model.get("name", "resnet18")),
            model_kwargs=kwargs,
            out_indices=None if out is None else tuple(int(i) for i in out),
            head_dropout=float(model.get("head_dropout", 0.0)),
            train=train,
            threads=None if threads is None else int(threads),
            latency=latency,
            seed=seed,
        )


# ------------------------------------------------------------------------------------ workload


def build_model(cfg: FashionMnistConfig) -> tuple[MultiExitNet, list[str]]:
    """The multi-exit network (weights seeded by ``cfg.seed``) and its stages' timm module names."""
    torch.manual_seed(cfg.seed)
    net, stages = timm_multi_exit(
        cfg.model_name,
        num_classes=len(CLASSES),
        in_chans=1,
        out_indices=cfg.out_indices,
        head_dropout=cfg.head_dropout,
        model_kwargs=cfg.model_kwargs,
    )
    return net, [s.module for s in stages]


def exit_accuracy(trace: Trace) -> NDArray[np.float64]:
    """Accuracy of every exit on the trace's samples."""
    return (trace.pred == trace.labels[:, None]).mean(axis=0).astype(np.float64)


def overthinking_fraction(trace: Trace) -> float:
    """Fraction of samples where some earlier exit is right and the last exit is wrong."""
    correct = trace.pred == trace.labels[:, None]
    return float((correct[:, :-1].any(axis=1) & ~correct[:, -1]).mean())


def untrained_model(config: dict[str, Any]) -> MultiExitNet:
    """The architecture of ``config`` (to load saved weights into)."""
    return build_model(FashionMnistConfig.from_dict(config))[0]


def produce(config: dict[str, Any], out_dir: Path) -> Trace:
    """Train the multi-exit timm network on Fashion-MNIST and return its trace on the test set."""
    return produce_with_model(config, out_dir)[0]


def produce_with_model(config: dict[str, Any], out_dir: Path) -> tuple[Trace, MultiExitNet]:
    """:func:`produce`, also returning the trained model."""
    cfg = FashionMnistConfig.from_dict(config)
    rng = np.random.default_rng(cfg.seed)
    t0 = time.perf_counter()
    train_images, train_labels = load_split(cfg.data_dir, "train")
    test_images, test_labels = load_split(cfg.data_dir, "t10k")
    tr = subsample(len(train_labels), cfg.train_subsample, rng, "workload.train_subsample")
    te = subsample(len(test_labels), cfg.test_subsample, rng, "workload.test_subsample")
    x_train, y_train = to_tensor(train_images[tr], cfg.image_size), torch.from_numpy(train_labels[tr])
    x_test, y_test = to_tensor(test_images[te], cfg.image_size), torch.from_numpy(test_labels[te])
    load_seconds = time.perf_counter() - t0

    threads_before = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    try:
        model, modules = build_model(cfg)
        n_params = sum(p.numel() for p in model.parameters())
        log.info(
            "training %s (%d exits at %s, %.2fM parameters) on %d images, %d threads",
            *(cfg.model_name, model.n_stages, modules, n_params / 1e6, len(y_train), torch.get_num_threads()),
        )
        t1 = time.perf_counter()
        history = train_exits(model, x_train, y_train, cfg.train)
        train_seconds = time.perf_counter() - t1
    finally:
        torch.set_num_threads(threads_before)
    capped = train_seconds >= cfg.train.max_seconds
    if capped:
        log.warning(
            "training stopped by max_seconds=%.0f after %d epoch(s)", cfg.train.max_seconds, len(history)
        )
    log.info("trained in %.1f s; epoch losses %s", train_seconds, [round(h, 4) for h in history])

    meta = {
        "source": "Fashion-MNIST test images (ttamer.workloads.vision.fashion_mnist)",
        "data_dir": str(cfg.data_dir),
        "model": cfg.model_name,
        "model_kwargs": json.dumps(dict(cfg.model_kwargs), sort_keys=True),
        "stage_modules": json.dumps(modules),
        "n_parameters": str(n_params),
        "n_train": str(len(y_train)),
        "n_test": str(len(y_test)),
        "image_size": str(cfg.image_size),
        "train_seconds": f"{train_seconds:.3f}",
        "train_threads": str(cfg.threads),
        "train_epochs_run": str(len(history)),
        "train_epoch_losses": json.dumps([round(h, 6) for h in history]),
        "train_stopped_by_max_seconds": str(capped).lower(),
        "data_load_seconds": f"{load_seconds:.3f}",
        "seed": str(cfg.seed),
    }
    names = [f"stage{i + 1}" for i in range(model.n_stages)]
    trace, _ = model_trace(model, x_test, y_test, cfg.latency, stage_names=names, meta=meta)
    acc = exit_accuracy(trace)
    extra = {
        "exit_test_accuracy": json.dumps([round(float(a), 6) for a in acc]),
        "overthinking_fraction": f"{overthinking_fraction(trace):.6f}",
    }
    log.info("exit test accuracy %s; stage latency (batch %d) %s ms", [f"{a:.4f}" for a in acc],
             cfg.latency.batch_sizes[0], [f"{c:.3f}" for c in trace.cost])  # fmt: skip
    return replace(trace, meta={**trace.meta, **extra}), model
