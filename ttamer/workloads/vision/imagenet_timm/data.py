"""ImageNet in ``ImageFolder`` layout for the ``imagenet_timm`` workload (README: workloads):
``<data_dir>/train/<wnid>/*`` and ``<data_dir>/val/<wnid>/*`` (the validation images sorted into
class folders, as timm's and torchvision's ImageNet scripts expect), or the validation images in
their raw flat layout ``<data_dir>/val/ILSVRC2012_val_*.JPEG`` with a labels file
(:mod:`~ttamer.workloads.vision.imagenet_timm.raw_val`). When every class folder is
an ImageNet-1k WordNet id, labels are ImageNet-1k indices (the pretrained classifiers' output
order; any subset of the 1000 classes works); otherwise (``labels: folder``) they are the
folders' sorted order. Images are preprocessed by each model's timm evaluation transform."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from ttamer.errors import FieldError
from ttamer.workloads.base import resolve_path
from ttamer.workloads.vision.imagenet_timm.config import ImageNetTimmConfig
from ttamer.workloads.vision.imagenet_timm.raw_val import ValLabels, flat_val_wnids


@dataclass(frozen=True)
class ImageSplit:
    """Image files and their labels (in the label space of the run)."""

    paths: tuple[str, ...]
    labels: NDArray[np.int64]
    classes: tuple[str, ...]
    root: str = ""  # the folder the paths lie in (``<data_dir>/<split>``)


def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k WordNet ids in the pretrained classifiers' output order."""
    from timm.data import ImageNetInfo

    return tuple(str(w) for w in ImageNetInfo().label_names())


def label_space(classes: Sequence[str], labels: str) -> str:
    """``imagenet`` or ``folder`` for class folders ``classes`` (``labels``: the config's choice)."""
    if labels != "auto":
        if labels == "imagenet":
            unknown = sorted(set(classes) - set(imagenet_wnids()))
            if unknown:
                raise FieldError(
                    "labels", f"imagenet labels need ImageNet-1k wnid folders; not wnids: {unknown[:5]}"
                )
        return labels
    return "imagenet" if set(classes) <= set(imagenet_wnids()) else "folder"


def is_flat(root: Path) -> bool:
    """Whether ``root`` holds images and no folders (ImageNet's raw val layout)."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    entries = list(root.iterdir())
    images = any(e.is_file() and e.suffix.lower() in IMG_EXTENSIONS for e in entries)
    return images and not any(e.is_dir() for e in entries)


def folder_listing(root: Path) -> tuple[list[str], NDArray[np.int64], tuple[str, ...]]:
    """The images of an ``ImageFolder`` tree: paths, class indices (into the sorted class
    folders), class folders; ordered by class, then file name."""
    from torchvision.datasets import ImageFolder

    try:
        folder = ImageFolder(str(root))
    except (FileNotFoundError, RuntimeError) as exc:
        raise FieldError("data_dir", f"{root}: {exc}") from None
    targets = np.asarray(folder.targets, dtype=np.int64)
    return [str(p) for p, _ in folder.samples], targets, tuple(folder.classes)


def flat_listing(root: Path, spec: ValLabels | None) -> tuple[list[str], NDArray[np.int64], tuple[str, ...]]:
    """The images of a flat val folder labelled by ``spec`` (:mod:`.raw_val`), listed as
    :func:`folder_listing` lists the same images sorted into wnid folders."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    if spec is None:
        raise FieldError(
            "val_labels",
            f"{root} holds images without class folders (ImageNet's raw val layout): name its labels "
            "file in val_labels (the devkit's ILSVRC2012_validation_ground_truth.txt, with meta.mat or "
            "val_label_map, or Kaggle's LOC_val_solution.csv)",
        )
    names = sorted(e.name for e in root.iterdir() if e.is_file() and e.suffix.lower() in IMG_EXTENSIONS)
    wnids = flat_val_wnids(names, spec)
    classes = tuple(sorted(set(wnids)))
    index = {w: i for i, w in enumerate(classes)}
    order = sorted(range(len(names)), key=lambda i: (index[wnids[i]], names[i]))
    targets = np.array([index[wnids[i]] for i in order], dtype=np.int64)
    return [str(root / names[i]) for i in order], targets, classes


