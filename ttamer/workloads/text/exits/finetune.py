"""Fine-tuning a multi-exit transformer (README: workloads): the recipes ``finetune`` (the backbone
and every exit jointly) and ``deebert`` (DeeBERT's two stages) of
:class:`~ttamer.workloads.text.exits.config.TextTrainConfig`.

The optimiser is AdamW with two learning rates (the transformer's ``backbone_lr``, the exit
heads' linear layers' ``head_lr``; no weight decay on biases and normalisation weights), the
rate follows a linear warmup then a linear decay (:func:`linear_warmup_decay`), gradients are
clipped to a total L2 norm, and on CUDA the forward pass runs under bf16 or fp16 autocast (fp16
with a gradient scaler)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from ttamer.workloads.multi_exit import MultiExitNet, TrainConfig, batches
from ttamer.workloads.text.exits.config import FinetuneConfig
from ttamer.workloads.text.exits.heads import ExitHead, exit_features, fit_heads
from ttamer.workloads.text.exits.tokens import TokenBatch


def linear_warmup_decay(step: int, warmup: int, total: int) -> float:
    """The learning-rate multiplier of optimiser step ``step`` (0-based) out of ``total``:
    ``step / warmup`` for the first ``warmup`` steps, then ``(total - step) / (total - warmup)``
    down to 0 (transformers' ``get_linear_schedule_with_warmup``)."""
    if step < warmup:
        return step / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def warmup_steps(warmup_fraction: float, total: int) -> int:
    """The warmup's optimiser steps: ``ceil(warmup_fraction * total)``."""
    return math.ceil(warmup_fraction * total)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``precision`` on ``device``: None (fp32) on a CPU or for ``fp32``;
    ``auto``: bf16 where the GPU supports it, else fp16."""
    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def param_groups(model: MultiExitNet, exits: Sequence[int], cfg: FinetuneConfig) -> list[dict[str, Any]]:
    """AdamW's parameter groups: the backbone (every parameter outside the heads' linear layers,
    GPT-2's final layer norm included) at ``backbone_lr`` and the linear layers of the heads
    ``exits`` at ``head_lr``; each split into matrices (weight decay) and vectors (biases and
    normalisation weights: none). Empty groups are left out."""
    heads = [p for i in exits for p in cast(ExitHead, model.heads[i]).linear.parameters()]
    all_heads = {id(p) for h in model.heads for p in cast(ExitHead, h).linear.parameters()}
    backbone = [p for p in model.parameters() if id(p) not in all_heads]
    groups = []
    for params, lr in ((backbone, cfg.backbone_lr), (heads, cfg.head_lr)):
        for decay in (True, False):
            chosen = [p for p in params if (p.ndim >= 2) == decay]
            if chosen:
                wd = cfg.weight_decay if decay else 0.0
                groups.append({"params": chosen, "lr": lr, "weight_decay": wd})
    return groups


def exit_logits(model: MultiExitNet, x: Any, exits: Sequence[int]) -> list[torch.Tensor]:
    """Logits (B, C) of the exits ``exits`` (ascending), running the stages up to the last."""
    wanted, out, h = set(exits), [], x
    for i in range(max(exits) + 1):
        h = model.segments[i](h)
        if i in wanted:
            out.append(model.heads[i](h))
    return out


@dataclass
class Optimiser:
    """AdamW, its learning-rate schedule, the gradient scaler (fp16 only), the autocast dtype
    (None: fp32) and the clipping norm (None: none)."""

    opt: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LambdaLR
    scaler: Any
    dtype: torch.dtype | None
    max_grad_norm: float | None

    @classmethod
    def build(
        cls, model: MultiExitNet, exits: Sequence[int], cfg: FinetuneConfig, total: int, device: torch.device
    ) -> Optimiser:
        """For ``total`` optimiser steps on ``device`` (see :class:`FinetuneConfig`)."""
        groups = param_groups(model, exits, cfg)
        for group in groups:
            for p in group["params"]:
                p.requires_grad_(True)
        opt = torch.optim.AdamW(groups)
        warmup = warmup_steps(cfg.warmup_fraction, total)
        schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: linear_warmup_decay(s, warmup, total))
        dtype = autocast_dtype(cfg.precision, device)
        scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
        return cls(opt, schedule, scaler, dtype, cfg.max_grad_norm)

    def step(self, model: MultiExitNet, x: Any, y: torch.Tensor, exits: Sequence[int]) -> torch.Tensor:
        """One optimiser step on the mean cross-entropy of the exits ``exits`` on the batch
        ``x``, ``y``; the gradients (clipped) stay in ``.grad``. Returns the loss (detached)."""
        device = y.device
        with torch.autocast(device_type=device.type, dtype=self.dtype or torch.float32,
                            enabled=self.dtype is not None):  # fmt: skip
            logits = exit_logits(model, x, exits)
        loss = torch.stack([nn.functional.cross_entropy(lg.float(), y) for lg in logits]).mean()
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.max_grad_norm is not None:
            self.scaler.unscale_(self.opt)
            params = [p for g in self.opt.param_groups for p in g["params"]]
            nn.utils.clip_grad_norm_(params, self.max_grad_norm)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.schedule.step()
        return loss.detach()


def finetune_exits(
    model: MultiExitNet,
    x: TokenBatch,
    y: torch.Tensor,
    cfg: FinetuneConfig,
    seed: int = 0,
    max_seconds: float = float("inf"),
    exits: Sequence[int] | None = None,
) -> list[float]:
    """Fine-tune the backbone and the heads ``exits`` (None: all) on the mean of their
    cross-entropies (see the module docstring), stopped after ``max_seconds``; ``seed`` draws
    the mini-batches. Returns the mean loss of each epoch; the model is left in eval mode."""
    chosen = list(range(model.n_stages)) if exits is None else sorted(exits)
    total = cfg.epochs * math.ceil(len(y) / cfg.batch_size)
    optimiser = Optimiser.build(model, chosen, cfg, total, y.device)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    start, history = time.perf_counter(), []
    model.train()
    for _ in range(cfg.epochs):
        loss_sum, count = torch.zeros((), device=y.device), 0
        for idx in batches(len(y), cfg.batch_size, rng):
            t = torch.as_tensor(idx, device=y.device)
            loss_sum += optimiser.step(model, x[t], y[t], chosen) * len(idx)
            count += len(idx)
            if time.perf_counter() - start > max_seconds:
                break
        history.append(float(loss_sum) / max(count, 1))
        if time.perf_counter() - start > max_seconds:
            break
    model.eval()
    return history


def set_standardisation(model: MultiExitNet, x: TokenBatch, batch_size: int = 64) -> None:
    """Every head's standardisation from the current backbone's pooled features of ``x``."""
    for head, feats in zip(model.heads, exit_features(model, x, batch_size), strict=True):
        cast(ExitHead, head).set_standardisation(feats.to(x.device))


def deebert_stage1(
    model: MultiExitNet, x: TokenBatch, y: torch.Tensor, cfg: FinetuneConfig, seed: int = 0,
    max_seconds: float = float("inf"),
) -> list[float]:  # fmt: skip
    """DeeBERT's stage 1: fine-tune the backbone and the last exit on its cross-entropy."""
    return finetune_exits(model, x, y, cfg, seed, max_seconds, exits=[model.n_stages - 1])


def deebert_stage2(
    model: MultiExitNet, x: TokenBatch, y: torch.Tensor, cfg: TrainConfig, feature_batch_size: int = 64
) -> list[float]:
    """DeeBERT's stage 2: the backbone frozen, the other exits' heads trained on its pooled
    features (their standardisation set from them first); the last exit is left as it is."""
    model.segments.requires_grad_(False)
    feats = exit_features(model, x, feature_batch_size)
    history = fit_heads(model, feats, y, cfg, only=range(model.n_stages - 1))
    model.eval()
    return history
