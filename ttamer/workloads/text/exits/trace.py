"""A text multi-exit run, from a backbone and texts to a trace: tokenise, build the exits,
train them, compute every exit's probabilities on the evaluation texts, time every stage on
real requests, and assemble the trace with its measured cost per stage."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd
import torch
from numpy.typing import NDArray
from torch import nn

from ttamer.errors import FieldError
from ttamer.model.skip_costs import skip_meta
from ttamer.traces.trace import Trace
from ttamer.workloads.latency import (
    LatencyConfig,
    environment,
    head_cost_per_request,
    measure_stage_latency,
    warm_up,
)
from ttamer.workloads.multi_exit import MultiExitNet, TrainConfig, exit_probabilities
from ttamer.workloads.speed import compiled, precision_autocast
from ttamer.workloads.text.exits.config import TextExitsConfig, TextTrainConfig, resolve_device_name
from ttamer.workloads.text.exits.finetune import (
    deebert_stage1,
    deebert_stage2,
    finetune_exits,
    set_standardisation,
)
from ttamer.workloads.text.exits.heads import build_text_exits, train_text_exits
from ttamer.workloads.text.exits.tokens import PAIR_SEPARATOR, TokenBatch, length_batches, tokenize

log = logging.getLogger(__name__)

# texts, second segments (sentence pairs) or None, and labels (N,) of a split
LabelledTexts = tuple[Sequence[str], Sequence[str] | None, NDArray[np.int64]]


def train_config(config: TextTrainConfig, seed: int) -> TrainConfig:
    """The training loop's config: ``max_seconds`` None becomes no cap (infinity)."""
    cap = float("inf") if config.max_seconds is None else config.max_seconds
    return TrainConfig(
        epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, weight_decay=config.weight_decay,
        freeze_backbone=config.freeze_backbone, max_seconds=cap, seed=seed,
    )  # fmt: skip


def check_device(device: str) -> None:
    """FieldError ``workload.device`` when CUDA is asked for but not available (``auto`` never
    fails: it falls back to the CPU)."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise FieldError("workload.device", f"{device!r} asked for but CUDA is not available")


def run_device(device: str) -> torch.device:
    """The torch device of the config's ``device`` (``auto``: cuda when available, else cpu)."""
    return torch.device(resolve_device_name(device))


def train_text_model(
    model: MultiExitNet, x: TokenBatch, y: torch.Tensor, config: TextExitsConfig, seed: int
) -> list[float]:
    """Train the exits of ``model`` on ``x``, ``y`` by ``config.train.recipe`` (README:
    workloads): ``heads`` as before (heads on cached features, or then jointly with
    ``freeze_backbone`` False); ``finetune``: the heads' standardisation from the pretrained
    features, then backbone and exits jointly; ``deebert``: the same standardisation, stage 1
    (backbone + last exit), stage 2 (the other heads on the frozen fine-tuned backbone).
    Returns the loss per epoch of every loop run, in order."""
    train, batch = config.train, config.feature_batch_size
    cap = float("inf") if train.max_seconds is None else float(train.max_seconds)
    if train.recipe == "heads":
        if train.freeze_backbone:
            model.segments.requires_grad_(False)
        return train_text_exits(model, x, y, train_config(train, seed), batch)
    set_standardisation(model, x, batch)
    if train.recipe == "finetune":
        return finetune_exits(model, x, y, train.finetune, seed, cap)
    history = deebert_stage1(model, x, y, train.finetune, seed, cap)
    return history + deebert_stage2(model, x, y, train_config(train, seed), batch)


