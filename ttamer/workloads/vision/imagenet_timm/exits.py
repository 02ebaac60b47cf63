"""``mode: exits`` of the ``imagenet_timm`` workload (README: workloads): one pretrained timm
backbone (``model``) cut at its feature stages (ResNet-style module sequences, EfficientNet,
MobileNetV3, or the transformer blocks of ViT/DeiT), with an exit head after each
(:mod:`ttamer.workloads.vision.timm_exits`; the stem is no exit). The backbone stays frozen (and
in eval mode, so its batch-norm statistics are kept); the heads are trained on a per-class subset
of the training images from pooled features computed by one backbone pass and cached
(:mod:`~ttamer.workloads.vision.imagenet_timm.features`); the trace is every exit's output on a
per-class subset of the validation images, with each stage's latency measured on this machine
(as in :mod:`ttamer.workloads.trace_from_model`) under the run's speed options (precision,
channels_last, compile). With ``final_head: model`` the last exit is the backbone's own
pretrained classifier, so the last stage is the original model.

Stage skipping (:mod:`ttamer.model.skip_costs`): every stage shares one backbone
(``meta["backbone_group"]`` all 0) and ``meta["exit_head_cost"]`` is each exit head's measured
median alone (per image, at the first batch size). The trained heads are served with the trace
(:mod:`~ttamer.workloads.vision.imagenet_timm.served`)."""

from __future__ import annotations

import logging
from typing import Any

import torch

from ttamer.errors import FieldError
from ttamer.model.skip_costs import shared_backbone_groups, skip_meta
from ttamer.traces.trace import Trace
from ttamer.workloads.latency import environment, head_cost_per_request
from ttamer.workloads.multi_exit import MultiExitNet
from ttamer.workloads.speed import compiled
from ttamer.workloads.vision.imagenet_timm.data import (
    ImageSplit,
    eval_transform,
    example_images,
    loader,
    read_split,
    val_label_files,
)
from ttamer.workloads.vision.imagenet_timm.features import cached_features, features_key, train_heads
from ttamer.workloads.vision.imagenet_timm.models import exits_network, trained_heads
from ttamer.workloads.vision.imagenet_timm.outputs import split_digest
from ttamer.workloads.vision.imagenet_timm.running import (
    Job,
    Outputs,
    build_trace,
    measure,
    run_info,
    to_device,
)
from ttamer.workloads.vision.timm_exits import StageInfo

log = logging.getLogger(__name__)


@torch.no_grad()
def exits_outputs(net: MultiExitNet, data: Any, job: Job) -> Outputs:
    """Every exit's outputs on the batches of ``data``."""
    out = Outputs()
    net.eval()
    for x, y in data:
        with job.autocast():
            logits = net(to_device(x, job.device, job.config.channels_last))
        out.add(logits, y, job.config.store_probs)
    return out


def splits(job: Job) -> tuple[ImageSplit, ImageSplit, str]:
    """The training and validation subsets and their label space (checked against the heads)."""
    cfg = job.config
    train_split, space = read_split(job.data_dir, "train", cfg.train_per_class, None, cfg.labels, job.seed)
    val_split, _ = read_split(
        job.data_dir, "val", cfg.val_per_class, space, cfg.labels, job.seed, val_labels=val_label_files(cfg)
    )
    if space == "folder" and train_split.classes != val_split.classes:
        raise FieldError("data_dir", "train/ and val/ have different class folders")
    if cfg.final_head == "model" and space != "imagenet":
        raise FieldError(
            "final_head", "the model's own classifier needs ImageNet-1k wnid class folders; use linear"
        )
    return train_split, val_split, space


def num_classes(space: str, split: ImageSplit) -> int:
    """The heads' classes: ImageNet-1k's 1000, or the class folders."""
    return 1000 if space == "imagenet" else len(split.classes)


def network(job: Job, n_classes: int) -> tuple[MultiExitNet, list[StageInfo]]:
    """The job's multi-exit network on its device (NHWC with ``channels_last``)."""
    net, stages = exits_network(job.config, n_classes, job.seed)
    net = net.to(job.device)
    if job.config.channels_last:
        net = net.to(memory_format=torch.channels_last)
    return net, stages


def fit_heads(
    net: MultiExitNet, runner: MultiExitNet, stages: list[StageInfo], split: ImageSplit, space: str, job: Job
) -> list[float]:
    """Train the heads (all, or all but the model's own classifier) from the cached pooled
    features of ``split``; ``runner``: ``net`` or its compiled view (the backbone pass)."""
    cfg = job.config
    heads = trained_heads(net.n_stages, cfg.final_head)
    if not heads:
        return []
    transform, data_cfg = eval_transform(cfg.model, cfg.use_test_size)
    key = features_key(job, stages, heads, split_digest(split, space), data_cfg)
    feats, labels = cached_features(runner, heads, loader(split, transform, cfg, job.device), key, job)
    history = train_heads(net, feats, labels, job)
    log.info("exit heads trained on %d images: loss per epoch %s", len(labels), history)
    return history


def exits_trace_and_model(job: Job) -> tuple[Trace, MultiExitNet]:
    """The multi-exit trace of ``job.config.model`` (see the module docstring) and the network
    with its trained heads."""
    cfg = job.config
    train_split, val_split, space = splits(job)
    net, stages = network(job, num_classes(space, train_split))
    runner = compiled(net, cfg.compile)
    history = fit_heads(net, runner, stages, train_split, space, job)
    transform, data_cfg = eval_transform(cfg.model, cfg.use_test_size)
    out = exits_outputs(runner, loader(val_split, transform, cfg, job.device), job)
    table = measure(runner, example_images(val_split, transform), job)
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
    unit = f"ms per request (batch {b0}, {environment(job.device)['device']})"
    return build_trace(out, cost, [s.module for s in stages], unit, table, meta, b0), net


def exits_trace(job: Job) -> Trace:
    """The multi-exit trace of ``job.config.model`` (see the module docstring)."""
    return exits_trace_and_model(job)[0]
