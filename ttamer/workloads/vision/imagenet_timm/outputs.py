"""The cascade's per-model output cache (README: workloads): each model's outputs on the traced
validation images, and its measured latency, kept on disk so that a new cascade of models seen
before (reordered, a subset, another cost source, another batch size) runs no inference.

A model's **outputs** (``pred``, ``conf`` and, when kept, ``probs``) are keyed only by what they
depend on (:func:`outputs_key`): the timm model name, its weights (pretrained: the pretrained
config's architecture, tag and source; random: the seed they were drawn with), the images (the
files traced, relative to the val folder, their sizes, labels and label space: this covers the val
listing, ``val_per_class`` and the subset seed), the preprocessing (timm's resolved data config:
input size, crop, mean/std, interpolation; and ``use_test_size``) and the numeric precision
(bf16 or fp16 autocast changes the logits; the device, memory layout and torch.compile do not
beyond rounding, so an entry made on a GPU serves a CPU run). Costs, order and stage subsets are
applied afterwards.

A model's **measured latency** table is keyed (:func:`latency_key`) by the model name, its input
size, the device it ran on and the environment label of that device (GPU name or CPU type, CPU
count, torch threads, library versions), the precision, torch.compile, channels_last and the
latency settings (``batch_sizes``, ``warmup``, ``repeats``, ``threads``): it is reused only for
the same hardware and timing protocol.

Files: ``<cache_dir>/imagenet_outputs/<model>-<key>.npz`` (outputs, the key's payload inside,
checked on reading) and ``<model>-latency-<key>.json``; written atomically under a file lock
(:func:`ttamer.traces.cache.cache_lock`), so concurrent jobs compute a model once. A file that is
unreadable or made for another key is recomputed; ``recompute: true`` recomputes every entry."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ttamer.fileio import atomic_write_bytes, open_npz, portable_path
from ttamer.traces.cache import digest
from ttamer.workloads.vision.imagenet_timm.data import ImageSplit

log = logging.getLogger(__name__)

FOLDER = "imagenet_outputs"
FORMAT = 1  # bumped when what an entry holds changes


@dataclass(frozen=True)
class ModelOutputs:
    """One model's outputs on the traced images, in the split's order: ``pred`` (N,) class
    indices, ``conf`` (N,) max-softmax, ``probs`` (N, C) float32 softmax or None, and the
    model's number of classes."""

    pred: NDArray[np.int64]
    conf: NDArray[np.float64]
    probs: NDArray[np.float32] | None
    num_classes: int


def split_digest(split: ImageSplit, space: str) -> str:
    """The identity of the traced images: each file relative to the split's folder, its size in
    bytes and its label (in order), and the label space (SHA-256, 16 hex digits)."""
    h = hashlib.sha256(f"{space}\n".encode())
    root = Path(split.root) if split.root else None
    for path, label in zip(split.paths, split.labels.tolist(), strict=True):
        p = Path(path)
        rel = p.relative_to(root).as_posix() if root is not None and p.is_relative_to(root) else p.as_posix()
        h.update(f"{rel}\t{p.stat().st_size}\t{label}\n".encode())
    return h.hexdigest()[:16]


def weights_id(name: str, pretrained: bool, seed: int) -> dict[str, Any]:
    """The weights of timm model ``name``: its pretrained config's architecture, tag and where
    they download from; or the seed of random weights."""
    if not pretrained:
        return {"pretrained": False, "seed": int(seed)}
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    fields = ("architecture", "tag", "hf_hub_id", "url", "file")
    return {"pretrained": True, **{k: getattr(cfg, k, None) for k in fields}}


