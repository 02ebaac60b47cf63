"""Inference speed options shared by the GPU workloads (README: workloads): autocast to a lower
precision and ``torch.compile`` of a multi-exit network's stages. Timing stays honest: compiled
graphs are built by :func:`ttamer.workloads.latency.warm_up` before anything is timed."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from ttamer.workloads.latency import INFERENCE_PRECISIONS
from ttamer.workloads.multi_exit import MultiExitNet


def precision_autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """Autocast to ``precision`` (bf16 | fp16) on ``device``'s type; fp32: nothing."""
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision not in dtypes:
        raise ValueError(f"precision must be one of {INFERENCE_PRECISIONS}, got {precision!r}")
    return torch.autocast(device_type=device.type, dtype=dtypes[precision])


def compiled(net: MultiExitNet, enabled: bool) -> MultiExitNet:
    """``net`` itself, or when ``enabled`` a view of it whose segments and heads are each
    ``torch.compile``d (same parameters; ``net`` keeps its own state-dict names). Graphs are
    built on first use: warm them (:func:`~ttamer.workloads.latency.warm_up`) before timing."""
    if not enabled:
        return net
    segments: list[nn.Module] = [torch.compile(s) for s in net.segments]  # type: ignore[misc]
    heads: list[nn.Module] = [torch.compile(h) for h in net.heads]  # type: ignore[misc]
    return MultiExitNet(segments, heads)
