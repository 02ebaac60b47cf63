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


def digest(payload: Any) -> str:
    """16 hex digits of the SHA-256 of ``payload`` as canonical JSON (sorted keys, no spaces,
    ``str`` of what JSON cannot hold): the name of a cache entry made from ``payload``."""
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def config_key(config: Mapping[str, Any]) -> str:
    """The :func:`digest` of the config and :data:`TRACE_FORMAT`."""
    return digest({"config": config, "trace_format": TRACE_FORMAT})


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
        return cached_trace_unlocked(name, config, produce, cache_dir, recompute)


def cached_trace_unlocked(
    name: str,
    config: Mapping[str, Any],
    produce: Callable[[], Trace],
    cache_dir: str | Path,
    recompute: bool,
) -> tuple[Trace, bool]:
    """:func:`cached_trace` for a caller that already holds the file's :func:`cache_lock` (the lock
    is not re-entrant across processes' timeouts)."""
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
