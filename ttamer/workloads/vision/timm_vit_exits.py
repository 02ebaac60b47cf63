"""Exits after chosen transformer blocks of a timm vision transformer (README: workloads): ViT,
DeiT and DeiT distilled (timm's ``VisionTransformer`` and subclasses), cut as their own
``forward_features`` runs them.

``model.feature_info`` lists one entry per transformer block (``blocks.<i>``), so
``out_indices`` are block indices. ``segments[0]`` embeds the image (patch embedding, class and
other prefix tokens, position embedding, ``norm_pre``: :class:`TransformerEmbed`) and runs the
blocks up to the first exit; each later segment runs the next blocks; a segment ending at the last
block also applies the model's final ``norm``, so the segments compose to ``forward_features``
and the model's own classifier can be the last exit.

Each exit head (:class:`TokenPoolHead`) normalises the tokens with the model's own final norm
(frozen, shared with the model; skipped on the last block's output, which is normalised
already), pools them (``token_pool``: the class token, the mean of the patch tokens, or the
model's own pooling), applies the model's ``fc_norm`` (identity for class-token models) and one
trained linear layer: at the last block, exactly what the model's classifier consumes."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ttamer.workloads.vision.timm_exits import PooledLinearHead, StageInfo

POOLS = ("token", "avg", "distilled")


class TransformerEmbed(nn.Module):
    """``forward_features`` of a timm vision transformer before its blocks: patch embedding,
    prefix tokens and position embedding, patch dropout, ``norm_pre``. Holds the whole model
    (whose parameters those steps use)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m: Any = self.model
        x = m.patch_embed(x)
        x = m._pos_embed(x)
        x = m.patch_drop(x)
        out: torch.Tensor = m.norm_pre(x)
        return out


class TokenPoolHead(PooledLinearHead):
    """An exit of a vision transformer: ``norm`` (the model's final norm, or identity), pooling
    of the tokens (B, N, C) -> (B, C) by ``pool`` (:data:`POOLS`: the class token, the mean of the
    tokens after the ``num_prefix_tokens`` prefix tokens, or the mean of the class and
    distillation tokens), ``fc_norm``, then dropout and a linear layer (the trained part:
    ``drop`` and ``fc``, as in :class:`PooledLinearHead`, whose pooling this replaces)."""

    def __init__(
        self, norm: nn.Module, fc_norm: nn.Module, pool: str, num_prefix_tokens: int, in_chs: int,
        num_classes: int, dropout: float = 0.0,
    ):  # fmt: skip
        if pool not in POOLS:
            raise ValueError(f"token_pool: must be one of {POOLS}, got {pool!r}")
        super().__init__(in_chs, num_classes, dropout=dropout)
        self.norm, self.fc_norm = norm, fc_norm
        self.pool, self.num_prefix_tokens = pool, num_prefix_tokens

    def pool_features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled features (B, C) the linear layer consumes, of tokens (B, N, C)."""
        x = self.norm(x)
        if self.pool == "token":
            x = x[:, 0]
        elif self.pool == "distilled":
            x = (x[:, 0] + x[:, 1]) / 2
        else:
            x = x[:, self.num_prefix_tokens :].mean(dim=1)
        out: torch.Tensor = self.fc_norm(x)
        return out


def resolve_pool(model: Any, token_pool: str) -> tuple[str, int]:
    """The exits' pooling (:data:`POOLS`) and the number of tokens the mean skips: ``auto`` is
    the model's own (class token, mean, or DeiT distilled's two tokens)."""
    from timm.models.deit import VisionTransformerDistilled

    prefix = 0 if getattr(model, "pool_include_prefix", False) else int(model.num_prefix_tokens)
    if token_pool != "auto":
        return token_pool, prefix
    if isinstance(model, VisionTransformerDistilled):
        return "distilled", prefix
    own = str(getattr(model, "global_pool", ""))
    if own not in ("token", "avg") or getattr(model, "attn_pool", None) is not None:
        raise ValueError(
            f"token_pool: {type(model).__name__} pools with {own!r}; choose token_pool token or avg"
        )
    return own, prefix


def vit_exits(
    model: Any, indices: tuple[int, ...], num_classes: int, dropout: float, token_pool: str
) -> tuple[list[nn.Module], list[nn.Module], list[StageInfo]]:
    """The segments, exit heads and stages of ``model`` cut after the blocks ``indices``
    (increasing indices into ``model.blocks``; see the module docstring)."""
    blocks = list(model.blocks)
    pool, prefix = resolve_pool(model, token_pool)
    width = int(model.num_features)
    patch = model.patch_embed.patch_size
    reduction = int(patch[0]) if isinstance(patch, (tuple, list)) else int(patch)
    segments: list[nn.Module] = []
    heads: list[nn.Module] = []
    start = 0
    for i in indices:
        parts: list[nn.Module] = [TransformerEmbed(model)] if start == 0 else []
        parts += blocks[start : i + 1]
        last = i == len(blocks) - 1
        if last:
            parts.append(model.norm)
        segments.append(nn.Sequential(*parts))
        norm = nn.Identity() if last else model.norm
        heads.append(TokenPoolHead(norm, model.fc_norm, pool, prefix, width, num_classes, dropout))
        start = i + 1
    stages = [StageInfo(f"blocks.{i}", width, reduction) for i in indices]
    return segments, heads, stages
