"""Exit heads trained from cached pooled features (README: workloads): the backbone of
``mode: exits`` is frozen, so each exit head's input never changes. One backbone pass over the
training images computes, for every trained exit, the pooled feature its head consumes (the
head's ``pool_features``: pooling, and for transformers the final norm; then only dropout and
the linear layer are trained), and the heads train for all epochs from those features: no image
is decoded and no backbone runs after the first pass.

The features are kept on disk, ``<cache_dir>/imagenet_features/<model>-<key>.pt`` (float16, or
float32 where float16 would overflow; written atomically under a file lock), keyed by what they
depend on (:func:`features_key`): the timm model and its weights, the exits (their stages and
pooling), the training images (files, sizes, labels), the preprocessing and the precision. A
later run with other head-training settings (epochs, lr, dropout, seed of the order) reuses
them; ``recompute: true`` recomputes them.

Training is as before the cache: AdamW on the mean cross-entropy of the trained heads, batches
of ``batch_size`` (in the split's order, or a seeded new order per epoch with ``train.shuffle``),
under ``train.max_seconds``. With float32 features and the split's order it equals training with
a backbone pass per batch (tests/integration/test_imagenet_exits_features.py)."""

from __future__ import annotations

import io
import json
import logging
import re
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ttamer.fileio import atomic_write_bytes, portable_path
from ttamer.traces.cache import cache_lock, digest
from ttamer.workloads.base import resolve_path
from ttamer.workloads.multi_exit import MultiExitNet
from ttamer.workloads.vision.imagenet_timm.outputs import weights_id
from ttamer.workloads.vision.imagenet_timm.running import Job, to_device
from ttamer.workloads.vision.timm_exits import StageInfo

log = logging.getLogger(__name__)

FOLDER = "imagenet_features"
FORMAT = 1  # bumped when what an entry holds changes

Features = dict[int, torch.Tensor]  # exit index -> pooled features (N, C_i)


def features_key(
    job: Job, stages: Sequence[StageInfo], heads: Sequence[int], images: str, data_cfg: dict[str, Any]
) -> dict[str, Any]:
    """The key payload of the pooled training features of the exits ``heads``: model, weights,
    the exits (module, channels) and their pooling, the images' identity ``images``, the
    preprocessing (timm's data config) and the precision."""
    cfg = job.config
    return {
        "format": FORMAT,
        "model": cfg.model,
        "weights": weights_id(cfg.model, cfg.pretrained, job.seed),
        "exits": [[stages[i].module, stages[i].num_chs] for i in heads],
        "token_pool": cfg.token_pool,
        "images": images,
        "preprocessing": {k: v if isinstance(v, (int, float, str)) else str(v) for k, v in data_cfg.items()},
        "use_test_size": cfg.use_test_size,
        "precision": job.precision,
    }


def features_path(job: Job, key: dict[str, Any]) -> Path:
    """Where the features of ``key`` are kept."""
    name = re.sub(r"[^\w.-]+", "_", job.config.model)
    return resolve_path(job.config.cache_dir) / FOLDER / f"{name}-{digest(key)}.pt"


@torch.no_grad()
def pooled_features(
    net: MultiExitNet, heads: Sequence[int], data: Iterable[Any], job: Job
) -> tuple[Features, torch.Tensor]:
    """One backbone pass over ``data`` (batches of images and labels): the pooled features
    (N, C_i) float32 of the exits ``heads`` (on the CPU) and the labels (N,). The segments run
    under the job's autocast, the pooling in float32 on their output."""
    parts: dict[int, list[torch.Tensor]] = {i: [] for i in heads}
    labels: list[torch.Tensor] = []
    net.eval()
    for x, y in data:
        h = to_device(x, job.device, job.config.channels_last)
        for i in range(max(heads) + 1):
            with job.autocast():
                h = net.segments[i](h)
            if i in parts:
                pooled = net.heads[i].pool_features(h.float())  # type: ignore[operator]
                parts[i].append(pooled.float().cpu())
        labels.append(torch.as_tensor(y, dtype=torch.int64))
    return {i: torch.cat(p) for i, p in parts.items()}, torch.cat(labels)


