"""A transformers backbone cut into one segment per transformer layer (model surgery).

What flows between segments is a :class:`HiddenState` (hidden states, padding mask, the
prepared attention mask, position ids); stage 1's segment (:class:`EmbedSegment`) takes a
:class:`~ttamer.workloads.text.exits.tokens.TokenBatch`. The attention mask is prepared as the
model itself prepares it, so that running the segments one after another gives the full
model's hidden states."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from ttamer.errors import FieldError
from ttamer.workloads.text.exits.tokens import TokenBatch, pad_columns


@dataclass
class HiddenState:
    """What flows between stages: ``hidden`` (B, L, D) (before any final layer norm),
    ``mask`` (B, L) the padding mask, ``bias`` the attention mask as the layers take it (a
    prepared 4D mask, or None), ``position_ids`` (GPT-2; else None)."""

    hidden: torch.Tensor
    mask: torch.Tensor
    bias: Any = None
    position_ids: torch.Tensor | None = None


@dataclass(frozen=True)
class Arch:
    """Where the pieces of a supported backbone live."""

    kind: str  # "encoder" (BERT-like), "distilbert" or "gpt2"
    base: nn.Module
    layers: nn.ModuleList
    final_norm: nn.Module | None


def architecture(model: nn.Module) -> Arch:
    """The layout of ``model`` (or of its base model); ValueError "unsupported backbone ..."."""
    base: Any = getattr(model, "base_model", model)
    if hasattr(base, "wte") and isinstance(getattr(base, "h", None), nn.ModuleList):
        return Arch("gpt2", base, base.h, base.ln_f)
    embeddings: Any = getattr(base, "embeddings", None)
    encoder: Any = getattr(base, "encoder", None)
    if embeddings is not None and isinstance(getattr(encoder, "layer", None), nn.ModuleList):
        return Arch("encoder", base, encoder.layer, None)
    transformer: Any = getattr(base, "transformer", None)
    if embeddings is not None and isinstance(getattr(transformer, "layer", None), nn.ModuleList):
        return Arch("distilbert", base, transformer.layer, None)
    raise ValueError(
        f"unsupported backbone {type(model).__name__}: supported are BERT-like encoders "
        "(embeddings + encoder.layer), DistilBERT (embeddings + transformer.layer) and GPT-2 (wte + h)"
    )


def _legacy_mask(kind: str, embeds: torch.Tensor, mask: torch.Tensor, base: Any) -> Any:
    """The extended additive attention mask of transformers < 4.53."""
    if kind == "gpt2":
        length = mask.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=mask.device).tril()
        allowed = causal[None, None] & mask.bool()[:, None, None, :]
        return torch.zeros(allowed.shape, dtype=embeds.dtype, device=mask.device).masked_fill(
            ~allowed, torch.finfo(embeds.dtype).min
        )
    return base.get_extended_attention_mask(mask, tuple(mask.shape))


def prepare_mask(
    kind: str, config: Any, embeds: torch.Tensor, mask: torch.Tensor, pos: Any, base: Any
) -> Any:
    """The attention mask as the model itself prepares it (transformers' masking utilities;
    the older extended additive mask when those are absent)."""
    try:
        from transformers.masking_utils import create_bidirectional_mask, create_causal_mask
    except ImportError:  # transformers < 4.53
        return _legacy_mask(kind, embeds, mask, base)
    if kind == "gpt2":
        # the empty cache is ``cache`` from transformers 5.x on, ``past_key_values`` before
        params = inspect.signature(create_causal_mask).parameters
        no_cache = "cache" if "cache" in params else "past_key_values"
        return create_causal_mask(
            config=config, inputs_embeds=embeds, attention_mask=mask, position_ids=pos, **{no_cache: None}
        )
    return create_bidirectional_mask(config=config, inputs_embeds=embeds, attention_mask=mask)


def run_layer(kind: str, layer: nn.Module, state: HiddenState) -> HiddenState:
    """One transformer layer on ``state``."""
    if kind == "gpt2":
        out = layer(state.hidden, attention_mask=state.bias, position_ids=state.position_ids)
    else:
        out = layer(state.hidden, attention_mask=state.bias)
    hidden = cast(torch.Tensor, out[0] if isinstance(out, tuple) else out)
    return HiddenState(hidden, state.mask, state.bias, state.position_ids)


class EmbedSegment(nn.Module):
    """Stage 1's segment: the embeddings, the attention mask, then the first layer."""

    def __init__(self, arch: Arch):
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
        bias = prepare_mask(self.kind, self.config, h, mask, pos, self.base_ref[0])
        return HiddenState(h, mask, bias, pos)

    def forward(self, x: TokenBatch) -> HiddenState:
        return run_layer(self.kind, self.layer, self.embed(x))


class LayerSegment(nn.Module):
    """Stage ``i > 1``'s segment: one transformer layer."""

    def __init__(self, kind: str, layer: nn.Module):
        super().__init__()
        self.kind = kind
        self.layer = layer

    def forward(self, state: HiddenState) -> HiddenState:
        return run_layer(self.kind, self.layer, state)


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
    bias = prepare_mask(segment.kind, segment.config, hidden, mask, pos, segment.base_ref[0])
    return HiddenState(hidden, mask, bias, pos)


def load_backbone(name_or_folder: str | Path, field: str = "workload.model") -> tuple[nn.Module, Any]:
    """A transformers model (``AutoModel``) and its tokenizer from a local folder or a hub name
    (downloaded when online, from the local cache when ``HF_HUB_OFFLINE=1``). GPT-2-style
    tokenizers without a padding token pad with their end-of-text token; padding is on the
    right. FieldError ``field`` when it cannot be loaded."""
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
