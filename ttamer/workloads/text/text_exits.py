"""Multi-exit text classifiers over a transformers encoder (BERT-like: BERT, MiniLM, RoBERTa,
ELECTRA, XLM-R; DistilBERT) or GPT-2, run one transformer layer at a time.

Stage ``i`` is transformer layer ``i`` (the embeddings are folded into stage 1); exit head ``i``
pools the hidden states (the mean over non-padding tokens for encoders, the last non-padding
token for GPT-2, after GPT-2's final layer norm) and applies a linear layer to the standardised
pooled features. The model is a :class:`~ttamer.workloads.multi_exit.MultiExitNet` whose
``stage(i, h)`` really runs one layer, so per-layer latency is measured for real.

What flows between stages is not one tensor: the input is a :class:`TokenBatch` (token ids,
padding mask) and every segment returns a :class:`HiddenState` (hidden states, padding mask,
the prepared attention mask, position ids). :class:`TokenBatch` behaves like a tensor where the
shared helpers need it (``len``, row indexing, ``repeat``, ``dim``, ``device``), so
``measure_stage_latency``, ``exit_probabilities`` and ``train_exits`` take it as ``x``; indexing
also drops trailing all-padding columns, so a single request is never padded to a batch's length.

With the backbone frozen (the default) the pooled features of every layer are computed once,
stage by stage, and the heads are trained on them (:func:`fit_heads`); with
``freeze_backbone=False`` the whole model is fine-tuned with ``train_exits``. Plain PyTorch and
transformers, no Hydra.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from dataclasses import field as _field
from pathlib import Path
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
)
from ttamer.workloads.multi_exit import MultiExitNet, TrainConfig, batches, exit_probabilities, train_exits

log = logging.getLogger(__name__)

POOLINGS = ("auto", "mean", "last", "cls")


# ------------------------------------------------------------------------------------ inputs


@dataclass(frozen=True)
class TokenBatch:
    """Tokenised requests, right-padded: ``input_ids`` and ``attention_mask`` (B, L), optional
    ``token_type_ids`` (B, L). Rows index like a tensor; a selection keeps only the columns up
    to its longest row."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def __getitem__(self, idx: Any) -> TokenBatch:
        if isinstance(idx, int):
            idx = slice(idx, idx + 1) if idx != -1 else slice(-1, None)
        tt = None if self.token_type_ids is None else self.token_type_ids[idx]
        return TokenBatch(self.input_ids[idx], self.attention_mask[idx], tt).trimmed()

    def trimmed(self) -> TokenBatch:
        """Without the trailing columns that are padding in every row."""
        if len(self) == 0:
            return self
        used = self.attention_mask.bool().any(dim=0).nonzero()
        keep = int(used.max()) + 1 if used.numel() else 1
        if keep == self.input_ids.shape[1]:
            return self
        tt = None if self.token_type_ids is None else self.token_type_ids[:, :keep]
        return TokenBatch(self.input_ids[:, :keep], self.attention_mask[:, :keep], tt)

    def repeat(self, *sizes: int) -> TokenBatch:
        """Rows tiled ``sizes[0]`` times (as ``Tensor.repeat(n, 1)``)."""
        n = int(sizes[0])
        tt = None if self.token_type_ids is None else self.token_type_ids.repeat(n, 1)
        return TokenBatch(self.input_ids.repeat(n, 1), self.attention_mask.repeat(n, 1), tt)

    def dim(self) -> int:
        return 2

    @property
    def device(self) -> torch.device:
        return self.input_ids.device

    def to(self, device: torch.device | str) -> TokenBatch:
        tt = None if self.token_type_ids is None else self.token_type_ids.to(device)
        return TokenBatch(self.input_ids.to(device), self.attention_mask.to(device), tt)

    @property
    def lengths(self) -> torch.Tensor:
        """Non-padding tokens per row, (B,)."""
        return self.attention_mask.sum(dim=1)


def pad_columns(t: torch.Tensor, length: int) -> torch.Tensor:
    """``t`` (B, L, ...) right-padded with zeros along dimension 1 to ``length``."""
    if t.shape[1] == length:
        return t
    return torch.cat([t, t.new_zeros((t.shape[0], length - t.shape[1], *t.shape[2:]))], dim=1)


