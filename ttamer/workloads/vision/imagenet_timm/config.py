"""The ``imagenet_timm`` workload's config (README: workloads): the fields, types and defaults of
``conf/workload/imagenet_timm.yaml`` (``ttamer-run --cfg job workload=imagenet_timm`` prints
them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ttamer.errors import FieldError, check_bounds
from ttamer.workloads.base import WorkloadConfig, register_workload
from ttamer.workloads.latency import INFERENCE_PRECISIONS, LatencyConfig

MODES = ("exits", "cascade")
COST_SOURCES = ("measured", "timm_table")
LABEL_SPACES = ("auto", "imagenet", "folder")
FINAL_HEADS = ("model", "linear")
DEFAULT_MODELS = ("resnet18.a1_in1k", "resnet50.a1_in1k")
DEFAULT_DATA_ROOT = "../shared/data"  # conf/config.yaml's data_root; the YAML sets the paths from it
PRECISIONS = INFERENCE_PRECISIONS
TOKEN_POOLS = ("auto", "token", "avg")
# raw-val labels, speed options and head-training fields added after traces were cached: in the
# trace key only when they differ from these defaults (dotted paths for nested fields)
KEYED_UNLESS_DEFAULT: dict[str, Any] = {
    "val_labels": None, "val_label_map": None, "precision": "fp32", "compile": False,
    "cudnn_benchmark": False, "persistent_workers": True, "token_pool": "auto", "train.shuffle": True,
}  # fmt: skip
EXITS_FORMAT = 2  # in exits traces' keys: heads trained from cached pooled features, no stem exit


@dataclass(frozen=True)
class HeadTraining:
    """Training of the exit heads (``mode: exits``) on frozen backbone features: AdamW on the
    mean cross-entropy of the trained heads, images preprocessed as for evaluation (no
    augmentation), ``epochs`` passes (0: untrained heads). ``head_dropout`` before each head's
    linear layer; ``max_seconds``: a wall-clock cap (null: none). The heads train from pooled
    features computed by one backbone pass and cached (README: workloads); ``shuffle``: a
    seeded new order of the training images every epoch (false: the split's order, by class)."""

    epochs: int = 5
    lr: float = 1e-3
    weight_decay: float = 1e-4
    head_dropout: float = 0.0
    max_seconds: float | None = None
    shuffle: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise FieldError("epochs", f"must be an integer >= 0, got {self.epochs}")
        check_bounds(self, ("lr",), 0, strict=True)
        check_bounds(self, ("weight_decay",), 0)
        if not 0.0 <= self.head_dropout < 1.0:
            raise FieldError("head_dropout", f"must lie in [0, 1), got {self.head_dropout}")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise FieldError("max_seconds", f"must be positive or null, got {self.max_seconds}")


@register_workload("imagenet_timm", implementation="ttamer.workloads.vision.imagenet_timm.produce")
@dataclass(frozen=True)
class ImageNetTimmConfig(WorkloadConfig):
    """ImageNet with pretrained timm models; ``mode`` (:data:`MODES`) is one of

    - ``cascade``: a model cascade (Lebovitz et al.); each model runs on every val image, stage
      ``i`` = model ``i`` of ``models`` (timm names, cheapest first), cost = model ``i``'s ms per
      image (measured, or timm's table with ``cost=timm_table``);
    - ``exits``: the backbone ``model`` cut at its feature stages ``out_indices`` (null: all of
      ``feature_info``), an exit head per stage (heads trained on a train subset, backbone
      frozen: ``train``), per-stage latency measured here; ``final_head`` model: the last exit is
      the pretrained classifier, linear: trained like the others.

    Data: ``data_dir`` holds ImageNet in ImageFolder layout (``train/<wnid>/*.JPEG``,
    ``val/<wnid>/*.JPEG``; relative paths from the launch folder). ``labels``: auto | imagenet
    (wnid folders -> ImageNet-1k indices) | folder (sorted folders). ``train_per_class``
    training images per class for the heads and ``val_per_class`` images per class traced (null:
    all). ``val/`` may also be ImageNet's raw flat layout (``val/ILSVRC2012_val_00000001.JPEG``
    ...) labelled by ``val_labels``: the devkit's ILSVRC2012_validation_ground_truth.txt (its
    ILSVRC2012_IDs mapped to wnids by ``val_label_map``: the devkit's meta.mat, needs scipy, or
    a text map; null: the meta.mat beside the ground truth), one wnid per line, or Kaggle's
    LOC_val_solution.csv (see :mod:`~ttamer.workloads.vision.imagenet_timm.raw_val`).
    ``pretrained`` false: random weights (tests only); the weights download from the Hugging Face
    Hub (internet, or a filled ``HF_HOME``); a GPU is advised.

    Running: ``batch_size``; ``num_workers`` data loader processes; ``use_test_size``: each model
    at its pretrained config's test_input_size; ``device`` auto (cuda if available, else cpu) |
    cpu | cuda | cuda:1 ...; ``amp``: float16 autocast on CUDA and ``channels_last``: NHWC (as
    timm's benchmarks); ``store_probs``: keep the (N, n, 1000) probabilities (8 kB per image and
    stage; the entropy policy needs them), false keeps pred + conf only. Speed (README:
    workloads): ``precision`` fp32 | bf16 | fp16 autocast on any device (``amp: true`` is the
    older spelling of fp16, on CUDA only); ``compile``: torch.compile each stage (graphs warmed
    before timing); ``cudnn_benchmark``: cuDNN autotuning on CUDA; ``persistent_workers``: keep
    the loader processes between passes (with ``num_workers`` > 0); pinned memory on CUDA.
    ``token_pool`` (vision transformers in exits mode): what an exit head pools, auto (the
    model's own pooling) | token (the class token) | avg (the mean of the patch tokens). A cascade caches each
    model's outputs and measured latency under ``<cache_dir>/imagenet_outputs`` (see
    :mod:`~ttamer.workloads.vision.imagenet_timm.outputs`): a new order, subset or cost source of
    models run before runs no inference; ``recompute`` recomputes them.

    Cascade costs: ``cost_source`` is set by the cost group (measured | timm_table);
    ``tables_dir``: timm's results tables (a pytorch-image-models checkout works);
    ``accuracy_file`` null: results/results-imagenet.csv (recorded as table_top1 per stage);
    ``benchmark_file`` null: the historical RTX 3090 AMP NHWC pt1.12 table, else the newest RTX
    3090 AMP NHWC one. ``latency``: per-stage (exits) or per-model (cascade) timing; the first
    batch size is the trace's cost (ms per image = ms per batch / batch size).

    Trace study: ``reference`` best_stage, the accuracy of the best single model (Lebovitz);
    set last_stage for exits."""

    name: str = "imagenet_timm"
    mode: str = "cascade"
    models: tuple[str, ...] = DEFAULT_MODELS
    model: str = "resnet50.a1_in1k"
    pretrained: bool = True
    data_dir: str = f"{DEFAULT_DATA_ROOT}/imagenet"
    val_labels: str | None = None
    val_label_map: str | None = None
    labels: str = "auto"
    train_per_class: int | None = 20
    val_per_class: int | None = 10
    batch_size: int = 64
    num_workers: int = 4
    use_test_size: bool = False
    device: str = "auto"
    amp: bool = False
    channels_last: bool = False
    precision: str = "fp32"
    compile: bool = False
    cudnn_benchmark: bool = False
    persistent_workers: bool = True
    token_pool: str = "auto"
    store_probs: bool = True
    cost_source: str = "measured"
    tables_dir: str | None = f"{DEFAULT_DATA_ROOT}/timm-results"
    accuracy_file: str | None = None
    benchmark_file: str | None = None
    out_indices: tuple[int, ...] | None = None
    final_head: str = "model"
    train: HeadTraining = field(default_factory=HeadTraining)
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    cache_dir: str = ".cache/ttamer/traces/trace"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.data_dir:
            raise FieldError("data_dir", "must name the ImageNet folder (with train/ and val/)")
        if self.val_label_map and not self.val_labels:
            raise FieldError("val_label_map", "maps the devkit's ground truth: set val_labels too")
        for key, allowed in (("mode", MODES), ("cost_source", COST_SOURCES), ("labels", LABEL_SPACES),
                             ("final_head", FINAL_HEADS), ("precision", PRECISIONS),
                             ("token_pool", TOKEN_POOLS)):  # fmt: skip
            if getattr(self, key) not in allowed:
                raise FieldError(key, f"must be one of {allowed}, got {getattr(self, key)!r}")
        if self.mode == "cascade" and not self.models:
            raise FieldError("models", "the cascade needs at least one timm model name")
        if self.mode == "exits" and not self.model:
            raise FieldError("model", "exits mode needs a timm model name")
        if self.cost_source == "timm_table" and self.mode != "cascade":
            raise FieldError("cost_source", "timm_table costs whole models; exits mode measures its stages")
        for key in ("train_per_class", "val_per_class"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise FieldError(key, f"must be an integer >= 1 or null, got {value}")
        if self.batch_size < 1:
            raise FieldError("batch_size", f"must be an integer >= 1, got {self.batch_size}")
        if self.num_workers < 0:
            raise FieldError("num_workers", f"must be an integer >= 0, got {self.num_workers}")
        if self.amp and self.precision == "bf16":
            raise FieldError("amp", f"amp: true means precision fp16; set precision={self.precision} alone")

    keyed_unless_default: ClassVar[Mapping[str, Any]] = KEYED_UNLESS_DEFAULT

    def trace_key(self, seed: int) -> dict[str, Any]:
        """The trace cache's key (:meth:`WorkloadConfig.trace_key`), with the exits format in
        exits mode."""
        key = super().trace_key(seed)
        if self.mode == "exits":
            key["exits_format"] = EXITS_FORMAT
        return key
