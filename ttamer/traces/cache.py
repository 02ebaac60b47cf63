"""The trace cache: expensive model outputs saved under a name derived from the config that
produced them and the trace format version, written atomically, reused on rerun, rebuilt when
missing, unreadable, made by another config or an older format, and recomputed on request."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ttamer.fileio import portable_path
from ttamer.traces.trace import Trace, load_trace, save_trace

log = logging.getLogger(__name__)


# What a producer puts in a trace; bumped when that changes, so that older cached traces are
# rebuilt. 2: meta["exit_head_cost"] and meta["backbone_group"] (stage skipping).
TRACE_FORMAT = 2


def config_key(config: Mapping[str, Any]) -> str:
    """16 hex digits of the SHA-256 of the config and :data:`TRACE_FORMAT` as canonical JSON."""
    payload = {"config": config, "trace_format": TRACE_FORMAT}
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def content_hash(trace: Trace) -> str:
    """SHA-256 of a trace's arrays, names and unit (not its meta): stored in the cached trace's
    meta and checked on every reuse, so a cached file rewritten with other outputs is rebuilt."""
    h = hashlib.sha256()
    arrays = [trace.labels, trace.pred, trace.conf, trace.cost]
    if trace.probs is not None:
        arrays.append(trace.probs)
    for arr in arrays:
        h.update(str((arr.dtype.str, arr.shape)).encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    h.update(json.dumps([list(trace.stage_names), trace.cost_unit]).encode())
    return h.hexdigest()


def cache_path(cache_dir: str | Path, name: str, config: Mapping[str, Any]) -> Path:
    return Path(cache_dir) / f"{name}-{config_key(config)}.npz"


LOCK_TIMEOUT_S = 6 * 3600.0
"""How long a job waits for another job building the same cached trace (``TTAMER_CACHE_LOCK_TIMEOUT``)."""


@contextmanager
def cache_lock(path: Path) -> Iterator[None]:
    """Hold ``<folder>/.locks/<file>.lock`` while a cached file is checked and, if need be, built: jobs that
    need the same trace (parallel launchers, several machines on one shared folder) build it
    once; the others wait, then reuse it. The lock is the operating system's (a job that dies
    releases it); waiting longer than the timeout raises :class:`TimeoutError` naming the lock."""
    from filelock import FileLock, Timeout

    timeout = float(os.environ.get("TTAMER_CACHE_LOCK_TIMEOUT", LOCK_TIMEOUT_S))
    lock_path = path.parent / ".locks" / (path.name + ".lock")  # kept apart from the cached files
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=timeout, poll_interval=0.2)
    except Timeout:
        raise TimeoutError(
            f"waited {timeout:g} s for {portable_path(lock_path)}: another job is still building "
            "this trace (TTAMER_CACHE_LOCK_TIMEOUT sets the wait)"
        ) from None
    try:
        yield
    finally:
        lock.release()


def cached_trace(
    name: str,
    config: Mapping[str, Any],
    produce: Callable[[], Trace],
    cache_dir: str | Path,
    recompute: bool = False,
) -> tuple[Trace, bool]:
    """The trace for ``config``: from the cache when valid, else ``produce()`` (then cached).

    Returns ``(trace, reused)``. The file is ``<cache_dir>/<name>-<config key>.npz``; the trace's
    ``meta`` records the key and the config, and a file whose key does not match is rebuilt.
    Concurrent callers for the same file build it once (:func:`cache_lock`)."""
    with cache_lock(cache_path(cache_dir, name, config)):
        return _cached_trace(name, config, produce, cache_dir, recompute)


def _cached_trace(
    name: str,
    config: Mapping[str, Any],
    produce: Callable[[], Trace],
    cache_dir: str | Path,
    recompute: bool,
) -> tuple[Trace, bool]:
    key = config_key(config)
    path = cache_path(cache_dir, name, config)
    if path.exists() and not recompute:
        try:
            trace = load_trace(path)
            if trace.meta.get("cache_key") != key:
                log.warning("cached trace %s was made by another config: rebuilding", portable_path(path))
            elif trace.meta.get("content_sha256") != content_hash(trace):
                log.warning(
                    "cached trace %s does not match its content hash: rebuilding", portable_path(path)
                )
            else:
                log.info("reusing cached trace %s", portable_path(path))
                return trace, True
        except Exception as exc:  # any unreadable file: BadZipFile, CRC, EOFError, FieldError, ...
            log.warning(
                "cached trace %s is unreadable (%s: %s): rebuilding",
                portable_path(path),
                type(exc).__name__,
                exc,
            )
    trace = produce()
    meta = {
        **trace.meta,
        "cache_key": key,
        "config": json.dumps(config, sort_keys=True, default=str),
        "trace_format": str(TRACE_FORMAT),
        "content_sha256": content_hash(trace),
    }
    trace = replace(trace, meta=meta)
    save_trace(trace, path)
    log.info("cached trace %s", portable_path(path))
    return trace, False


# ------------------------------------------------------------------------- trained weights
# Model workloads also keep the trained model's weights next to their cached trace (same name
# and config key, ``.weights.pt``: a torch state dict, loaded with ``weights_only=True``), so
# that the model behind a trace can be served (ttamer.serving) without training it again.

# workload name -> module with ``produce_with_model(config, out_dir) -> (Trace, model)`` and
# ``untrained_model(config) -> model`` (the architecture, to load weights into)
MODEL_WORKLOADS: dict[str, str] = {
    "digits": "ttamer.workloads.vision.digits",
    "fashion_mnist": "ttamer.workloads.vision.fashion_mnist",
    "sst2_minilm": "ttamer.workloads.text.sst2_minilm",
}


def weights_path(cache_dir: str | Path, name: str, config: Mapping[str, Any]) -> Path:
    return Path(cache_dir) / f"{name}-{config_key(config)}.weights.pt"


def save_weights(model: Any, path: str | Path) -> None:
    """The model's state dict, written atomically."""
    import io

    import torch

    from ttamer.fileio import atomic_write_bytes

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
    name: str,
    config: Mapping[str, Any],
    cache_dir: str | Path,
    out_dir: str | Path = ".",
    recompute: bool = False,
) -> tuple[Any, Trace, bool]:
    """The trained model of workload ``name`` for ``config`` and its trace: ``(model, trace,
    reused)``. Both come from the cache when the trace and the weights saved with it are there
    and valid; otherwise the workload is trained again and both are (re)written (the trace is
    rebuilt too, so that it is always the trace of the saved weights)."""
    if name not in MODEL_WORKLOADS:
        raise ValueError(f"no trained model for workload {name!r}; known: {sorted(MODEL_WORKLOADS)}")
    with cache_lock(cache_path(cache_dir, name, config)):
        return _cached_model(name, config, cache_dir, out_dir, recompute)


