"""A check of the ``imagenet_timm`` workload's inference against timm's published accuracy
(README: workloads): the top-1 accuracy the workload measures for a few pretrained models on a
validation subset (its own image listing, preprocessing and batched inference, as a cascade stage
runs them), next to timm's ``results-imagenet.csv`` at the same image size. ``scripts/
verify_imagenet.py`` is the command line.

A subset of ``n`` images measures top-1 with a sampling error: the 95% margin printed is
``1.96 * sqrt(p (1 - p) / n)`` (``p``: the published accuracy; binomial, conservative for a
subset drawn per class), e.g. about 1.2 points at 80% on 10,000 images (10 per class)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ttamer.errors import FieldError
from ttamer.workloads.vision.imagenet_timm.config import ImageNetTimmConfig


@dataclass(frozen=True)
class TopOne:
    """One model's measured top-1 (``correct`` of ``images``) at ``img_size`` pixels with
    ``crop_pct``, and timm's published top-1 there (percent)."""

    model: str
    img_size: int
    crop_pct: float
    images: int
    correct: int
    published: float

    @property
    def measured(self) -> float:
        """Measured top-1, percent."""
        return 100.0 * self.correct / self.images

    @property
    def margin95(self) -> float:
        """The subset's 95% sampling margin of top-1 around the published value, points."""
        p = min(max(self.published / 100.0, 0.0), 1.0)
        return 100.0 * 1.96 * math.sqrt(p * (1.0 - p) / self.images)


def tagged_name(model: str) -> str:
    """``model`` with its default pretrained tag (``resnet50`` -> ``resnet50.a1_in1k``), as
    timm's results tables name models."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(model)
    if cfg is None or "." in model or not getattr(cfg, "tag", None):
        return model
    return f"{cfg.architecture}.{cfg.tag}"


def published_top1(accuracy: pd.DataFrame, model: str, img_size: int) -> float:
    """timm's published top-1 of ``model`` at ``img_size`` from an accuracy table
    (:func:`ttamer.workloads.vision.timm_tables.read_accuracy`); FieldError ``models`` when absent."""
    name = tagged_name(model)
    rows = accuracy[accuracy["model"].isin([model, name])]
    if rows.empty:
        raise FieldError("models", f"{name!r} is not in the accuracy table")
    at = rows[rows["img_size"] == int(img_size)]
    if at.empty:
        sizes = sorted(int(s) for s in rows["img_size"])
        raise FieldError(
            "models", f"{name!r} is published at image size(s) {sizes}, not at {img_size} (use_test_size?)"
        )
    return float(at["top1"].iloc[0])


def measure_top1(config: ImageNetTimmConfig, seed: int, accuracy: pd.DataFrame) -> list[TopOne]:
    """Each of ``config.models`` run on the validation subset exactly as a cascade stage runs
    (listing, preprocessing, batching, weights), with its published top-1."""
    from ttamer.workloads.vision.imagenet_timm.cascade import classify, plans, stage_model
    from ttamer.workloads.vision.imagenet_timm.data import read_split, val_label_files
    from ttamer.workloads.vision.imagenet_timm.running import Job

    job = Job.start(config, seed)
    split, space = read_split(
        job.data_dir, "val", config.val_per_class, None, config.labels, seed, val_label_files(config)
    )
    if space != "imagenet":
        raise FieldError("data_dir", f"{job.data_dir / 'val'} is not labelled with ImageNet-1k wnids")
    out = []
    for plan in plans(job, None):
        published = published_top1(accuracy, plan.name, plan.img_size)  # fails before any model runs
        model = stage_model(plan.name, job)
        pred = classify(model, split, plan.transform, job)[0]
        correct = int(np.sum(pred == split.labels))
        crop = float(plan.data_cfg.get("crop_pct") or 0.0)
        out.append(TopOne(plan.name, plan.img_size, crop, len(split.paths), correct, published))
        del model
    return out


def report(results: list[TopOne], tolerance: float) -> pd.DataFrame:
    """One row per model: ``model``, ``img_size``, ``crop_pct``, ``images``, ``measured_top1``,
    ``published_top1``, ``diff`` (points), ``margin95`` (points), ``within`` (|diff| <=
    ``tolerance``)."""
    rows = [
        {"model": r.model, "img_size": r.img_size, "crop_pct": r.crop_pct, "images": r.images,
         "measured_top1": round(r.measured, 3), "published_top1": r.published,
         "diff": round(r.measured - r.published, 3), "margin95": round(r.margin95, 3),
         "within": abs(r.measured - r.published) <= tolerance}
        for r in results
    ]  # fmt: skip
    return pd.DataFrame(rows)