def concat_token_batches(parts: Sequence[TokenBatch]) -> TokenBatch:
    """Several batches one after another, right-padded to the longest."""
    length = max(int(b.input_ids.shape[1]) for b in parts)

    def cat(tensors: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([pad_columns(t, length) for t in tensors])

    types = [b.token_type_ids for b in parts]
    tt = None if any(t is None for t in types) else cat(cast(list[torch.Tensor], types))
    return TokenBatch(cat([b.input_ids for b in parts]), cat([b.attention_mask for b in parts]), tt)


def tokenize(
    tokenizer: Any, texts: Sequence[str], pairs: Sequence[str] | None = None, max_length: int = 128
) -> TokenBatch:
    """Tokenise (with the second segment ``pairs`` for sentence-pair tasks), truncated to
    ``max_length`` and right-padded to the longest row."""
    tokenizer.padding_side = "right"
    enc = tokenizer(
        list(texts), None if pairs is None else list(pairs), padding=True, truncation=True,
        max_length=max_length, return_tensors="pt",
    )  # fmt: skip
    tt = enc.get("token_type_ids")
    return TokenBatch(
        enc["input_ids"].long(), enc["attention_mask"].long(), None if tt is None else tt.long()
    )


@dataclass
class HiddenState:
    """What flows between stages: ``hidden`` (B, L, D) (before any final layer norm),
    ``mask`` (B, L) the padding mask, ``bias`` the attention mask as the layers take it (a
    prepared 4D mask, or None), ``position_ids`` (GPT-2; else None)."""

    hidden: torch.Tensor
    mask: torch.Tensor
    bias: Any = None
    position_ids: torch.Tensor | None = None


# ------------------------------------------------------------------------------ architecture


@dataclass(frozen=True)
class _Arch:
    """Where the pieces of a supported backbone live."""

    kind: str  # "encoder" (BERT-like), "distilbert" or "gpt2"
    base: nn.Module
    layers: nn.ModuleList
    final_norm: nn.Module | None


def _arch(model: nn.Module) -> _Arch:
    base: Any = getattr(model, "base_model", model)
    if hasattr(base, "wte") and isinstance(getattr(base, "h", None), nn.ModuleList):
        return _Arch("gpt2", base, base.h, base.ln_f)
    embeddings: Any = getattr(base, "embeddings", None)
    encoder: Any = getattr(base, "encoder", None)
    if embeddings is not None and isinstance(getattr(encoder, "layer", None), nn.ModuleList):
        return _Arch("encoder", base, encoder.layer, None)
    transformer: Any = getattr(base, "transformer", None)
    if embeddings is not None and isinstance(getattr(transformer, "layer", None), nn.ModuleList):
        return _Arch("distilbert", base, transformer.layer, None)
    raise ValueError(
        f"unsupported backbone {type(model).__name__}: supported are BERT-like encoders "
        "(embeddings + encoder.layer), DistilBERT (embeddings + transformer.layer) and GPT-2 (wte + h)"
    )


def _layer_output(out: Any) -> torch.Tensor:
    return cast(torch.Tensor, out[0] if isinstance(out, tuple) else out)


def _prepare_mask(
    kind: str, config: Any, embeds: torch.Tensor, mask: torch.Tensor, pos: Any, base: Any
) -> Any:
    """The attention mask as the model itself prepares it (transformers' masking utilities;
    the older extended additive mask when those are absent)."""
    try:
        from transformers.masking_utils import create_bidirectional_mask, create_causal_mask
    except ImportError:  # transformers < 4.53
        if kind == "gpt2":
            length = mask.shape[1]
            causal = torch.ones(length, length, dtype=torch.bool, device=mask.device).tril()
            allowed = causal[None, None] & mask.bool()[:, None, None, :]
            return torch.zeros(allowed.shape, dtype=embeds.dtype, device=mask.device).masked_fill(
                ~allowed, torch.finfo(embeds.dtype).min
            )
        return base.get_extended_attention_mask(mask, tuple(mask.shape))
    if kind == "gpt2":
        # the empty cache is ``cache`` from transformers 5.x on, ``past_key_values`` before
        params = inspect.signature(create_causal_mask).parameters
        no_cache = "cache" if "cache" in params else "past_key_values"
        return create_causal_mask(
            config=config, inputs_embeds=embeds, attention_mask=mask, position_ids=pos, **{no_cache: None}
        )
    return create_bidirectional_mask(config=config, inputs_embeds=embeds, attention_mask=mask)


class EmbedSegment(nn.Module):
    """Stage 1's segment: the embeddings, the attention mask, then the first layer."""

    def __init__(self, arch: _Arch):
        super().__init__()
        self.kind = arch.kind
        self.config = getattr(arch.base, "config", None)
        base: Any = arch.base
        self.base_ref = [base]  # not a submodule: only its embedding modules are
        self.wte: Any = None
        self.wpe: Any = None
        self.drop: Any = None
        self.embeddings: Any = None
        self.project: Any = None
        self.takes_token_types = False
        if arch.kind == "gpt2":
            self.wte, self.wpe, self.drop = base.wte, base.wpe, base.drop
        else:
            self.embeddings = base.embeddings
            self.project = getattr(base, "embeddings_project", None)  # ELECTRA-small
            params = inspect.signature(self.embeddings.forward).parameters
            self.takes_token_types = "token_type_ids" in params
        self.layer = arch.layers[0]

    def embed(self, x: TokenBatch) -> HiddenState:
        """The embeddings and the prepared attention mask (no transformer layer)."""
        ids, mask = x.input_ids, x.attention_mask
        pos = None
        if self.kind == "gpt2":
            pos = torch.arange(ids.shape[1], device=ids.device)[None]
            h = self.wte(ids) + self.wpe(pos)
            if x.token_type_ids is not None and bool(x.token_type_ids.any()):
                h = h + self.wte(x.token_type_ids)
            h = self.drop(h)
        else:
            kwargs: dict[str, Any] = {"input_ids": ids}
            if self.takes_token_types and x.token_type_ids is not None:
                kwargs["token_type_ids"] = x.token_type_ids
            h = self.embeddings(**kwargs)
            if self.project is not None:
                h = self.project(h)
        bias = _prepare_mask(self.kind, self.config, h, mask, pos, self.base_ref[0])
        return HiddenState(h, mask, bias, pos)

    def forward(self, x: TokenBatch) -> HiddenState:
        return run_layer(self.kind, self.layer, self.embed(x))


def concat_hidden_states(parts: Sequence[HiddenState], segment: EmbedSegment) -> HiddenState:
    """Several batches' states between layers as one batch: right-padded to the longest, the
    attention mask prepared again for the merged padding mask as ``segment`` (the model's
    stage-1 segment) prepares it."""
    length = max(int(p.hidden.shape[1]) for p in parts)
    hidden = torch.cat([pad_columns(p.hidden, length) for p in parts])
    mask = torch.cat([pad_columns(p.mask, length) for p in parts])
    pos = None
    if parts[0].position_ids is not None:
        pos = torch.arange(length, device=hidden.device)[None]
    bias = _prepare_mask(segment.kind, segment.config, hidden, mask, pos, segment.base_ref[0])
    return HiddenState(hidden, mask, bias, pos)


class LayerSegment(nn.Module):
    """Stage ``i > 1``'s segment: one transformer layer."""

    def __init__(self, kind: str, layer: nn.Module):
        super().__init__()
        self.kind = kind
        self.layer = layer

    def forward(self, state: HiddenState) -> HiddenState:
        return run_layer(self.kind, self.layer, state)


def run_layer(kind: str, layer: nn.Module, state: HiddenState) -> HiddenState:
    """One transformer layer on ``state``."""
    if kind == "gpt2":
        out = layer(state.hidden, attention_mask=state.bias, position_ids=state.position_ids)
    else:
        out = layer(state.hidden, attention_mask=state.bias)
    return HiddenState(_layer_output(out), state.mask, state.bias, state.position_ids)


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
    arch = _arch(model)
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


# -------------------------------------------------------------------------------- training


def length_batches(x: TokenBatch, batch_size: int) -> list[NDArray[np.intp]]:
    """Index batches of rows of similar length (less padding), covering every row once."""
    order = np.argsort(x.lengths.cpu().numpy(), kind="stable")
    return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]


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
    model: MultiExitNet, feats: Sequence[torch.Tensor], y: torch.Tensor, cfg: TrainConfig
) -> list[float]:
    """Train every exit head's linear layer on cached pooled features ``feats`` (one (N, D) per
    exit) and labels ``y`` (N,): the mean of the exits' cross-entropies, AdamW, mini-batches.
    Sets the heads' standardisation from ``feats`` first. Returns the mean loss per epoch."""
    heads = [cast(ExitHead, h) for h in model.heads]
    if len(feats) != len(heads):
        raise ValueError(f"need features for {len(heads)} exits, got {len(feats)}")
    device = heads[0].linear.weight.device
    feats = [f.to(device) for f in feats]
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


