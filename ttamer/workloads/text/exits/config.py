"""The fields every text multi-exit workload shares (README: workloads): tokenisation, pooling,
the exit heads' training and the per-stage latency measurement. Plain dataclasses, no torch:
the implementation (:mod:`ttamer.workloads.text.exits.trace`) turns the training fields
into a :class:`~ttamer.workloads.multi_exit.TrainConfig`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ttamer.errors import FieldError, check_bounds
from ttamer.fitting.chain import FitConfig
from ttamer.workloads.base import WorkloadConfig
from ttamer.workloads.latency import INFERENCE_PRECISIONS, LatencyConfig

POOLINGS = ("auto", "mean", "last", "cls")  # auto: last for GPT-2, mean for encoders
# how the exits are trained (README: workloads): heads on a frozen backbone; the backbone and
# every exit fine-tuned jointly; DeeBERT's two stages (backbone + last exit, then the others)
RECIPES = ("heads", "finetune", "deebert")
# autocast while fine-tuning on CUDA (auto: bf16 where the GPU has it, else fp16); fp32 on a CPU
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda", "mps")  # or cuda:<index>; auto: cuda when available, else cpu


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning the backbone (recipe ``finetune``, and stage 1 of ``deebert``), as GLUE
    fine-tuning is usually done: AdamW with ``backbone_lr`` for the transformer and ``head_lr``
    for the exit heads (no weight decay on biases and normalisation weights), the learning rate
    rising linearly from 0 over the first ``warmup_fraction`` of the optimiser steps and then
    falling linearly to 0 at the last step, gradients clipped to a total L2 norm of
    ``max_grad_norm`` (None: no clipping), ``epochs`` passes over mini-batches of
    ``batch_size`` rows, autocast ``precision`` on CUDA (:data:`PRECISIONS`)."""

    epochs: int = 3
    batch_size: int = 32
    backbone_lr: float = 2e-5
    head_lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    max_grad_norm: float | None = 1.0
    precision: str = "auto"

    def __post_init__(self) -> None:
        check_bounds(self, ("epochs", "weight_decay"), 0)
        check_bounds(self, ("batch_size",), 1)
        check_bounds(self, ("backbone_lr", "head_lr"), 0, strict=True)
        check_bounds(self, ("max_grad_norm",), 0, strict=True, optional=True)
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise FieldError("warmup_fraction", f"must lie in [0, 1), got {self.warmup_fraction}")
        if self.precision not in PRECISIONS:
            raise FieldError("precision", f"must be one of {' | '.join(PRECISIONS)}, got {self.precision!r}")


@dataclass(frozen=True)
class TextTrainConfig:
    """How the exits are trained: ``recipe`` (:data:`RECIPES`).

    ``heads``: exit-head training, the mean of the exits' cross-entropies, AdamW, mini-batches of
    ``batch_size`` rows, ``epochs`` passes; with ``freeze_backbone`` on cached per-layer features,
    else followed by joint training of everything at ``lr``. ``finetune``: the backbone and every
    exit trained jointly (the mean of the exits' cross-entropies) with the ``finetune`` settings
    (:class:`FinetuneConfig`). ``deebert``: stage 1 fine-tunes the backbone and the last exit
    (its cross-entropy only) with the ``finetune`` settings; stage 2 freezes the backbone and
    trains the other exits' heads as ``heads`` does (``epochs``, ``batch_size``, ``lr``,
    ``weight_decay``). Every recipe stops early after ``max_seconds`` of wall-clock time per
    training loop (whole seconds, None: no cap; an int so that ``600`` keeps its trace cache key).
    With recipe ``heads`` the trace cache key holds neither ``recipe`` nor ``finetune``
    (they do not act), so earlier traces are still found."""

    # heads only, on cached per-layer features; False: fine-tune all (slow on a CPU)
    freeze_backbone: bool = True
    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.001
    weight_decay: float = 0.01
    max_seconds: int | None = 600
    recipe: str = "heads"
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    def __post_init__(self) -> None:
        check_bounds(self, ("epochs", "weight_decay"), 0)
        check_bounds(self, ("batch_size",), 1)
        check_bounds(self, ("max_seconds",), 0, optional=True)
        check_bounds(self, ("lr",), 0, strict=True)
        if self.recipe not in RECIPES:
            raise FieldError("recipe", f"must be one of {' | '.join(RECIPES)}, got {self.recipe!r}")


