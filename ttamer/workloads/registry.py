"""Trace producers by workload name, imported lazily (torch, timm and transformers load only
when a model workload runs).

A producer is ``produce(config: dict, out_dir: Path) -> Trace``: ``config`` is the resolved
``workload`` config (plain data, also the cache key), ``out_dir`` the run folder where it may
write side outputs (the latency CSV). It trains or loads the model, runs it on the held-out
split and returns the trace with measured per-stage latency."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ttamer.errors import FieldError
from ttamer.traces.trace import Trace

Producer = Callable[[dict[str, Any], Path], Trace]

PRODUCERS: dict[str, str] = {
    "digits": "ttamer.workloads.vision.digits:produce",
    "fashion_mnist": "ttamer.workloads.vision.fashion_mnist:produce",
    "sst2_minilm": "ttamer.workloads.text.sst2_minilm:produce",
    "glue_hf": "ttamer.workloads.text.glue_hf:produce",
    "imagenet_timm": "ttamer.workloads.vision.imagenet_timm:produce",
}


def producer(name: str) -> Producer:
    """The producer registered for workload ``name``."""
    if name not in PRODUCERS:
        raise FieldError("workload.name", f"no trace producer for {name!r}; known: {sorted(PRODUCERS)}")
    module, func = PRODUCERS[name].split(":")
    fn: Producer = getattr(importlib.import_module(module), func)
    return fn