def _cached_model(
    name: str, config: Mapping[str, Any], cache_dir: str | Path, out_dir: str | Path, recompute: bool
) -> tuple[Any, Trace, bool]:
    import importlib

    module = importlib.import_module(MODEL_WORKLOADS[name])
    key = config_key(config)
    tpath, wpath = cache_path(cache_dir, name, config), weights_path(cache_dir, name, config)
    if tpath.exists() and wpath.exists() and not recompute:
        try:
            trace = load_trace(tpath)
            if trace.meta.get("cache_key") == key and trace.meta.get("content_sha256") == content_hash(trace):
                model = load_weights(module.untrained_model(dict(config)), wpath)
                log.info("reusing cached trace %s and weights %s", portable_path(tpath), portable_path(wpath))
                return model, trace, True
            log.warning("cached trace %s: other config or content: rebuilding", portable_path(tpath))
        except Exception as exc:  # unreadable or mismatched files: rebuild both
            log.warning(
                "cached model %s is unusable (%s: %s): rebuilding",
                portable_path(wpath),
                type(exc).__name__,
                exc,
            )
    elif tpath.exists() and not recompute:
        log.warning(
            "cached trace %s has no saved weights: training again (trace rebuilt)", portable_path(tpath)
        )
    trained: dict[str, Any] = {}

    def produce() -> Trace:
        trace, trained["model"] = module.produce_with_model(dict(config), Path(out_dir))
        return trace

    trace, _ = _cached_trace(name, config, produce, cache_dir, recompute=True)
    save_weights(trained["model"], wpath)
    log.info("saved weights %s", portable_path(wpath))
    return trained["model"], trace, False