@dataclass(frozen=True)
class TextExitsConfig(WorkloadConfig):
    """A text workload with an exit after every transformer layer (frozen backbone by default).

    ``max_length``: tokens per text (truncation). ``pooling``: :data:`POOLINGS`.
    ``feature_batch_size``: rows per forward pass (features, probabilities). ``device``:
    :data:`DEVICES` (``auto``: cuda when available, else cpu; the trace cache key holds the
    device it resolves to, and the trace's cost unit names the device used). ``threads``:
    torch CPU threads for the whole run (None: as is;
    ``latency.threads`` still applies while timing). ``train``: :class:`TextTrainConfig`;
    ``latency``: :class:`~ttamer.workloads.latency.LatencyConfig` (batch sizes 1 and 32; the
    first gives the trace's cost; its ``threads``: torch CPU threads while timing, None: the
    run's). Inference speed (README: workloads): ``precision`` fp32 | bf16 | fp16 autocast
    while computing the exits' outputs and timing them (fine-tuning has its own
    ``train.finetune.precision``); ``compile``: torch.compile each stage for the evaluation pass
    and the timing (graphs warmed before timing); both are keyed only when set. The trace
    study's defaults here: savings at the last exit's accuracy (``reference``), 6 confidence
    bins per stage (``fit.n_bins``)."""

    cache_dir: str = ".cache/ttamer/traces/trace"
    reference: str = "last_stage"
    fit: FitConfig = field(default_factory=lambda: FitConfig(n_bins=6))
    max_length: int = 128
    pooling: str = "auto"
    feature_batch_size: int = 64
    device: str = "cpu"
    threads: int | None = None
    train: TextTrainConfig = field(default_factory=TextTrainConfig)
    latency: LatencyConfig = field(default_factory=lambda: LatencyConfig(batch_sizes=(1, 32)))
    precision: str = "fp32"
    compile: bool = False

    keyed_unless_default: ClassVar[Mapping[str, Any]] = {"precision": "fp32", "compile": False}

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.precision not in INFERENCE_PRECISIONS:
            allowed = " | ".join(INFERENCE_PRECISIONS)
            raise FieldError("precision", f"must be one of {allowed}, got {self.precision!r}")
        if self.pooling not in POOLINGS:
            raise FieldError("pooling", f"must be one of {' | '.join(POOLINGS)}, got {self.pooling!r}")
        check_bounds(self, ("max_length", "feature_batch_size"), 1)
        check_bounds(self, ("threads",), 1, optional=True)
        if not (self.device in DEVICES or self.device.startswith("cuda:")):
            raise FieldError("device", f"must be auto, cpu, cuda, cuda:<index> or mps, got {self.device!r}")

    def trace_key(self, seed: int) -> dict[str, Any]:
        """:meth:`WorkloadConfig.trace_key` with ``device`` resolved (``auto`` becomes the device
        the run will use: traces timed on a GPU and on a CPU differ) and, with recipe ``heads``,
        without the fine-tuning fields (they do not act; earlier keys stay)."""
        key = super().trace_key(seed)
        key["device"] = resolve_device_name(self.device)
        train = dict(key["train"])
        if train["recipe"] == "heads":
            del train["recipe"], train["finetune"]
        key["train"] = train
        return key


def resolve_device_name(device: str) -> str:
    """``device``, with ``auto`` resolved: ``cuda`` when torch sees a CUDA device, else ``cpu``
    (imports torch only for ``auto``)."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
