"""The digits workload's model and trace (README: workloads): scikit-learn's bundled digits
(1,797 grey 8x8 images of the digits 0-9; shipped with scikit-learn, no download) and a small
multi-exit CNN.

The images are scaled to [0, 1] and split, stratified by class and seeded, into a training set
and a held-out test set (``test_size`` samples, 500 by default). The network has one stage per
entry of ``model.channels`` (:class:`~ttamer.workloads.vision.digits.config.DigitsModelConfig`);
exit head ``i`` is an adaptive average pool followed by one linear layer. The defaults give four
exits of growing cost and accuracy (77.6%, 94.0%, 95.8%, 97.8% test accuracy at seed 0). All
exits are trained jointly (mean of the exits' cross-entropies,
:func:`~ttamer.workloads.multi_exit.train_exits`); the trace holds every exit's class
probabilities on the test split and each stage's measured latency (median ms per request at
batch 1) as its cost.

The same seed gives the same split, the same weights and the same predictions on the same
machine and torch thread count (float reductions differ between thread counts); latencies are
measured, so they vary.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from ttamer.errors import FieldError
from ttamer.serving.runtime import StagedModel, TorchStages
from ttamer.traces.trace import Trace
from ttamer.workloads.multi_exit import MultiExitNet, TrainConfig, train_exits
from ttamer.workloads.trace_from_model import check_trace_labels, model_trace
from ttamer.workloads.vision.digits.config import IMAGE_SIDE, N_CLASSES, DigitsConfig, DigitsModelConfig

log = logging.getLogger(__name__)


def load_split(
    test_size: int | float, seed: int
) -> tuple[NDArray[np.float32], NDArray[np.int64], NDArray[np.float32], NDArray[np.int64]]:
    """``(x_train, y_train, x_test, y_test)``: images (N, 1, 8, 8) in [0, 1], stratified split
    (``test_size``: a count, or a fraction in (0, 1))."""
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


def train_config(config: DigitsConfig, seed: int) -> TrainConfig:
    """The training loop's settings: ``config.train`` with the seed (no cap, the whole model)."""
    t = config.train
    return TrainConfig(
        epochs=t.epochs, batch_size=t.batch_size, lr=t.lr, weight_decay=t.weight_decay, seed=seed
    )


def untrained_model(config: DigitsConfig, seed: int) -> MultiExitNet:
    """The architecture of ``config`` (to load saved weights into)."""
    return build_model(config.model, seed)


def produce(config: DigitsConfig, seed: int, out_dir: Path) -> Trace:
    """Train the multi-exit CNN on digits and return its trace on the test split."""
    return produce_with_model(config, seed, out_dir)[0]


def produce_with_model(config: DigitsConfig, seed: int, out_dir: Path) -> tuple[Trace, MultiExitNet]:
    """:func:`produce`, also returning the trained model."""
    del out_dir  # the latency table travels in the trace's meta
    x_tr, y_tr, x_te, y_te = load_split(config.test_size, seed)
    model = build_model(config.model, seed)
    start = time.perf_counter()
    history = train_exits(model, torch.from_numpy(x_tr), torch.from_numpy(y_tr), train_config(config, seed))
    train_seconds = time.perf_counter() - start
    names = [f"exit{i + 1}" for i in range(config.model.n_stages)]
    meta = {
        "dataset": "sklearn digits (load_digits: 1,797 8x8 grey images, 10 classes), scaled to [0, 1]",
        "source": "ttamer.workloads.vision.digits",
        "n_train": str(len(y_tr)),
        "n_test": str(len(y_te)),
        "split": f"stratified, seed {seed}",
        "model": json.dumps(asdict(config.model)),
        "n_parameters": str(sum(p.numel() for p in model.parameters())),
        "train_epochs": str(len(history)),
        "train_final_loss": f"{history[-1]:.6g}" if history else "nan",
        "train_seconds": f"{train_seconds:.3f}",
    }
    x, y = torch.from_numpy(x_te), torch.from_numpy(y_te)
    trace, _ = model_trace(model, x, y, config.latency, names, meta)
    accuracy = trace.correct.mean(axis=0)
    per_exit = {n: round(float(a), 6) for n, a in zip(names, accuracy, strict=True)}
    trace = replace(trace, meta={**trace.meta, "test_accuracy": json.dumps(per_exit)})
    log.info(
        "digits: trained %d epochs in %.1f s; test accuracy per exit %s; cost %s %s",
        len(history), train_seconds, np.round(accuracy, 4).tolist(), np.round(trace.cost, 4).tolist(),
        trace.cost_unit,
    )  # fmt: skip
    return trace, model


def held_out_requests(
    config: DigitsConfig, seed: int, model: MultiExitNet, trace: Trace
) -> tuple[StagedModel, torch.Tensor]:
    """The served model and the trace's samples as requests (images (N, 1, 8, 8), in the
    trace's order); a ValueError when they are not the trace's (labels differ)."""
    _, _, x_te, y_te = load_split(config.test_size, seed)
    check_trace_labels(y_te, trace)
    return TorchStages(model), torch.from_numpy(x_te)
