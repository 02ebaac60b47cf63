"""Trained weights kept next to the cached trace (README: serving): a workload that trains a model
saves the model's weights with its trace (same name and cache key, ``.weights.pt``: a torch
state dict, loaded with ``weights_only=True``), so that the model behind a trace can be served
(:mod:`ttamer.serving`) without training it again.

A workload takes part when its implementation module provides
``produce_with_model(config, seed, out_dir) -> (Trace, model)`` and
``untrained_model(config, seed) -> model`` (the architecture, to load weights into); no list of
such workloads is kept here."""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ttamer.fileio import atomic_write_bytes, portable_path
from ttamer.traces.cache import cache_lock, cache_path, cached_trace_unlocked, config_key, content_hash
from ttamer.traces.trace import Trace, load_trace
from ttamer.workloads.base import WorkloadConfig, workload

log = logging.getLogger(__name__)


def weights_path(cache_dir: str | Path, name: str, key: Mapping[str, Any]) -> Path:
    """Where the weights of the trace ``cache_path(cache_dir, name, key)`` are kept."""
    return Path(cache_dir) / f"{name}-{config_key(key)}.weights.pt"


def save_weights(model: Any, path: str | Path) -> None:
    """The model's state dict, written atomically."""
    import torch

    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    atomic_write_bytes(path, buf.getvalue())


def load_weights(model: Any, path: str | Path) -> Any:
    """``model`` with the state dict saved at ``path`` (no pickle), in eval mode."""
    import torch

    model.load_state_dict(torch.load(Path(path), map_location="cpu", weights_only=True))
    model.eval()
    return model


def cached_model(
    config: WorkloadConfig,
    seed: int,
    cache_dir: str | Path,
    out_dir: str | Path = ".",
    recompute: bool = False,
) -> tuple[Any, Trace, bool]:
    """The trained model of the workload ``config`` for ``seed`` and its trace: ``(model, trace,
    reused)``. Both come from the cache (key ``config.trace_key(seed)``, the trace cache's) when
    the trace and the weights saved with it are there and valid; otherwise the workload is trained
    again and both are (re)written (the trace is rebuilt too, so that it is always the trace of
    the saved weights). A FieldError when the workload trains no model."""
    spec = workload(config.name)
    spec.function("produce_with_model")  # fails early for a workload without a model
    key = config.trace_key(seed)
    with cache_lock(cache_path(cache_dir, spec.name, key)):
        reused = _reuse(config, seed, cache_dir, recompute)
        if reused is not None:
            return reused
        return _train(config, seed, cache_dir, out_dir)


def _reuse(
    config: WorkloadConfig, seed: int, cache_dir: str | Path, recompute: bool
) -> tuple[Any, Trace, bool] | None:
    """The cached model and trace when both are there and valid (None otherwise)."""
    spec, key = workload(config.name), config.trace_key(seed)
    tpath, wpath = cache_path(cache_dir, spec.name, key), weights_path(cache_dir, spec.name, key)
    if recompute or not tpath.exists():
        return None
    if not wpath.exists():
        log.warning(
            "cached trace %s has no saved weights: training again (trace rebuilt)", portable_path(tpath)
        )
        return None
    try:
        trace = load_trace(tpath)
        valid = trace.meta.get("content_sha256") == content_hash(trace)
        if trace.meta.get("cache_key") == config_key(key) and valid:
            model = load_weights(spec.function("untrained_model")(config, seed), wpath)
            log.info("reusing cached trace %s and weights %s", portable_path(tpath), portable_path(wpath))
            return model, trace, True
        log.warning("cached trace %s: other config or content: rebuilding", portable_path(tpath))
    except Exception as exc:  # unreadable or mismatched files: rebuild both
        log.warning(
            "cached model %s is unusable (%s: %s): rebuilding", portable_path(wpath), type(exc).__name__, exc
        )
    return None


def _train(
    config: WorkloadConfig, seed: int, cache_dir: str | Path, out_dir: str | Path
) -> tuple[Any, Trace, bool]:
    """Train the workload's model, cache its trace (rebuilt) and save its weights."""
    spec, key = workload(config.name), config.trace_key(seed)
    trained: dict[str, Any] = {}

    def produce() -> Trace:
        trace, trained["model"] = spec.function("produce_with_model")(config, seed, Path(out_dir))
        return trace

    trace, _ = cached_trace_unlocked(spec.name, key, produce, cache_dir, recompute=True)
    wpath = weights_path(cache_dir, spec.name, key)
    save_weights(trained["model"], wpath)
    log.info("saved weights %s", portable_path(wpath))
    return trained["model"], trace, False
