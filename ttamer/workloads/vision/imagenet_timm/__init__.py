"""ImageNet traces from pretrained timm models (README: workloads): a model cascade or one
backbone with exits. Importing the package registers :class:`ImageNetTimmConfig` (no torch); the
entry point is :mod:`ttamer.workloads.vision.imagenet_timm.produce`."""

from ttamer.workloads.vision.imagenet_timm.config import HeadTraining, ImageNetTimmConfig

__all__ = ["HeadTraining", "ImageNetTimmConfig"]