# -------------------------------------------------------------------------------- the trace


def latency_rows(lengths: NDArray[np.int64], size: int = 64, seed: int = 0) -> NDArray[np.int64]:
    """Rows to time: ``size`` rows drawn at random, the first one of median length (batch 1
    times that request alone; larger batches repeat the rows to fill the batch)."""
    rng = np.random.default_rng(seed)
    median = int(np.argsort(lengths, kind="stable")[len(lengths) // 2])
    rest = rng.permutation(np.setdiff1d(np.arange(len(lengths)), [median]))[: max(size - 1, 0)]
    return np.concatenate([[median], rest]).astype(np.int64)


@torch.no_grad()
def text_exit_outputs(
    model: MultiExitNet, x: TokenBatch, latency: LatencyConfig, seed: int = 0, batch_size: int = 64
) -> tuple[NDArray[np.float64], pd.DataFrame, NDArray[np.int64]]:
    """Class probabilities of every exit on ``x`` (N, n, C), computed stage by stage (batches of
    similar length); the per-stage latency table of ``measure_stage_latency`` on real requests
    of ``x``; and the rows of ``x`` timed (:func:`latency_rows`)."""
    parts, order = [], []
    for idx in length_batches(x, batch_size):
        probs = exit_probabilities(model, cast(torch.Tensor, x[torch.as_tensor(idx)]), batch_size=len(idx))
        parts.append(probs)
        order.append(idx)
    probs = np.concatenate(parts)[np.argsort(np.concatenate(order))]
    rows = latency_rows(x.lengths.cpu().numpy(), max(latency.batch_sizes), seed)
    table = measure_stage_latency(model, cast(torch.Tensor, x[torch.as_tensor(rows)]), latency)
    return probs, table, rows


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


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class TextExitsConfig:
    """Everything of a text multi-exit run but the model and the data. ``pooling``: see
    :func:`build_text_exits`; ``feature_batch_size``: rows per forward pass when computing
    features and probabilities; ``threads``: torch CPU threads for the whole run (None: as is;
    ``latency.threads`` still applies while timing)."""

    max_length: int = 128
    pooling: str = "auto"
    feature_batch_size: int = 64
    device: str = "cpu"
    train: TrainConfig = _field(default_factory=lambda: TrainConfig(freeze_backbone=True))
    latency: LatencyConfig = _field(default_factory=LatencyConfig)
    seed: int = 0
    threads: int | None = None


def _sub_config(cls: Any, raw: Any, field: str, **defaults: Any) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise FieldError(field, f"must be a mapping, got {raw!r}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise FieldError(f"{field}.{unknown[0]}", f"unknown option; known: {sorted(known)}")
    values = {**defaults, **raw}
    if cls is LatencyConfig and "batch_sizes" in values:
        values["batch_sizes"] = tuple(int(b) for b in values["batch_sizes"])
        if not values["batch_sizes"] or min(values["batch_sizes"]) < 1:
            raise FieldError(f"{field}.batch_sizes", "must be a non-empty list of positive sizes")
    if cls is TrainConfig and values.get("max_seconds") is None:
        values["max_seconds"] = float("inf")
    return cls(**values)


def text_exits_config(config: Mapping[str, Any], prefix: str = "workload") -> TextExitsConfig:
    """The typed config from a workload dict (keys ``max_length``, ``pooling``,
    ``feature_batch_size``, ``device``, ``threads``, ``train`` {TrainConfig fields}, ``latency``
    {LatencyConfig fields}, ``seed``); missing keys keep their defaults."""
    seed = int(config.get("seed", 0))
    pooling = str(config.get("pooling", "auto"))
    if pooling not in POOLINGS:
        raise FieldError(f"{prefix}.pooling", f"unknown {pooling!r}; choose from {POOLINGS}")
    device = str(config.get("device", "cpu"))
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise FieldError(f"{prefix}.device", f"{device!r} asked for but CUDA is not available")
    threads = config.get("threads")
    if threads is not None and int(threads) < 1:
        raise FieldError(f"{prefix}.threads", f"must be >= 1 or null, got {threads}")
    return TextExitsConfig(
        max_length=int(config.get("max_length", 128)),
        pooling=pooling,
        feature_batch_size=int(config.get("feature_batch_size", 64)),
        device=device,
        train=_sub_config(
            TrainConfig, config.get("train"), f"{prefix}.train", freeze_backbone=True, seed=seed
        ),
        latency=_sub_config(LatencyConfig, config.get("latency"), f"{prefix}.latency"),
        seed=seed,
        threads=None if threads is None else int(threads),
    )


def load_backbone(name_or_folder: str | Path, field: str = "workload.model") -> tuple[nn.Module, Any]:
    """A transformers model (``AutoModel``) and its tokenizer from a local folder or a hub name
    (downloaded when online, from the local cache when ``HF_HUB_OFFLINE=1``). GPT-2-style
    tokenizers without a padding token pad with their end-of-text token; padding is on the right."""
    from transformers import AutoModel, AutoTokenizer

    path = Path(str(name_or_folder)).expanduser()
    local = path.is_dir()
    source = str(path.resolve()) if local else str(name_or_folder)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local)
        model = AutoModel.from_pretrained(source, local_files_only=local)
    except OSError as exc:
        where = "folder" if local else "model name (needs the hub, or its copy in the local HF cache)"
        raise FieldError(field, f"cannot load {name_or_folder!r} as a {where}: {exc}") from None
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise FieldError(field, f"tokenizer of {name_or_folder!r} has neither a padding nor an end token")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    model.eval()
    return model, tokenizer


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


def run_text_exits(
    backbone: nn.Module,
    tokenizer: Any,
    train: tuple[Sequence[str], Sequence[str] | None, NDArray[np.int64]],
    evaluate: tuple[Sequence[str], Sequence[str] | None],
    n_classes: int,
    cfg: TextExitsConfig,
) -> TextExitsResult:
    """Tokenise, build the exits over ``backbone``, train them on ``train`` (texts, second
    segments or None, labels), then compute every exit's probabilities on ``evaluate`` (texts,
    second segments or None) and time every stage on its requests. Torch's thread count is
    restored on return."""
    threads = torch.get_num_threads()
    try:
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        return _run_text_exits(backbone, tokenizer, train, evaluate, n_classes, cfg)
    finally:
        torch.set_num_threads(threads)  # measure_stage_latency may have changed it too


def _run_text_exits(
    backbone: nn.Module,
    tokenizer: Any,
    train: tuple[Sequence[str], Sequence[str] | None, NDArray[np.int64]],
    evaluate: tuple[Sequence[str], Sequence[str] | None],
    n_classes: int,
    cfg: TextExitsConfig,
) -> TextExitsResult:
    torch.manual_seed(cfg.seed)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    device = torch.device(cfg.device)
    x_train = tokenize(tokenizer, train[0], train[1], cfg.max_length).to(device)
    x_eval = tokenize(tokenizer, evaluate[0], evaluate[1], cfg.max_length).to(device)
    y_train = torch.as_tensor(np.asarray(train[2], dtype=np.int64), device=device)
    model = build_text_exits(backbone, n_classes, cfg.pooling).to(device)
    if cfg.train.freeze_backbone:
        model.segments.requires_grad_(False)
    seconds["tokenise"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    history = train_text_exits(model, x_train, y_train, cfg.train, cfg.feature_batch_size)
    seconds["train"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    probs, table, rows = text_exit_outputs(model, x_eval, cfg.latency, cfg.seed, cfg.feature_batch_size)
    env = environment()  # as timed (threads included)
    seconds["evaluate_and_time"] = time.perf_counter() - t0
    return TextExitsResult(probs, table, rows, model, history, seconds, env)