def _plain(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


AUTOCAST_NAMES = {"fp32": "float32", "fp16": "float16-autocast", "bf16": "bfloat16-autocast"}
"""How the key names each inference precision (the first two as before bf16 existed)."""


def outputs_key(
    name: str, weights: dict[str, Any], images: str, data_cfg: dict[str, Any], use_test_size: bool,
    precision: str,
) -> dict[str, Any]:  # fmt: skip
    """The key payload of a model's outputs (see the module docstring); ``precision``: the
    autocast in effect (fp32 | fp16 | bf16)."""
    return {
        "format": FORMAT,
        "model": name,
        "weights": weights,
        "images": images,
        "preprocessing": {k: _plain(v) for k, v in sorted(data_cfg.items())},
        "use_test_size": bool(use_test_size),
        "precision": AUTOCAST_NAMES[precision],
    }


def latency_key(
    name: str, input_size: Any, device: str, env: dict[str, str], precision: str, channels_last: bool,
    latency: dict[str, Any], compile: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """The key payload of a model's measured latency (see the module docstring); fp32 and fp16
    keep the keys they had as ``amp`` false and true; bf16 and ``compile`` are keyed when set."""
    key: dict[str, Any] = {
        "format": FORMAT, "model": name, "input_size": _plain(input_size), "device": device,
        "environment": env, "amp": precision == "fp16", "channels_last": bool(channels_last),
        "latency": latency,
    }  # fmt: skip
    if precision == "bf16":
        key["precision"] = precision
    if compile:
        key["compile"] = True
    return key


def _stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


@dataclass(frozen=True)
class OutputCache:
    """The cache folder (``<cache_dir>/imagenet_outputs``); ``recompute``: ignore entries."""

    folder: Path
    recompute: bool = False

    def outputs_path(self, key: dict[str, Any]) -> Path:
        return self.folder / f"{_stem(key['model'])}-{digest(key)}.npz"

    def latency_path(self, key: dict[str, Any]) -> Path:
        return self.folder / f"{_stem(key['model'])}-latency-{digest(key)}.json"

    def load_outputs(self, key: dict[str, Any], n: int, need_probs: bool) -> ModelOutputs | None:
        """The cached outputs for ``key`` (``n`` images; with probabilities when
        ``need_probs``), or None when absent, stale or unreadable."""
        path = self.outputs_path(key)
        if self.recompute or not path.is_file():
            return None
        try:
            with open_npz(path) as npz:
                stored = json.loads(str(npz["key"]))
                if stored != json.loads(json.dumps(key)):
                    log.warning("cached outputs %s were made for another key: recomputing",
                                portable_path(path))  # fmt: skip
                    return None
                if need_probs and "probs" not in npz:
                    return None  # cached without probabilities: recomputed with them
                pred, conf = npz["pred"].astype(np.int64), npz["conf"].astype(np.float64)
                probs = npz["probs"].astype(np.float32) if need_probs else None
                num_classes = int(npz["num_classes"])
        except Exception as exc:  # any unreadable file: recompute it
            log.warning("cached outputs %s unreadable (%s: %s): recomputing", portable_path(path),
                        type(exc).__name__, exc)  # fmt: skip
            return None
        if pred.shape != (n,) or conf.shape != (n,) or (probs is not None and probs.shape[0] != n):
            log.warning("cached outputs %s have another shape: recomputing", portable_path(path))
            return None
        log.info("reusing cached outputs %s", portable_path(path))
        return ModelOutputs(pred, conf, probs, num_classes)

    def save_outputs(self, key: dict[str, Any], out: ModelOutputs, meta: dict[str, str]) -> None:
        """Write ``out`` for ``key`` atomically; ``meta`` (device, versions) is kept beside it."""
        arrays: dict[str, Any] = {
            "key": np.array(json.dumps(key, sort_keys=True)), "pred": out.pred, "conf": out.conf,
            "num_classes": np.array(out.num_classes), "meta": np.array(json.dumps(meta, sort_keys=True)),
        }  # fmt: skip
        if out.probs is not None:
            arrays["probs"] = out.probs.astype(np.float32)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(self.outputs_path(key), buf.getvalue())

    def load_latency(self, key: dict[str, Any]) -> pd.DataFrame | None:
        """The cached latency table for ``key`` (no ``stage`` column), or None."""
        path = self.latency_path(key)
        if self.recompute or not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            if data["key"] != json.loads(json.dumps(key)):
                return None
            table = pd.DataFrame(data["table"], columns=data["columns"])
        except Exception as exc:  # unreadable: measure again
            log.warning("cached latency %s unreadable (%s): measuring again", portable_path(path), exc)
            return None
        log.info("reusing cached latency %s", portable_path(path))
        return table

    def save_latency(self, key: dict[str, Any], table: pd.DataFrame) -> None:
        """Write ``table`` for ``key`` atomically (floats kept exactly: JSON of Python floats)."""
        payload = {"key": key, "columns": list(table.columns), "table": table.to_dict(orient="records")}
        text = json.dumps(payload, sort_keys=True, indent=1, default=_scalar)
        atomic_write_bytes(self.latency_path(key), text.encode())


def _scalar(value: Any) -> Any:
    """numpy scalars as Python numbers (for JSON)."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
