"""The embedded quickstart workload (README: workloads): scikit-learn's bundled digits (1,797 grey 8x8
images of the digits 0-9; shipped with scikit-learn, no download) and a small multi-exit CNN.

The images are scaled to [0, 1] and split, stratified by class and seeded, into a training set
and a held-out test set (``test_size`` samples, 500 by default). The network has one stage per
entry of ``model.channels``: stage ``i`` is ``model.convs[i]`` 3x3 convolutions (+ ReLU) with
``model.channels[i]`` output channels, followed by a 2x2 max-pool where ``model.downsample[i]``;
exit head ``i`` is an adaptive average pool to ``model.head_pool[i]`` x ``model.head_pool[i]``
followed by one linear layer (a linear head). The defaults give four exits of growing cost and
accuracy (77.6%, 94.0%, 95.8%, 97.8% test accuracy at seed 0). All exits are trained jointly
(mean of the exits' cross-entropies, :func:`~ttamer.workloads.multi_exit.train_exits`); the
trace holds every exit's class probabilities on the test split and each stage's measured
latency (median ms per request at batch 1) as its cost.

Everything comes from the ``workload`` config dict (see ``conf/workload/digits.yaml``); missing
fields take the defaults of :class:`DigitsConfig`. The same seed gives the same split, the same
weights and the same predictions on the same machine and torch thread count (float reductions
differ between thread counts); latencies are measured, so they vary.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from ttamer.errors import FieldError
from ttamer.traces.trace import Trace
from ttamer.workloads.latency import LatencyConfig
from ttamer.workloads.multi_exit import MultiExitNet, TrainConfig, train_exits
from ttamer.workloads.trace_from_model import model_trace

log = logging.getLogger(__name__)

N_CLASSES = 10
IMAGE_SIDE = 8


@dataclass(frozen=True)
class DigitsModelConfig:
    """The multi-exit CNN: one entry per stage in every field (see the module docstring)."""

    channels: tuple[int, ...] = (8, 16, 16, 64)
    convs: tuple[int, ...] = (1, 1, 1, 2)
    downsample: tuple[bool, ...] = (False, True, True, False)
    head_pool: tuple[int, ...] = (2, 2, 1, 2)

    def __post_init__(self) -> None:
        n = len(self.channels)
        if n == 0:
            raise FieldError("workload.model.channels", "needs at least one stage")
        for name in ("convs", "downsample", "head_pool"):
            if len(getattr(self, name)) != n:
                raise FieldError(
                    f"workload.model.{name}",
                    f"needs one entry per stage ({n}, as channels), got {len(getattr(self, name))}",
                )
        for name in ("channels", "convs", "head_pool"):
            if any(v < 1 for v in getattr(self, name)):
                raise FieldError(f"workload.model.{name}", f"entries must be >= 1, got {getattr(self, name)}")
        if IMAGE_SIDE >> sum(self.downsample) < 1:
            raise FieldError(
                "workload.model.downsample", f"halves the {IMAGE_SIDE}x{IMAGE_SIDE} image too often"
            )

    @property
    def n_stages(self) -> int:
        return len(self.channels)


@dataclass(frozen=True)
class DigitsConfig:
    """The whole workload: split, model, training and latency measurement.

    ``test_size``: held-out samples (an int count, or a fraction in (0, 1)); the trace is made
    on them. ``seed``: the split, the initial weights and the training order."""

    test_size: int | float = 500
    model: DigitsModelConfig = field(default_factory=DigitsModelConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=30, batch_size=64, lr=3e-3))
    latency: LatencyConfig = field(default_factory=lambda: LatencyConfig(warmup=10, repeats=50))
    seed: int = 0

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> DigitsConfig:
        """From the resolved ``workload`` config (plus ``seed``); unknown keys are ignored (the
        trace-study fields live in the same group)."""
        base = cls()
        seed = int(config.get("seed", base.seed))
        model = dict(config.get("model") or {})
        train = dict(config.get("train") or {})
        latency = dict(config.get("latency") or {})
        _reject_unknown("workload.model", model, DigitsModelConfig.__dataclass_fields__)
        _reject_unknown("workload.train", train, TrainConfig.__dataclass_fields__, {"seed"})
        _reject_unknown("workload.latency", latency, LatencyConfig.__dataclass_fields__)
        m = base.model
        model_cfg = DigitsModelConfig(
            channels=_ints(model.get("channels", m.channels)),
            convs=_ints(model.get("convs", m.convs)),
            downsample=tuple(bool(v) for v in model.get("downsample", m.downsample)),
            head_pool=_ints(model.get("head_pool", m.head_pool)),
        )
        t = base.train
        train_cfg = TrainConfig(
            epochs=int(train.get("epochs", t.epochs)),
            batch_size=int(train.get("batch_size", t.batch_size)),
            lr=float(train.get("lr", t.lr)),
            weight_decay=float(train.get("weight_decay", t.weight_decay)),
            freeze_backbone=bool(train.get("freeze_backbone", t.freeze_backbone)),
            max_seconds=float(train.get("max_seconds", t.max_seconds)),
            seed=seed,
        )
        if train_cfg.epochs < 1 or train_cfg.batch_size < 1 or train_cfg.lr <= 0:
            raise FieldError("workload.train", f"epochs, batch_size and lr must be positive, got {train}")
        la = base.latency
        threads = latency.get("threads", la.threads)
        latency_cfg = LatencyConfig(
            batch_sizes=_ints(latency.get("batch_sizes", la.batch_sizes)),
            warmup=int(latency.get("warmup", la.warmup)),
            repeats=int(latency.get("repeats", la.repeats)),
            threads=None if threads is None else int(threads),
        )
        if not latency_cfg.batch_sizes or min(latency_cfg.batch_sizes) < 1 or latency_cfg.repeats < 1:
            raise FieldError("workload.latency", f"batch_sizes and repeats must be >= 1, got {latency}")
        raw = config.get("test_size", base.test_size)
        test_size: int | float = float(raw) if isinstance(raw, float) and raw < 1 else int(raw)
        return cls(test_size=test_size, model=model_cfg, train=train_cfg, latency=latency_cfg, seed=seed)


def _ints(values: Sequence[Any]) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


def _reject_unknown(
    where: str, given: Mapping[str, Any], known: Mapping[str, Any], excluded: set[str] | None = None
) -> None:
    allowed = set(known) - (excluded or set())
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise FieldError(f"{where}.{unknown[0]}", f"unknown field; known: {sorted(allowed)}")


def load_split(
    test_size: int | float, seed: int
) -> tuple[NDArray[np.float32], NDArray[np.int64], NDArray[np.float32], NDArray[np.int64]]:
    """``(x_train, y_train, x_test, y_test)``: images (N, 1, 8, 8) in [0, 1], stratified split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (np.asarray(data.data, dtype=np.float32) / 16.0).reshape(-1, 1, IMAGE_SIDE, IMAGE_SIDE)
    y = np.asarray(data.target, dtype=np.int64)
    n = len(y)
    n_test = round(test_size * n) if isinstance(test_size, float) else test_size
    if not N_CLASSES <= n_test <= n - N_CLASSES:
        raise FieldError(
            "workload.test_size", f"must leave both splits >= {N_CLASSES} of {n} samples, got {test_size}"
        )
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=n_test, stratify=y, random_state=seed)
    return x_tr, y_tr, x_te, y_te


