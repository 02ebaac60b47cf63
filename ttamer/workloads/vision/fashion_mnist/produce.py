"""The Fashion-MNIST workload's model and trace (README: workloads): a timm backbone with an exit
head after every stage, trained from scratch on Fashion-MNIST, turned into a trace on the
held-out test images.

Model: ``timm.create_model(<name>, in_chans=1, num_classes=10, **kwargs)`` cut at its feature
stages (:mod:`ttamer.workloads.vision.timm_exits`), all exits trained jointly (mean
cross-entropy) under a wall-clock cap. The trace's cost is each stage's measured latency at
batch size 1; its ``meta`` carries the per-exit test accuracy and the training time.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray

from ttamer.serving.runtime import StagedModel, TorchStages
from ttamer.traces.trace import Trace
from ttamer.workloads.multi_exit import MultiExitNet, TrainConfig, train_exits
from ttamer.workloads.trace_from_model import check_trace_labels, model_trace
from ttamer.workloads.vision.fashion_mnist.config import FashionMnistConfig
from ttamer.workloads.vision.fashion_mnist.data import CLASSES, load_split, subsample, to_tensor
from ttamer.workloads.vision.timm_exits import timm_multi_exit

log = logging.getLogger(__name__)


def build_model(config: FashionMnistConfig, seed: int) -> tuple[MultiExitNet, list[str]]:
    """The multi-exit network (weights seeded by ``seed``) and its stages' timm module names."""
    m = config.model
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in m.kwargs.items()}
    torch.manual_seed(seed)
    net, stages = timm_multi_exit(
        m.name, num_classes=len(CLASSES), in_chans=1, out_indices=m.out_indices,
        head_dropout=m.head_dropout, model_kwargs=kwargs,
    )  # fmt: skip
    return net, [s.module for s in stages]


def train_config(config: FashionMnistConfig, seed: int) -> TrainConfig:
    """The training loop's settings: ``config.train`` with the seed (null cap: none)."""
    t = config.train
    cap = float("inf") if t.max_seconds is None else float(t.max_seconds)
    return TrainConfig(
        epochs=t.epochs, batch_size=t.batch_size, lr=t.lr, weight_decay=t.weight_decay, max_seconds=cap,
        seed=seed,
    )  # fmt: skip


def exit_accuracy(trace: Trace) -> NDArray[np.float64]:
    """Accuracy of every exit on the trace's samples."""
    return (trace.pred == trace.labels[:, None]).mean(axis=0).astype(np.float64)


def overthinking_fraction(trace: Trace) -> float:
    """Fraction of samples where some earlier exit is right and the last exit is wrong."""
    correct = trace.pred == trace.labels[:, None]
    return float((correct[:, :-1].any(axis=1) & ~correct[:, -1]).mean())