def label_mapping(classes: Sequence[str], space: str, root: Path) -> NDArray[np.int64]:
    """Class index -> label: ImageNet-1k indices (``space`` imagenet) or the classes' order."""
    if space != "imagenet":
        return np.arange(len(classes), dtype=np.int64)
    index = {w: i for i, w in enumerate(imagenet_wnids())}
    missing = [c for c in classes if c not in index]
    if missing:
        raise FieldError("data_dir", f"{root} has classes that are not ImageNet-1k wnids: {missing[:5]}")
    return np.array([index[c] for c in classes], dtype=np.int64)


def read_split(
    data_dir: Path, split: str, per_class: int | None, space: str | None, labels: str, seed: int,
    val_labels: ValLabels | None = None,
) -> tuple[ImageSplit, str]:  # fmt: skip
    """The images of ``<data_dir>/<split>`` (``ImageFolder`` layout; for val also the raw flat
    layout labelled by ``val_labels``), ``per_class`` of each class drawn at random (None: all),
    in a fixed order (by class, then file name); and the label space used."""
    root = data_dir / split
    if not root.is_dir():
        raise FieldError(
            "data_dir",
            f"{root} is not a folder: expected ImageNet as <data_dir>/{split}/<wnid>/<image> "
            "(ImageFolder layout)" + (" or <data_dir>/val/<image> with val_labels" if split == "val" else ""),
        )
    if split == "val" and is_flat(root):
        paths, targets, classes = flat_listing(root, val_labels)
    else:
        if split == "val" and val_labels is not None:
            raise FieldError("val_labels", f"{root} has class folders; val_labels is for a flat val folder")
        paths, targets, classes = folder_listing(root)
    space = space or label_space(classes, labels)
    mapping = label_mapping(classes, space, root)
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    keep: list[int] = []
    for c in range(len(classes)):
        idx = np.flatnonzero(targets == c)
        if per_class is not None and len(idx) > per_class:
            idx = np.sort(rng.choice(idx, size=per_class, replace=False))
        keep.extend(int(i) for i in idx)
    if not keep:
        raise FieldError("data_dir", f"{root} holds no images")
    return ImageSplit(tuple(paths[i] for i in keep), mapping[targets[keep]], classes, str(root)), space


class ImageFiles(torch.utils.data.Dataset[tuple[torch.Tensor, int]]):
    """Images read with PIL (RGB) and passed through a timm transform."""

    def __init__(self, split: ImageSplit, transform: Any):
        self.split = split
        self.transform = transform

    def __len__(self) -> int:
        return len(self.split.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from torchvision.datasets.folder import default_loader

        return self.transform(default_loader(self.split.paths[i])), int(self.split.labels[i])


def eval_transform(model: nn.Module | str, use_test_size: bool) -> tuple[Any, dict[str, Any]]:
    """timm's evaluation preprocessing (resize, centre crop, normalisation) for ``model`` (a
    model, or a timm name: its pretrained config), and the data config it came from."""
    from timm.data import create_transform, resolve_data_config

    if isinstance(model, str):
        from timm.models import get_pretrained_cfg

        pretrained_cfg = get_pretrained_cfg(model)
        cfg_dict = pretrained_cfg.to_dict() if pretrained_cfg is not None else None
        data_cfg = resolve_data_config(pretrained_cfg=cfg_dict, use_test_size=use_test_size)
    else:
        data_cfg = resolve_data_config(model=model, use_test_size=use_test_size)
    return create_transform(**data_cfg, is_training=False), data_cfg


def loader(split: ImageSplit, transform: Any, cfg: ImageNetTimmConfig, device: torch.device) -> Any:
    """The images of ``split`` in order, in batches of ``cfg.batch_size``: (images, labels)."""
    return torch.utils.data.DataLoader(
        ImageFiles(split, transform),
        batch_size=cfg.batch_size,
        shuffle=False,
        num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=cfg.persistent_workers and cfg.num_workers > 0,
    )


def val_label_files(cfg: ImageNetTimmConfig) -> ValLabels | None:
    """The flat val folder's label files named by the config (None: class folders)."""
    if not cfg.val_labels:
        return None
    label_map = resolve_path(cfg.val_label_map) if cfg.val_label_map else None
    return ValLabels(resolve_path(cfg.val_labels), label_map)


def example_images(split: ImageSplit, transform: Any, n: int = 64) -> torch.Tensor:
    """Up to ``n`` preprocessed images (N, C, H, W): the latency measurement's inputs."""
    data = ImageFiles(split, transform)
    return torch.stack([data[i][0] for i in range(min(n, len(data)))])