def build_model(cfg: DigitsModelConfig, seed: int) -> MultiExitNet:
    """The multi-exit CNN, its weights initialised from ``seed``."""
    torch.manual_seed(seed)
    segments: list[nn.Module] = []
    heads: list[nn.Module] = []
    c_in = 1
    for c, n_convs, down, pool in zip(cfg.channels, cfg.convs, cfg.downsample, cfg.head_pool, strict=True):
        layers: list[nn.Module] = []
        for _ in range(n_convs):
            layers += [nn.Conv2d(c_in, c, kernel_size=3, padding=1), nn.ReLU()]
            c_in = c
        if down:
            layers.append(nn.MaxPool2d(2))
        segments.append(nn.Sequential(*layers))
        heads.append(
            nn.Sequential(nn.AdaptiveAvgPool2d(pool), nn.Flatten(), nn.Linear(c * pool * pool, N_CLASSES))
        )
    return MultiExitNet(segments, heads)


def untrained_model(config: dict[str, Any]) -> MultiExitNet:
    """The architecture of ``config`` (to load saved weights into)."""
    cfg = DigitsConfig.from_dict(config)
    return build_model(cfg.model, cfg.seed)


def produce(config: dict[str, Any], out_dir: Path) -> Trace:
    """Train the multi-exit CNN on digits and return its trace on the test split."""
    return produce_with_model(config, out_dir)[0]


def produce_with_model(config: dict[str, Any], out_dir: Path) -> tuple[Trace, MultiExitNet]:
    """:func:`produce`, also returning the trained model."""
    cfg = DigitsConfig.from_dict(config)
    x_tr, y_tr, x_te, y_te = load_split(cfg.test_size, cfg.seed)
    model = build_model(cfg.model, cfg.seed)
    start = time.perf_counter()
    history = train_exits(model, torch.from_numpy(x_tr), torch.from_numpy(y_tr), cfg.train)
    train_seconds = time.perf_counter() - start
    names = [f"exit{i + 1}" for i in range(cfg.model.n_stages)]
    meta = {
        "dataset": "sklearn digits (load_digits: 1,797 8x8 grey images, 10 classes), scaled to [0, 1]",
        "source": "ttamer.workloads.vision.digits",
        "n_train": str(len(y_tr)),
        "n_test": str(len(y_te)),
        "split": f"stratified, seed {cfg.seed}",
        "model": json.dumps(asdict(cfg.model)),
        "n_parameters": str(sum(p.numel() for p in model.parameters())),
        "train_epochs": str(len(history)),
        "train_final_loss": f"{history[-1]:.6g}" if history else "nan",
        "train_seconds": f"{train_seconds:.3f}",
    }
    trace, _ = model_trace(model, torch.from_numpy(x_te), torch.from_numpy(y_te), cfg.latency, names, meta)
    accuracy = trace.correct.mean(axis=0)
    per_exit = {n: round(float(a), 6) for n, a in zip(names, accuracy, strict=True)}
    trace = replace(trace, meta={**trace.meta, "test_accuracy": json.dumps(per_exit)})
    log.info(
        "digits: trained %d epochs in %.1f s; test accuracy per exit %s; cost %s %s",
        len(history), train_seconds, np.round(accuracy, 4).tolist(), np.round(trace.cost, 4).tolist(),
        trace.cost_unit,
    )  # fmt: skip
    return trace, model
