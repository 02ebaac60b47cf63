"""The Fashion-MNIST workload's config (README: workloads): the fields, types and defaults of
``conf/workload/fashion_mnist.yaml`` (``ttamer-run --cfg job workload=fashion_mnist`` prints
them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ttamer.errors import FieldError, check_bounds
from ttamer.workloads.base import WorkloadConfig, register_workload
from ttamer.workloads.latency import LatencyConfig

DEFAULT_DATA_DIR = "/usr/share/datasets/fashion-mnist"  # the Debian package dataset-fashion-mnist
IMAGE_SIDE = 28


def _default_kwargs() -> dict[str, Any]:
    # stage widths (timm's default: 64, 128, 256, 512); a deep stem of three 3x3 convs with
    # 2 * stem_width = 16 channels (the default 7x7 stem is fixed at 64 channels, slow on CPU here).
    # Lists, as the app builds them from YAML (the model code passes them to timm as tuples).
    return {"channels": [16, 32, 64, 128], "stem_type": "deep", "stem_width": 8}


@dataclass(frozen=True)
class FashionMnistModelConfig:
    """``timm.create_model(name, pretrained=False, in_chans=1, num_classes=10, **kwargs)`` cut at
    its feature stages ``out_indices`` (indices into ``feature_info``: 1..4 are layer1..layer4,
    0 the stem), each followed by a pooled linear exit head with dropout ``head_dropout``."""

    name: str = "resnet18"
    kwargs: dict[str, Any] = field(default_factory=_default_kwargs)
    out_indices: tuple[int, ...] = (1, 2, 3, 4)
    head_dropout: float = 0.0

    def __post_init__(self) -> None:
        if not self.name:
            raise FieldError("name", "must name a timm model")
        if not self.out_indices:
            raise FieldError("out_indices", "needs at least one feature stage")
        if not 0.0 <= self.head_dropout < 1.0:
            raise FieldError("head_dropout", f"must lie in [0, 1), got {self.head_dropout}")


@dataclass(frozen=True)
class FashionMnistTrainConfig:
    """Joint training of all exits: mean cross-entropy, AdamW, constant ``lr``.
    ``max_seconds``: a wall-clock cap on training (whole seconds; null: none); the default 4
    epochs take about 5-7 minutes on one busy CPU core, well inside the 10-minute cap.
    ``threads``: torch CPU threads while training (null: torch's default); 1 avoids
    oversubscribing a shared machine and fixes the reduction order."""

    epochs: int = 4
    batch_size: int = 128
    lr: float = 0.002
    weight_decay: float = 0.0001
    max_seconds: int | None = 600
    threads: int | None = 1

    def __post_init__(self) -> None:
        check_bounds(self, ("epochs", "batch_size"), 1)
        check_bounds(self, ("lr",), 0, strict=True)
        check_bounds(self, ("weight_decay",), 0)
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise FieldError("max_seconds", f"must be positive or null, got {self.max_seconds}")
        if self.threads is not None and self.threads < 1:
            raise FieldError("threads", f"must be >= 1 or null, got {self.threads}")


@register_workload("fashion_mnist", implementation="ttamer.workloads.vision.fashion_mnist.produce")
@dataclass(frozen=True)
class FashionMnistConfig(WorkloadConfig):
    """A timm ResNet-18 of reduced width, trained from scratch on Fashion-MNIST with a pooled
    linear exit head after each of its four stages (all exits trained jointly), then run on the
    test images; cost = measured latency per stage (ms per request at batch 1).

    ``data_dir``: the IDX files (gzipped or not). ``train_subsample`` / ``test_subsample``:
    seeded random subsets of the 60,000 training and 10,000 test images (null: all); the trace
    is made on the test subset. ``image_size``: images are zero-padded (centred) to this size.
    ``model``, ``train``: :class:`FashionMnistModelConfig`, :class:`FashionMnistTrainConfig`.
    ``latency``: per-stage timing (:class:`~ttamer.workloads.latency.LatencyConfig`; the first
    batch size is the trace's cost).

    Trace study: ``reference`` last_stage (savings at the accuracy of the last exit, the full
    backbone, and ``deltas`` points below it); ``n_splits`` random fit/test splits of the test
    images (error bars)."""

    name: str = "fashion_mnist"
    data_dir: str = DEFAULT_DATA_DIR
    train_subsample: int | None = None
    test_subsample: int | None = None
    image_size: int = IMAGE_SIDE
    model: FashionMnistModelConfig = field(default_factory=FashionMnistModelConfig)
    train: FashionMnistTrainConfig = field(default_factory=FashionMnistTrainConfig)
    latency: LatencyConfig = field(default_factory=lambda: LatencyConfig(warmup=10, repeats=50, threads=1))
    cache_dir: str = ".cache/ttamer/traces/trace"
    reference: str = "last_stage"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.data_dir:
            raise FieldError("data_dir", "must name the folder of the Fashion-MNIST IDX files")
        for name in ("train_subsample", "test_subsample"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise FieldError(name, f"must be >= 1 or null, got {value}")
        if self.image_size < IMAGE_SIDE:
            raise FieldError("image_size", f"must be at least {IMAGE_SIDE}, got {self.image_size}")
