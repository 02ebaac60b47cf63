"""Serving the ``imagenet_timm`` exits model (README: serving): the functions of
:class:`~ttamer.workloads.base.Implementation` that let
:func:`ttamer.workloads.trained.cached_model` keep the trained exit heads next to the trace
(``.weights.pt``: the trained heads' linear layers only, the backbone comes from its own
pretrained or seeded weights) and :mod:`ttamer.serving` replay the model on the trace's
held-out images. ``mode: exits`` only: a cascade trains nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path

import torch

from ttamer.errors import FieldError
from ttamer.serving.runtime import StagedModel, TorchStages
from ttamer.traces.trace import Trace
from ttamer.workloads.multi_exit import MultiExitNet
from ttamer.workloads.trace_from_model import check_trace_labels
from ttamer.workloads.vision.imagenet_timm.config import ImageNetTimmConfig
from ttamer.workloads.vision.imagenet_timm.data import ImageFiles, eval_transform
from ttamer.workloads.vision.imagenet_timm.exits import exits_trace_and_model, num_classes, splits
from ttamer.workloads.vision.imagenet_timm.models import exits_network
from ttamer.workloads.vision.imagenet_timm.running import Job


@contextmanager
def workload_fields() -> Iterator[None]:
    """Errors about a config field name it as the command line does (``workload.<field>``)."""
    try:
        yield
    except FieldError as exc:
        if exc.field.split(".")[0] not in {f.name for f in fields(ImageNetTimmConfig)}:
            raise
        raise FieldError(f"workload.{exc.field}", exc.message) from None


def exits_job(config: ImageNetTimmConfig, seed: int) -> Job:
    """The job of an exits-mode ``config`` (a FieldError ``mode`` otherwise)."""
    if config.mode != "exits":
        raise FieldError("mode", "only mode exits trains a model to serve (a cascade trains nothing)")
    return Job.start(config, seed)


def produce_with_model(config: ImageNetTimmConfig, seed: int, out_dir: Path) -> tuple[Trace, MultiExitNet]:
    """The exits trace and the network with its trained heads."""
    del out_dir  # the latency table travels in the trace's meta
    with workload_fields():
        torch.manual_seed(seed)
        return exits_trace_and_model(exits_job(config, seed))


def untrained_model(config: ImageNetTimmConfig, seed: int) -> MultiExitNet:
    """The exits network of ``config`` and ``seed`` with fresh heads (its backbone pretrained,
    or seeded as in the trace), on the CPU: the saved heads load into it."""
    with workload_fields():
        job = exits_job(config, seed)
        train_split, _, space = splits(job)
        net, _ = exits_network(config, num_classes(space, train_split), seed)
    return net.eval()


def held_out_requests(
    config: ImageNetTimmConfig, seed: int, model: MultiExitNet, trace: Trace
) -> tuple[StagedModel, torch.Tensor]:
    """The served model (on the run's device, float32) and the trace's validation images as
    requests (N, 3, H, W), preprocessed as traced and in the trace's order (N x 0.6 MB at
    224 px: meant for subsets); a ValueError when they are not the trace's (labels differ)."""
    with workload_fields():
        job = exits_job(config, seed)
        _, val_split, _ = splits(job)
    check_trace_labels(val_split.labels, trace)
    transform, _ = eval_transform(config.model, config.use_test_size)
    images = ImageFiles(val_split, transform)
    load: Callable[[int], torch.Tensor] = lambda i: images[i][0]  # noqa: E731
    return TorchStages(model, device=job.device), torch.stack([load(i) for i in range(len(images))])