@dataclass(frozen=True)
class Split:
    """The training and test tensors (images (N, 1, S, S), labels (N,)) and the seconds taken."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    seconds: float


def load_data(config: FashionMnistConfig, seed: int) -> Split:
    """The seeded training and test subsets as tensors (the training subset is drawn first)."""
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    train_images, train_labels = load_split(config.data_dir, "train")
    test_images, test_labels = load_split(config.data_dir, "t10k")
    tr = subsample(len(train_labels), config.train_subsample, rng, "workload.train_subsample")
    te = subsample(len(test_labels), config.test_subsample, rng, "workload.test_subsample")
    return Split(
        to_tensor(train_images[tr], config.image_size), torch.from_numpy(train_labels[tr]),
        to_tensor(test_images[te], config.image_size), torch.from_numpy(test_labels[te]),
        time.perf_counter() - t0,
    )  # fmt: skip


def train_model(
    config: FashionMnistConfig, seed: int, data: Split
) -> tuple[MultiExitNet, list[str], list[float], float]:
    """The trained network, its stage modules, the epoch losses and the training seconds (with
    ``train.threads`` torch threads, restored afterwards)."""
    threads_before = torch.get_num_threads()
    if config.train.threads is not None:
        torch.set_num_threads(config.train.threads)
    try:
        model, modules = build_model(config, seed)
        n_params = sum(p.numel() for p in model.parameters())
        log.info(
            "training %s (%d exits at %s, %.2fM parameters) on %d images, %d threads",
            config.model.name, model.n_stages, modules, n_params / 1e6, len(data.y_train),
            torch.get_num_threads(),
        )  # fmt: skip
        t1 = time.perf_counter()
        history = train_exits(model, data.x_train, data.y_train, train_config(config, seed))
        seconds = time.perf_counter() - t1
    finally:
        torch.set_num_threads(threads_before)
    log.info("trained in %.1f s; epoch losses %s", seconds, [round(h, 4) for h in history])
    return model, modules, history, seconds


def untrained_model(config: FashionMnistConfig, seed: int) -> MultiExitNet:
    """The architecture of ``config`` (to load saved weights into)."""
    return build_model(config, seed)[0]


def produce(config: FashionMnistConfig, seed: int, out_dir: Path) -> Trace:
    """Train the multi-exit timm network on Fashion-MNIST and return its trace on the test set."""
    return produce_with_model(config, seed, out_dir)[0]


def produce_with_model(config: FashionMnistConfig, seed: int, out_dir: Path) -> tuple[Trace, MultiExitNet]:
    """:func:`produce`, also returning the trained model."""
    del out_dir  # the latency table travels in the trace's meta
    data = load_data(config, seed)
    model, modules, history, train_seconds = train_model(config, seed, data)
    cap = train_config(config, seed).max_seconds
    capped = train_seconds >= cap
    if capped:
        log.warning("training stopped by max_seconds=%.0f after %d epoch(s)", cap, len(history))
    meta = {
        "source": "Fashion-MNIST test images (ttamer.workloads.vision.fashion_mnist)",
        "data_dir": str(config.data_dir),
        "model": config.model.name,
        "model_kwargs": json.dumps(dict(config.model.kwargs), sort_keys=True),
        "stage_modules": json.dumps(modules),
        "n_parameters": str(sum(p.numel() for p in model.parameters())),
        "n_train": str(len(data.y_train)),
        "n_test": str(len(data.y_test)),
        "image_size": str(config.image_size),
        "train_seconds": f"{train_seconds:.3f}",
        "train_threads": str(config.train.threads),
        "train_epochs_run": str(len(history)),
        "train_epoch_losses": json.dumps([round(h, 6) for h in history]),
        "train_stopped_by_max_seconds": str(capped).lower(),
        "data_load_seconds": f"{data.seconds:.3f}",
        "seed": str(seed),
    }
    names = [f"stage{i + 1}" for i in range(model.n_stages)]
    trace, _ = model_trace(model, data.x_test, data.y_test, config.latency, stage_names=names, meta=meta)
    acc = exit_accuracy(trace)
    extra = {
        "exit_test_accuracy": json.dumps([round(float(a), 6) for a in acc]),
        "overthinking_fraction": f"{overthinking_fraction(trace):.6f}",
    }
    log.info("exit test accuracy %s; stage latency (batch %d) %s ms", [f"{a:.4f}" for a in acc],
             config.latency.batch_sizes[0], [f"{c:.3f}" for c in trace.cost])  # fmt: skip
    return replace(trace, meta={**trace.meta, **extra}), model


def held_out_requests(
    config: FashionMnistConfig, seed: int, model: MultiExitNet, trace: Trace
) -> tuple[StagedModel, torch.Tensor]:
    """The served model and the trace's samples as requests (standardised images (N, 1, S, S),
    in the trace's order); a ValueError when they are not the trace's (labels differ)."""
    rng = np.random.default_rng(seed)
    train_labels = load_split(config.data_dir, "train")[1]
    images, labels = load_split(config.data_dir, "t10k")
    subsample(len(train_labels), config.train_subsample, rng, "workload.train_subsample")  # as in load_data
    te = subsample(len(labels), config.test_subsample, rng, "workload.test_subsample")
    check_trace_labels(labels[te], trace)
    return TorchStages(model), to_tensor(images[te], config.image_size)
