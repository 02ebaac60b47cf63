"""The fields every text multi-exit workload shares (README: workloads): tokenisation, pooling,
the exit heads' training and the per-stage latency measurement. Plain dataclasses, no torch:
the implementation (:mod:`ttamer.workloads.text.exits.trace`) turns the training fields
into a :class:`~ttamer.workloads.multi_exit.TrainConfig`."""

from __future__ import annotations

from dataclasses import dataclass, field

from ttamer.errors import FieldError, check_bounds
from ttamer.fitting.chain import FitConfig
from ttamer.workloads.base import WorkloadConfig
from ttamer.workloads.latency import LatencyConfig

POOLINGS = ("auto", "mean", "last", "cls")  # auto: last for GPT-2, mean for encoders


@dataclass(frozen=True)
class TextTrainConfig:
    """Exit-head training: the mean of the exits' cross-entropies, AdamW, mini-batches of
    ``batch_size`` rows, ``epochs`` passes, stopped early after ``max_seconds`` of wall-clock
    time (whole seconds, None: no cap; an int so that ``600`` keeps its trace cache key)."""

    # heads only, on cached per-layer features; False: fine-tune all (slow on a CPU)
    freeze_backbone: bool = True
    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.001
    weight_decay: float = 0.01
    max_seconds: int | None = 600

    def __post_init__(self) -> None:
        check_bounds(self, ("epochs", "weight_decay"), 0)
        check_bounds(self, ("batch_size",), 1)
        check_bounds(self, ("max_seconds",), 0, optional=True)
        check_bounds(self, ("lr",), 0, strict=True)


@dataclass(frozen=True)
class TextExitsConfig(WorkloadConfig):
    """A text workload with an exit after every transformer layer (frozen backbone by default).

    ``max_length``: tokens per text (truncation). ``pooling``: :data:`POOLINGS`.
    ``feature_batch_size``: rows per forward pass (features, probabilities). ``device``: ``cpu``
    or ``cuda``. ``threads``: torch CPU threads for the whole run (None: as is;
    ``latency.threads`` still applies while timing). ``train``: :class:`TextTrainConfig`;
    ``latency``: :class:`~ttamer.workloads.latency.LatencyConfig` (batch sizes 1 and 32; the
    first gives the trace's cost; its ``threads``: torch CPU threads while timing, None: the
    run's). The trace study's defaults here: savings at the last exit's accuracy
    (``reference``), 6 confidence bins per stage (``fit.n_bins``)."""

    cache_dir: str = ".cache/ttamer/traces/trace"
    reference: str = "last_stage"
    fit: FitConfig = field(default_factory=lambda: FitConfig(n_bins=6))
    max_length: int = 128
    pooling: str = "auto"
    feature_batch_size: int = 64
    device: str = "cpu"
    threads: int | None = None
    train: TextTrainConfig = field(default_factory=TextTrainConfig)
    latency: LatencyConfig = field(default_factory=lambda: LatencyConfig(batch_sizes=(1, 32)))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pooling not in POOLINGS:
            raise FieldError("pooling", f"must be one of {' | '.join(POOLINGS)}, got {self.pooling!r}")
        check_bounds(self, ("max_length", "feature_batch_size"), 1)
        check_bounds(self, ("threads",), 1, optional=True)
        if not (self.device in ("cpu", "cuda", "mps") or self.device.startswith("cuda:")):
            raise FieldError("device", f"must be cpu, cuda, cuda:<index> or mps, got {self.device!r}")
