"""Running the ``imagenet_timm`` workload's models (README: workloads): the device, the speed
options (mixed precision, memory layout, torch.compile, cuDNN autotuning), the stages' outputs
accumulated batch by batch, latency measurement (synchronised, warmed up, compiled graphs built
before timing), and the trace they make."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from numpy.typing import NDArray

from ttamer.errors import FieldError
from ttamer.traces.trace import Trace
from ttamer.workloads.base import resolve_path
from ttamer.workloads.latency import environment, measure_stage_latency, warm_up
from ttamer.workloads.multi_exit import MultiExitNet
from ttamer.workloads.speed import precision_autocast
from ttamer.workloads.vision.imagenet_timm.config import ImageNetTimmConfig


@dataclass(frozen=True)
class Job:
    """One trace to make: the ``config``, the ``seed`` (subsets and head training), the torch
    ``device`` and the ImageNet folder ``data_dir`` (resolved from the launch folder)."""

    config: ImageNetTimmConfig
    seed: int
    device: torch.device
    data_dir: Path

    @classmethod
    def start(cls, config: ImageNetTimmConfig, seed: int) -> Job:
        """The job of ``config``; with ``cudnn_benchmark`` on a CUDA device, cuDNN autotuning
        is switched on (for the rest of the process)."""
        device = resolve_device(config.device)
        if config.cudnn_benchmark and device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        return cls(config, seed, device, resolve_path(config.data_dir))

    @property
    def precision(self) -> str:
        """The autocast precision in effect (:func:`run_precision`)."""
        return run_precision(self.config, self.device)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The job's autocast context (:func:`precision_autocast`)."""
        return precision_autocast(self.device, self.precision)

    @property
    def tables_dir(self) -> Path | None:
        """timm's results tables folder (None when the config names none)."""
        return resolve_path(self.config.tables_dir) if self.config.tables_dir else None

    @property
    def b0(self) -> int:
        """The batch size whose latency is the trace's cost."""
        return self.config.latency.batch_sizes[0]


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA when available, else the CPU; otherwise a torch device name."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise FieldError("device", f"not a torch device: {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FieldError("device", f"{name!r} asked for, but CUDA is not available here")
    return device


def run_precision(config: ImageNetTimmConfig, device: torch.device) -> str:
    """``config.precision``; fp32 with ``amp: true`` on CUDA means fp16 (as before the
    precision field: ``amp`` has no effect on the CPU)."""
    if config.precision != "fp32":
        return config.precision
    return "fp16" if config.amp and device.type == "cuda" else "fp32"


def to_device(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """``x`` on ``device``; NHWC when ``channels_last`` (4-D inputs)."""
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


@dataclass
class Outputs:
    """Per-sample outputs of stages, accumulated batch by batch."""

    pred: list[NDArray[np.int64]] = field(default_factory=list)
    conf: list[NDArray[np.float64]] = field(default_factory=list)
    probs: list[NDArray[np.float32]] = field(default_factory=list)
    labels: list[NDArray[np.int64]] = field(default_factory=list)

    def add(self, logits: Sequence[torch.Tensor], y: torch.Tensor, keep_probs: bool) -> None:
        """``logits``: one (B, C) tensor per stage."""
        p = torch.stack([torch.softmax(lg.float(), dim=-1) for lg in logits], dim=1)  # (B, n, C)
        conf, pred = p.max(dim=2)
        self.pred.append(pred.cpu().numpy().astype(np.int64))
        self.conf.append(conf.cpu().double().numpy())
        if keep_probs:
            self.probs.append(p.cpu().numpy())
        self.labels.append(y.cpu().numpy().astype(np.int64))

    def arrays(
        self,
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64], NDArray[np.float64] | None]:
        labels, pred, conf = np.concatenate(self.labels), np.concatenate(self.pred), np.concatenate(self.conf)
        probs = None
        if self.probs:
            p = np.concatenate(self.probs).astype(np.float64)
            probs = p / p.sum(axis=2, keepdims=True)
        return labels, pred, np.clip(conf, 0.0, 1.0), probs


def measure(net: MultiExitNet, example: torch.Tensor, job: Job) -> pd.DataFrame:
    """The latency table of ``net``'s stages on ``example`` images (see
    :func:`~ttamer.workloads.latency.measure_stage_latency`), with the run's precision and
    layout; with ``compile`` or ``cudnn_benchmark`` every stage first runs once at every batch
    size (graphs compiled, kernels autotuned) before the timed protocol and its own warm-up.
    Columns ``precision``, ``compile`` and ``channels_last`` record the options."""
    cfg = job.config
    x = to_device(example, job.device, cfg.channels_last)
    with job.autocast():
        if cfg.compile or cfg.cudnn_benchmark:
            warm_up(net, x, cfg.latency.batch_sizes)
        table = measure_stage_latency(net, x, cfg.latency)
    return table.assign(precision=job.precision, compile=cfg.compile, channels_last=cfg.channels_last)


def run_info(job: Job, space: str) -> dict[str, str]:
    """The trace's meta about the run: mode, data, weights, device and environment."""
    cfg, device = job.config, job.device
    return {
        "source": f"imagenet_timm ({cfg.mode})",
        "data_dir": str(job.data_dir),
        "label_space": space,
        "pretrained": str(cfg.pretrained),
        "run_device": str(device),
        "amp": str(job.precision != "fp32"),
        "precision": job.precision,
        "compile": str(cfg.compile),
        "cudnn_benchmark": str(cfg.cudnn_benchmark and device.type == "cuda"),
        "channels_last": str(cfg.channels_last),
        **{f"env_{k}": v for k, v in environment(device).items()},
    }


def build_trace(
    out: Outputs,
    cost: Sequence[float] | NDArray[np.float64],
    names: Sequence[str],
    cost_unit: str,
    table: pd.DataFrame,
    meta: dict[str, str],
    b0: int,
) -> Trace:
    """The trace of the accumulated outputs, with the latency table (at every batch size) and
    its first batch size in ``meta``."""
    labels, pred, conf, probs = out.arrays()
    info = {**meta, "latency": table.to_json(orient="records"), "latency_batch_size": str(b0)}
    return Trace.build(
        labels, pred, conf, np.asarray(cost, dtype=np.float64), list(names), cost_unit, probs, info
    )
