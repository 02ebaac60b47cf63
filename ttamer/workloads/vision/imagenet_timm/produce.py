"""ImageNet traces from pretrained timm models (README: workloads), in two modes:
``exits`` (:mod:`~ttamer.workloads.vision.imagenet_timm.exits`: one pretrained backbone cut at
its feature stages, trained exit heads) and ``cascade``
(:mod:`~ttamer.workloads.vision.imagenet_timm.cascade`: a list of pretrained classifiers, one per
stage). The config is :class:`~ttamer.workloads.vision.imagenet_timm.config.ImageNetTimmConfig`;
the images are read by :mod:`~ttamer.workloads.vision.imagenet_timm.data`. Pretrained weights
download from the Hugging Face Hub on first use (internet, or a filled ``HF_HOME`` cache); a GPU
is advised (``device: auto`` uses CUDA when present).
"""

from __future__ import annotations

import logging
from dataclasses import fields
from pathlib import Path

import torch

from ttamer.errors import FieldError
from ttamer.traces.trace import Trace
from ttamer.workloads.vision.imagenet_timm.cascade import cascade_trace
from ttamer.workloads.vision.imagenet_timm.config import ImageNetTimmConfig
from ttamer.workloads.vision.imagenet_timm.exits import exits_trace
from ttamer.workloads.vision.imagenet_timm.running import Job
from ttamer.workloads.vision.imagenet_timm.served import (  # noqa: F401  (the serving functions)
    held_out_requests,
    produce_with_model,
    untrained_model,
)

log = logging.getLogger(__name__)


def imagenet_trace(config: ImageNetTimmConfig, seed: int) -> Trace:
    """The trace of ``config`` (exits or cascade); ``seed``: the image subsets and the heads'
    training. Errors name the config field (``data_dir``, ``models``, ...)."""
    job = Job.start(config, seed)
    if job.device.type == "cpu":
        log.warning("imagenet_timm runs on the CPU: expect hours on ImageNet; a GPU is advised")
    torch.manual_seed(seed)
    return exits_trace(job) if config.mode == "exits" else cascade_trace(job)


def produce(config: ImageNetTimmConfig, seed: int, out_dir: Path) -> Trace:
    """The workload's trace (:func:`imagenet_trace`); errors about a config field name it as
    the command line does (``workload.<field>``)."""
    del out_dir  # the latency table is written by the runner from the trace's meta
    try:
        return imagenet_trace(config, seed)
    except FieldError as exc:
        if exc.field.split(".")[0] not in {f.name for f in fields(ImageNetTimmConfig)}:
            raise
        raise FieldError(f"workload.{exc.field}", exc.message) from None
