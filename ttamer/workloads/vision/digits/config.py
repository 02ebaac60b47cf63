"""The digits workload's config (README: workloads): the fields, types and defaults of
``conf/workload/digits.yaml`` (``ttamer-run --cfg job workload=digits`` prints them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ttamer.errors import FieldError, check_bounds
from ttamer.fitting.chain import FitConfig
from ttamer.workloads.base import WorkloadConfig, register_workload
from ttamer.workloads.latency import LatencyConfig

N_CLASSES = 10
IMAGE_SIDE = 8
N_IMAGES = 1797  # sklearn.datasets.load_digits


@dataclass(frozen=True)
class DigitsModelConfig:
    """The multi-exit CNN, one entry per stage (exit) in every field: stage ``i`` is
    ``convs[i]`` 3x3 convolutions + ReLU with ``channels[i]`` output channels, then a 2x2
    max-pool where ``downsample[i]`` (8 -> 4 -> 2 pixels); its exit head average-pools to
    ``head_pool[i]`` x ``head_pool[i]``, then applies one linear layer."""

    channels: tuple[int, ...] = (8, 16, 16, 64)
    convs: tuple[int, ...] = (1, 1, 1, 2)
    downsample: tuple[bool, ...] = (False, True, True, False)
    head_pool: tuple[int, ...] = (2, 2, 1, 2)

    def __post_init__(self) -> None:
        n = len(self.channels)
        if n == 0:
            raise FieldError("channels", "needs at least one stage")
        for name in ("convs", "downsample", "head_pool"):
            if len(getattr(self, name)) != n:
                raise FieldError(
                    name, f"needs one entry per stage ({n}, as channels), got {len(getattr(self, name))}"
                )
        for name in ("channels", "convs", "head_pool"):
            if any(v < 1 for v in getattr(self, name)):
                raise FieldError(name, f"entries must be >= 1, got {getattr(self, name)}")
        if IMAGE_SIDE >> sum(self.downsample) < 1:
            raise FieldError("downsample", f"halves the {IMAGE_SIDE}x{IMAGE_SIDE} image too often")

    @property
    def n_stages(self) -> int:
        return len(self.channels)


@dataclass(frozen=True)
class DigitsTrainConfig:
    """All exits trained jointly: the mean of their cross-entropies, AdamW (constant ``lr``),
    ``epochs`` passes over the training split in shuffled batches of ``batch_size``."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.003
    weight_decay: float = 0.0001

    def __post_init__(self) -> None:
        check_bounds(self, ("epochs", "batch_size"), 1)
        check_bounds(self, ("lr",), 0, strict=True)
        check_bounds(self, ("weight_decay",), 0)


@register_workload("digits", implementation="ttamer.workloads.vision.digits.produce")
@dataclass(frozen=True)
class DigitsConfig(WorkloadConfig):
    """scikit-learn's bundled digits (1,797 grey 8x8 images, no download) and a small multi-exit
    CNN with four exits, trained here on CPU in seconds; cost = measured median latency per
    request at batch 1 (ms). The trace is the exits' outputs on the test split.

    ``test_size``: held-out samples (stratified by class, seeded); the trace is made on them.
    ``model``, ``train``: :class:`DigitsModelConfig`, :class:`DigitsTrainConfig`. ``latency``:
    per stage (segment + head), the median of ``repeats`` timings after ``warmup``; the first
    batch size gives the trace's cost (ms per request); ``threads`` null leaves torch's default.

    Trace study: ``n_splits`` 20 random fit/test splits of the 500 test samples (error bars);
    ``reference`` last_stage, as the exits are nested (savings at the last exit's accuracy, minus
    ``deltas``); ``fit.n_bins`` 6, as about 250 samples fit each split."""

    name: str = "digits"
    test_size: int = 500
    model: DigitsModelConfig = field(default_factory=DigitsModelConfig)
    train: DigitsTrainConfig = field(default_factory=DigitsTrainConfig)
    latency: LatencyConfig = field(default_factory=lambda: LatencyConfig(warmup=10, repeats=50))
    cache_dir: str = ".cache/ttamer/traces/trace"
    n_splits: int = 20
    reference: str = "last_stage"
    fit: FitConfig = field(default_factory=lambda: FitConfig(n_bins=6))

    def __post_init__(self) -> None:
        super().__post_init__()
        if not N_CLASSES <= self.test_size <= N_IMAGES - N_CLASSES:
            raise FieldError(
                "test_size",
                f"must leave both splits >= {N_CLASSES} of {N_IMAGES} samples, got {self.test_size}",
            )
