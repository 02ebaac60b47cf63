"""Exit heads (pooling, fixed standardisation, a linear layer), the multi-exit model over a
backbone, and the heads' training.

With the backbone frozen (the default) the pooled features of every layer are computed once,
stage by stage, and the heads are trained on them (:func:`fit_heads`); with
``freeze_backbone=False`` the whole model is then fine-tuned with ``train_exits``."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any, cast

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from ttamer.workloads.multi_exit import MultiExitNet, TrainConfig, batches, train_exits
from ttamer.workloads.text.exits.config import POOLINGS
from ttamer.workloads.text.exits.segments import EmbedSegment, HiddenState, LayerSegment, architecture
from ttamer.workloads.text.exits.tokens import TokenBatch, length_batches


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """(B, L, D) -> (B, D): ``mean`` over non-padding tokens, the ``last`` non-padding token
    (left or right padding), or the first (``cls``) token."""
    if how == "mean":
        m = mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)
    if how == "last":
        positions = torch.arange(mask.shape[1], device=mask.device)
        last = (mask.bool() * (positions + 1)).argmax(dim=1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    if how == "cls":
        return hidden[:, 0]
    raise ValueError(f"pooling: unknown {how!r}; choose from {POOLINGS[1:]}")


class ExitHead(nn.Module):
    """Pooling (after ``final_norm`` when given), standardisation with fixed statistics of the
    training features, then a linear layer."""

    def __init__(self, dim: int, n_classes: int, pooling: str, final_norm: nn.Module | None = None):
        super().__init__()
        self.pooling = pooling
        self.final_norm = final_norm
        self.linear = nn.Linear(dim, n_classes)
        self.register_buffer("center", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))

    def features(self, state: HiddenState) -> torch.Tensor:
        """Pooled features (B, D), before standardisation."""
        h = state.hidden if self.final_norm is None else self.final_norm(state.hidden)
        return pool(h, state.mask, self.pooling)

    def classify(self, feats: torch.Tensor) -> torch.Tensor:
        """Logits from pooled features."""
        center, scale = cast(torch.Tensor, self.center), cast(torch.Tensor, self.scale)
        return cast(torch.Tensor, self.linear((feats - center) / scale))

    def set_standardisation(self, feats: torch.Tensor) -> None:
        center, scale = cast(torch.Tensor, self.center), cast(torch.Tensor, self.scale)
        center.copy_(feats.mean(dim=0))
        scale.copy_(feats.std(dim=0).clamp_min(1e-6) if len(feats) > 1 else torch.ones_like(scale))

    def forward(self, state: HiddenState) -> torch.Tensor:
        return self.classify(self.features(state))


def build_text_exits(model: nn.Module, n_classes: int, pooling: str = "auto") -> MultiExitNet:
    """A multi-exit classifier over ``model`` (a transformers encoder, DistilBERT or GPT-2,
    base or with a task head: its base model is used): one stage per transformer layer.
    ``pooling``: ``auto`` (``last`` for GPT-2, else ``mean``), ``mean``, ``last`` or ``cls``."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling: unknown {pooling!r}; choose from {POOLINGS}")
    arch = architecture(model)
    how = ("last" if arch.kind == "gpt2" else "mean") if pooling == "auto" else pooling
    config = getattr(arch.base, "config", None)
    dim = int(getattr(config, "hidden_size", 0) or getattr(config, "dim", 0) or getattr(config, "n_embd", 0))
    if dim <= 0:
        raise ValueError(f"cannot tell the hidden size of {type(model).__name__}")
    segments: list[nn.Module] = [EmbedSegment(arch)]
    segments += [LayerSegment(arch.kind, layer) for layer in list(arch.layers)[1:]]
    heads = [ExitHead(dim, n_classes, how, arch.final_norm) for _ in arch.layers]
    net = MultiExitNet(segments, heads)
    net.eval()
    return net


@torch.no_grad()
def exit_features(model: MultiExitNet, x: TokenBatch, batch_size: int = 64) -> list[torch.Tensor]:
    """Pooled features of every exit, computed stage by stage: ``n_stages`` tensors (N, D) in
    the rows' order (on the CPU)."""
    model.eval()
    out: list[list[torch.Tensor]] = [[] for _ in range(model.n_stages)]
    order: list[NDArray[np.intp]] = []
    for idx in length_batches(x, batch_size):
        state: Any = x[torch.as_tensor(idx)]
        for i in range(model.n_stages):
            state = model.segments[i](state)
            out[i].append(cast(ExitHead, model.heads[i]).features(state).float().cpu())
        order.append(idx)
    inverse = torch.as_tensor(np.argsort(np.concatenate(order)))
    return [torch.cat(parts)[inverse] for parts in out]


def fit_heads(
    model: MultiExitNet,
    feats: Sequence[torch.Tensor],
    y: torch.Tensor,
    cfg: TrainConfig,
    only: Iterable[int] | None = None,
) -> list[float]:
    """Train every exit head's linear layer (``only``: the heads of those exits) on cached pooled
    features ``feats`` (one (N, D) per exit) and labels ``y`` (N,): the mean of the exits'
    cross-entropies, AdamW, mini-batches. Sets the heads' standardisation from ``feats`` first.
    Returns the mean loss per epoch."""
    if len(feats) != model.n_stages:
        raise ValueError(f"need features for {model.n_stages} exits, got {len(feats)}")
    chosen = list(range(model.n_stages) if only is None else only)
    heads = [cast(ExitHead, model.heads[i]) for i in chosen]
    device = heads[0].linear.weight.device
    feats = [feats[i].to(device) for i in chosen]
    y = y.to(device)
    for head, f in zip(heads, feats, strict=True):
        head.set_standardisation(f)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    params = [p for h in heads for p in h.linear.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    start, history = time.perf_counter(), []
    for _ in range(cfg.epochs):
        total, count = 0.0, 0
        for idx in batches(len(y), cfg.batch_size, rng):
            t = torch.as_tensor(idx, device=device)
            losses = [
                nn.functional.cross_entropy(h.classify(f[t]), y[t]) for h, f in zip(heads, feats, strict=True)
            ]
            loss = torch.stack(losses).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, count = total + loss.item() * len(idx), count + len(idx)
        history.append(total / max(count, 1))
        if time.perf_counter() - start > cfg.max_seconds:
            break
    return history


def train_text_exits(
    model: MultiExitNet, x: TokenBatch, y: torch.Tensor, cfg: TrainConfig, feature_batch_size: int = 64
) -> list[float]:
    """Train the exits on ``x``, ``y``: the heads on cached features when the backbone is frozen,
    else heads and backbone jointly (``train_exits``; the heads' standardisation is still set
    from the pretrained features first). Returns the loss per epoch."""
    feats = exit_features(model, x, feature_batch_size)
    history = fit_heads(model, feats, y, cfg)
    if not cfg.freeze_backbone:
        history += train_exits(model, cast(torch.Tensor, x), y, cfg)
    model.eval()
    return history
