"""Tokenised requests and how they are batched.

What enters stage 1 is a :class:`TokenBatch` (token ids, padding mask). It behaves like a
tensor where the shared helpers need it (``len``, row indexing, ``repeat``, ``dim``,
``device``), so ``measure_stage_latency``, ``exit_probabilities`` and ``train_exits`` take it as
``x``; indexing also drops trailing all-padding columns, so a single request is never padded to
a batch's length."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from numpy.typing import NDArray


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


PAIR_SEPARATOR = "{eos} "  # GPT-2: "The cat sat.<|endoftext|> He left."


def join_pairs(
    tokenizer: Any, texts: Sequence[str], pairs: Sequence[str] | None, separator: str = PAIR_SEPARATOR
) -> tuple[list[str], list[str] | None]:
    """The first and second segments as the tokenizer should take them: unchanged when there
    are no pairs or when the tokenizer has a separator token (its own pair template, e.g.
    ``[CLS] a [SEP] b [SEP]``); else (GPT-2) one text per pair, ``a + separator + b`` with
    ``{eos}`` in ``separator`` replaced by the tokenizer's end-of-text token."""
    if pairs is None or getattr(tokenizer, "sep_token", None) is not None:
        return list(texts), None if pairs is None else list(pairs)
    sep = separator.replace("{eos}", getattr(tokenizer, "eos_token", None) or "")
    return [a + sep + b for a, b in zip(texts, pairs, strict=True)], None


def tokenize(
    tokenizer: Any,
    texts: Sequence[str],
    pairs: Sequence[str] | None = None,
    max_length: int = 128,
    pair_separator: str = PAIR_SEPARATOR,
) -> TokenBatch:
    """Tokenise (with the second segment ``pairs`` for sentence-pair tasks, joined as
    :func:`join_pairs` does with ``pair_separator``), truncated to ``max_length`` and
    right-padded to the longest row."""
    tokenizer.padding_side = "right"
    first, second = join_pairs(tokenizer, texts, pairs, pair_separator)
    enc = tokenizer(
        first, second, padding=True, truncation=True, max_length=max_length, return_tensors="pt",
    )  # fmt: skip
    tt = enc.get("token_type_ids")
    return TokenBatch(
        enc["input_ids"].long(), enc["attention_mask"].long(), None if tt is None else tt.long()
    )


def length_batches(x: TokenBatch, batch_size: int) -> list[NDArray[np.intp]]:
    """Index batches of rows of similar length (less padding), covering every row once."""
    order = np.argsort(x.lengths.cpu().numpy(), kind="stable")
    return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
