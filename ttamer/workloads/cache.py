"""The trace cache: expensive model outputs saved under a name derived from the config that
produced them and the trace format version, written atomically, reused on rerun, rebuilt when
missing, unreadable, made by another config or an older format, and recomputed on request."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from ttamer.traces import Trace, load_trace, save_trace

log = logging.getLogger(__name__)


# What a producer puts in a trace; bumped when that changes, so that older cached traces are
# rebuilt. 2: meta["exit_head_cost"] and meta["backbone_group"] (stage skipping).
TRACE_FORMAT = 2


def config_key(config: Mapping[str, Any]) -> str:
    """16 hex digits of the SHA-256 of the config and :data:`TRACE_FORMAT` as canonical JSON."""
    payload = {"config": config, "trace_format": TRACE_FORMAT}
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_path(cache_dir: str | Path, name: str, config: Mapping[str, Any]) -> Path:
    return Path(cache_dir) / f"{name}-{config_key(config)}.npz"


def cached_trace(
    name: str,
    config: Mapping[str, Any],
    produce: Callable[[], Trace],
    cache_dir: str | Path,
    recompute: bool = False,
) -> tuple[Trace, bool]:
    """The trace for ``config``: from the cache when valid, else ``produce()`` (then cached).

    Returns ``(trace, reused)``. The file is ``<cache_dir>/<name>-<config key>.npz``; the trace's
    ``meta`` records the key and the config, and a file whose key does not match is rebuilt."""
    key = config_key(config)
    path = cache_path(cache_dir, name, config)
    if path.exists() and not recompute:
        try:
            trace = load_trace(path)
            if trace.meta.get("cache_key") == key:
                log.info("reusing cached trace %s", path)
                return trace, True
            log.warning("cached trace %s was made by another config: rebuilding", path)
        except Exception as exc:  # any unreadable file: BadZipFile, CRC, EOFError, FieldError, ...
            log.warning("cached trace %s is unreadable (%s: %s): rebuilding", path, type(exc).__name__, exc)
    trace = produce()
    meta = {
        **trace.meta,
        "cache_key": key,
        "config": json.dumps(config, sort_keys=True, default=str),
        "trace_format": str(TRACE_FORMAT),
    }
    trace = replace(trace, meta=meta)
    save_trace(trace, path)
    log.info("cached trace %s", path)
    return trace, False
