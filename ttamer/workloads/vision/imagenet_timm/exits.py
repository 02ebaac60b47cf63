"""``mode: exits`` of the ``imagenet_timm`` workload (README: workloads): one pretrained timm
backbone (``model``) cut at its feature stages, with an exit head after each
(:mod:`ttamer.workloads.vision.timm_exits`). The backbone stays frozen (and in eval mode, so its
batch-norm statistics are kept), the heads are trained on a per-class subset of the training
images, and the trace is every exit's output on a per-class subset of the validation images,
with each stage's latency measured on this machine (as in
:mod:`ttamer.workloads.trace_from_model`). With ``final_head: model`` the last exit is the
backbone's own pretrained classifier, so the last stage is the original model.

Stage skipping (:mod:`ttamer.model.skip_costs`): every stage shares one backbone
(``meta["backbone_group"]`` all 0) and ``meta["exit_head_cost"]`` is each exit head's measured
median alone (per image, at the first batch size)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ttamer.errors import FieldError
from ttamer.model.skip_costs import shared_backbone_groups, skip_meta
from ttamer.traces.trace import Trace
from ttamer.workloads.latency import environment, head_cost_per_request
from ttamer.workloads.multi_exit import MultiExitNet
from ttamer.workloads.vision.imagenet_timm.data import (
    ImageSplit,
    eval_transform,
    example_images,
    loader,
    read_split,
)
from ttamer.workloads.vision.imagenet_timm.models import exits_network
from ttamer.workloads.vision.imagenet_timm.running import (
    Job,
    Outputs,
    autocast,
    build_trace,
    measure,
    run_info,
    to_device,
)

log = logging.getLogger(__name__)


def heads_to_train(net: MultiExitNet, final_head: str) -> list[int]:
    """The exits whose heads are trained: all, or all but the model's own classifier."""
    n = net.n_stages
    return list(range(n - 1)) if final_head == "model" else list(range(n))


def _head_parameters(net: MultiExitNet, heads: Sequence[int]) -> list[nn.Parameter]:
    """Freeze everything but the heads ``heads``; their parameters."""
    net.eval()
    net.requires_grad_(False)
    params: list[nn.Parameter] = []
    for i in heads:
        net.heads[i].requires_grad_(True)
        params.extend(net.heads[i].parameters())
    return params


def _head_loss(net: MultiExitNet, x: Any, y: Any, job: Job, heads: Sequence[int]) -> torch.Tensor:
    """The mean cross-entropy of the heads ``heads`` on one batch (frozen features)."""
    x, y = to_device(x, job.device, job.config.channels_last), y.to(job.device)
    feats = []
    with torch.no_grad(), autocast(job.device, job.config.amp):
        h = x
        for i in range(max(heads) + 1):
            h = net.segments[i](h)
            feats.append(h)
    losses = [nn.functional.cross_entropy(net.heads[i](feats[i].float()), y) for i in heads]
    return torch.stack(losses).mean()


def train_heads(net: MultiExitNet, data: Any, job: Job, heads: Sequence[int]) -> list[float]:
    """Train the exit heads ``heads`` on frozen backbone features (the backbone in eval mode),
    AdamW under ``train.max_seconds``; returns the mean loss of each epoch."""
    from tqdm import tqdm

    train = job.config.train
    torch.manual_seed(job.seed)
    params = _head_parameters(net, heads)
    if not params or train.epochs == 0:
        return []
    opt = torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay)
    start, history, stop = time.perf_counter(), [], False
    for _ in tqdm(range(train.epochs), desc="train heads", unit="epoch", leave=False, disable=None):
        for i in heads:
            net.heads[i].train()
        total, count = 0.0, 0
        for x, y in data:
            loss = _head_loss(net, x, y, job, heads)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, count = total + float(loss.detach()) * len(y), count + len(y)
            if train.max_seconds is not None and time.perf_counter() - start > train.max_seconds:
                stop = True
                break
        history.append(total / max(count, 1))
        if stop:
            break
    net.eval()
    net.requires_grad_(False)
    return history


@torch.no_grad()
def exits_outputs(net: MultiExitNet, data: Any, job: Job) -> Outputs:
    """Every exit's outputs on the batches of ``data``."""
    out = Outputs()
    net.eval()
    for x, y in data:
        with autocast(job.device, job.config.amp):
            logits = net(to_device(x, job.device, job.config.channels_last))
        out.add(logits, y, job.config.store_probs)
    return out


def _splits(job: Job) -> tuple[ImageSplit, ImageSplit, str]:
    """The training and validation subsets and their label space (checked against the heads)."""
    cfg = job.config
    train_split, space = read_split(job.data_dir, "train", cfg.train_per_class, None, cfg.labels, job.seed)
    val_split, _ = read_split(job.data_dir, "val", cfg.val_per_class, space, cfg.labels, job.seed)
    if space == "folder" and train_split.classes != val_split.classes:
        raise FieldError("data_dir", "train/ and val/ have different class folders")
    if cfg.final_head == "model" and space != "imagenet":
        raise FieldError(
            "final_head", "the model's own classifier needs ImageNet-1k wnid class folders; use linear"
        )
    return train_split, val_split, space


def exits_trace(job: Job) -> Trace:
    """The multi-exit trace of ``job.config.model`` (see the module docstring)."""
    cfg, device = job.config, job.device
    train_split, val_split, space = _splits(job)
    net, stages = exits_network(cfg, 1000 if space == "imagenet" else len(train_split.classes))
    net = net.to(device)
    if cfg.channels_last:
        net = net.to(memory_format=torch.channels_last)
    transform, data_cfg = eval_transform(cfg.model, cfg.use_test_size)
    history = train_heads(
        net, loader(train_split, transform, cfg, device), job, heads_to_train(net, cfg.final_head)
    )
    log.info("exit heads trained on %d images: loss per epoch %s", len(train_split.paths), history)
    out = exits_outputs(net, loader(val_split, transform, cfg, device), job)
    table = measure(net, example_images(val_split, transform), job)
    b0 = job.b0
    cost = table[table["batch_size"] == b0].sort_values("stage")["median_ms"].to_numpy() / b0
    meta = {
        **run_info(job, space),
        "model": cfg.model,
        "final_head": cfg.final_head,
        "stages": ",".join(f"{s.module}:{s.num_chs}ch/{s.reduction}" for s in stages),
        "input_size": "x".join(str(v) for v in data_cfg["input_size"]),
        "n_train": str(len(train_split.paths)),
        "train_loss": ",".join(f"{v:.4f}" for v in history),
        **skip_meta(head_cost_per_request(table, b0), cost, shared_backbone_groups(net.n_stages)),
    }
    unit = f"ms per request (batch {b0}, {environment()['device']})"
    return build_trace(out, cost, [s.module for s in stages], unit, table, meta, b0)