def save_features(path: Path, key: dict[str, Any], feats: Features, labels: torch.Tensor) -> None:
    """Write the features atomically: float16 where every value fits, else float32."""
    stored = {}
    for i, f in feats.items():
        half = f.half()
        stored[str(i)] = half if bool(torch.isfinite(half).all()) else f
    buf = io.BytesIO()
    torch.save({"key": json.dumps(key, sort_keys=True), "labels": labels, "features": stored}, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_features(path: Path, key: dict[str, Any]) -> tuple[Features, torch.Tensor] | None:
    """The features saved at ``path`` for ``key`` (as float32), or None (absent, unreadable or
    another key's)."""
    if not path.is_file():
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        if data["key"] != json.dumps(key, sort_keys=True):
            log.warning("feature cache %s holds another key: recomputing", portable_path(path))
            return None
        return {int(i): f.float() for i, f in data["features"].items()}, data["labels"]
    except Exception as exc:  # a torn or foreign file: recompute it
        log.warning("feature cache %s unreadable (%s): recomputing", portable_path(path), exc)
        return None


def cached_features(
    net: MultiExitNet, heads: Sequence[int], data: Iterable[Any], key: dict[str, Any], job: Job
) -> tuple[Features, torch.Tensor]:
    """The pooled features of the exits ``heads`` on ``data``: from the cache (``key``) unless
    ``recompute``, else computed (:func:`pooled_features`) and cached."""
    path = features_path(job, key)
    with cache_lock(path):
        found = None if job.config.recompute else load_features(path, key)
        if found is not None:
            log.info("exit-head features reused from %s", portable_path(path))
            return found
        start = time.perf_counter()
        feats, labels = pooled_features(net, heads, data, job)
        save_features(path, key, feats, labels)
        log.info("exit-head features of %d images computed in %.1f s, cached in %s", len(labels),
                 time.perf_counter() - start, portable_path(path))  # fmt: skip
    return feats, labels


def _head_parameters(net: MultiExitNet, heads: Sequence[int]) -> list[nn.Parameter]:
    """Freeze everything but the linear layers of the heads ``heads``; their parameters."""
    net.eval()
    net.requires_grad_(False)
    params: list[nn.Parameter] = []
    for i in heads:
        fc: nn.Module = net.heads[i].fc  # type: ignore[assignment]
        fc.requires_grad_(True)
        params.extend(fc.parameters())
    return params


def _epoch(
    net: MultiExitNet, feats: Features, labels: torch.Tensor, order: torch.Tensor, job: Job,
    opt: torch.optim.Optimizer, deadline: float,
) -> tuple[float, bool]:  # fmt: skip
    """One pass over the features in ``order``: the mean loss, and whether the deadline passed.
    The loss is summed on the device (no synchronisation per step)."""
    total, count, bs = torch.zeros((), device=job.device), 0, job.config.batch_size
    for start in range(0, len(order), bs):
        idx = order[start : start + bs]
        y = labels[idx]
        losses = [
            nn.functional.cross_entropy(net.heads[i].classify(f[idx].float()), y)  # type: ignore[operator]
            for i, f in feats.items()
        ]
        loss = torch.stack(losses).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        total, count = total + loss.detach() * len(idx), count + len(idx)
        if time.perf_counter() > deadline:
            return float(total) / max(count, 1), True
    return float(total) / max(count, 1), False


def train_heads(net: MultiExitNet, feats: Features, labels: torch.Tensor, job: Job) -> list[float]:
    """Train the heads of the exits in ``feats`` (exit -> pooled features (N, C)) on
    ``labels`` (N,): AdamW, ``train.epochs`` epochs under ``train.max_seconds``, the order
    shuffled per epoch when ``train.shuffle`` (seeded); returns the mean loss of each epoch."""
    from tqdm import tqdm

    train = job.config.train
    torch.manual_seed(job.seed)
    params = _head_parameters(net, list(feats))
    if not params or train.epochs == 0:
        return []
    opt = torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay)
    on_device = {i: f.to(job.device) for i, f in feats.items()}
    y = labels.to(job.device)
    order_rng = torch.Generator().manual_seed(job.seed)
    deadline = time.perf_counter() + (train.max_seconds if train.max_seconds is not None else float("inf"))
    history: list[float] = []
    for _ in tqdm(range(train.epochs), desc="train heads", unit="epoch", leave=False, disable=None):
        for i in feats:
            net.heads[i].drop.train()  # type: ignore[union-attr]
        n = len(y)
        order = torch.randperm(n, generator=order_rng) if train.shuffle else torch.arange(n)
        loss, stop = _epoch(net, on_device, y, order.to(job.device), job, opt, deadline)
        history.append(loss)
        if stop:
            break
    net.eval()
    net.requires_grad_(False)
    return history