def latency_rows(lengths: NDArray[np.int64], size: int = 64, seed: int = 0) -> NDArray[np.int64]:
    """Rows to time: ``size`` rows drawn at random, the first one of median length (batch 1
    times that request alone; larger batches repeat the rows to fill the batch)."""
    rng = np.random.default_rng(seed)
    median = int(np.argsort(lengths, kind="stable")[len(lengths) // 2])
    rest = rng.permutation(np.setdiff1d(np.arange(len(lengths)), [median]))[: max(size - 1, 0)]
    return np.concatenate([[median], rest]).astype(np.int64)


@dataclass(frozen=True)
class InferenceSpeed:
    """How the evaluation pass and the timing run: autocast ``precision`` (fp32 | bf16 | fp16)
    and ``compile`` (torch.compile each stage; graphs warmed before timing)."""

    precision: str = "fp32"
    compile: bool = False


@torch.no_grad()
def text_exit_outputs(
    model: MultiExitNet, x: TokenBatch, latency: LatencyConfig, seed: int = 0, batch_size: int = 64,
    speed: InferenceSpeed = InferenceSpeed(),
) -> tuple[NDArray[np.float64], pd.DataFrame, NDArray[np.int64]]:  # fmt: skip
    """Class probabilities of every exit on ``x`` (N, n, C), computed stage by stage (batches of
    similar length); the per-stage latency table of ``measure_stage_latency`` on real requests
    of ``x`` (with columns ``precision`` and ``compile``); and the rows of ``x`` timed
    (:func:`latency_rows`). Both passes run at ``speed``."""
    runner = compiled(model, speed.compile)
    parts, order = [], []
    with precision_autocast(x.device, speed.precision):
        for idx in length_batches(x, batch_size):
            batch = cast(torch.Tensor, x[torch.as_tensor(idx)])
            parts.append(exit_probabilities(runner, batch, batch_size=len(idx)))
            order.append(idx)
        rows = latency_rows(x.lengths.cpu().numpy(), max(latency.batch_sizes), seed)
        example = cast(torch.Tensor, x[torch.as_tensor(rows)])
        if speed.compile:
            warm_up(runner, example, latency.batch_sizes)
        table = measure_stage_latency(runner, example, latency)
    probs = np.concatenate(parts)[np.argsort(np.concatenate(order))]
    return probs, table.assign(precision=speed.precision, compile=speed.compile), rows


def assemble_trace(
    labels: NDArray[np.int64],
    probs: NDArray[np.float64],
    table: pd.DataFrame,
    batch_size: int,
    stage_names: Sequence[str],
    meta: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    groups: Sequence[int] | None = None,
) -> Trace:
    """A trace from every stage's probabilities (N, n, C) and a latency table (rows ``stage``
    1..n, ``batch_size``, ``median_ms``, optional ``head_median_ms``, ...): ``cost[i]`` = median
    ms of stage ``i`` at ``batch_size`` per request; the table is kept in ``meta["latency"]``
    and the environment (``env``, default: the current one) in ``meta["env_*"]``. For stage
    skipping (:mod:`ttamer.model.skip_costs`), ``meta["exit_head_cost"]`` holds each head's median per
    request (0 where the table has none, clipped to the stage's cost) and
    ``meta["backbone_group"]`` the ``groups`` (default: one backbone, all 0)."""
    env = dict(env) if env is not None else environment()
    rows = table[table["batch_size"] == batch_size].sort_values("stage")
    per_request = rows["median_ms"].to_numpy(dtype=np.float64) / batch_size
    heads = head_cost_per_request(table, batch_size)
    info = {
        **dict(meta or {}),
        **{f"env_{k}": v for k, v in env.items()},
        "latency": table.to_json(orient="records"),
        "latency_batch_size": str(batch_size),
        **skip_meta(heads, per_request, list(groups) if groups is not None else [0] * len(per_request)),
    }
    probs = probs / probs.sum(axis=2, keepdims=True)
    return Trace.build(
        labels=labels,
        pred=probs.argmax(axis=2),
        conf=np.clip(probs.max(axis=2), 0.0, 1.0),
        cost=per_request,
        stage_names=list(stage_names),
        cost_unit=f"ms per request (batch {batch_size}, {env['device']})",
        probs=probs,
        meta=info,
    )


@dataclass(frozen=True)
class TextExitsResult:
    """``probs`` (N, n, C) on the evaluation rows, the latency table, the evaluation rows timed
    (the first one alone at batch 1), the trained model, the training loss per epoch and the
    wall-clock seconds of each phase, and the environment the stages were timed in."""

    probs: NDArray[np.float64]
    latency: pd.DataFrame
    latency_rows: NDArray[np.int64]
    model: MultiExitNet
    history: list[float]
    seconds: dict[str, float]
    environment: dict[str, str]

    def meta(self) -> dict[str, str]:
        """The last epoch's training loss and the seconds of each phase, as trace meta."""
        return {
            "train_loss": str(self.history[-1] if self.history else float("nan")),
            "seconds": str({k: round(v, 2) for k, v in self.seconds.items()}),
        }


def run_text_exits(
    backbone: nn.Module,
    tokenizer: Any,
    train: LabelledTexts,
    evaluate: tuple[Sequence[str], Sequence[str] | None],
    n_classes: int,
    config: TextExitsConfig,
    seed: int,
) -> TextExitsResult:
    """Tokenise, build the exits over ``backbone``, train them on ``train`` (texts, second
    segments or None, labels), then compute every exit's probabilities on ``evaluate`` (texts,
    second segments or None) and time every stage on its requests. ``seed`` drives the heads'
    initialisation, the mini-batches and the rows timed. Torch's thread count is restored on
    return."""
    threads = torch.get_num_threads()
    try:
        if config.threads is not None:
            torch.set_num_threads(config.threads)
        return _run_text_exits(backbone, tokenizer, train, evaluate, n_classes, config, seed)
    finally:
        torch.set_num_threads(threads)  # measure_stage_latency may have changed it too


def _run_text_exits(
    backbone: nn.Module,
    tokenizer: Any,
    train: LabelledTexts,
    evaluate: tuple[Sequence[str], Sequence[str] | None],
    n_classes: int,
    config: TextExitsConfig,
    seed: int,
) -> TextExitsResult:
    torch.manual_seed(seed)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    device = run_device(config.device)
    sep = getattr(config, "pair_separator", PAIR_SEPARATOR)
    x_train = tokenize(tokenizer, train[0], train[1], config.max_length, sep).to(device)
    x_eval = tokenize(tokenizer, evaluate[0], evaluate[1], config.max_length, sep).to(device)
    y_train = torch.as_tensor(np.asarray(train[2], dtype=np.int64), device=device)
    model = build_text_exits(backbone, n_classes, config.pooling).to(device)
    seconds["tokenise"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    history = train_text_model(model, x_train, y_train, config, seed)
    seconds["train"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    speed = InferenceSpeed(config.precision, config.compile)
    batch = config.feature_batch_size
    probs, table, rows = text_exit_outputs(model, x_eval, config.latency, seed, batch, speed)
    env = environment(device)  # as timed (threads included), labelled by the device used
    seconds["evaluate_and_time"] = time.perf_counter() - t0
    return TextExitsResult(probs, table, rows, model, history, seconds, env)


def exit_names(n_layers: int) -> list[str]:
    """``layer1``, ..., one name per transformer layer."""
    return [f"layer{i + 1}" for i in range(n_layers)]


def log_accuracy(workload: str, trace: Trace) -> None:
    """Each stage's accuracy on the trace, in the log."""
    acc = (trace.pred == trace.labels[:, None]).mean(axis=0)
    pairs = ", ".join(f"{n} {a:.3f}" for n, a in zip(trace.stage_names, acc, strict=True))
    log.info("%s accuracy per exit: %s", workload, pairs)
