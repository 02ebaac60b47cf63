"""The FrugalML workload's config (README: workloads): the fields, types and defaults of
``conf/workload/frugalml.yaml`` (``ttamer-run --cfg job workload=frugalml`` prints them)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ttamer.errors import FieldError
from ttamer.workloads.base import WorkloadConfig, register_workload


@register_workload("frugalml", implementation="ttamer.workloads.frugalml.produce", cache=False)
@dataclass(frozen=True)
class FrugalmlConfig(WorkloadConfig):
    """A real model cascade: four sentiment models' per-sample outputs (the FrugalML tables),
    ordered by price; cost = price per 10k calls. Nothing is computed, so the trace is not
    cached.

    ``dataset``: IMDB (25,000 English reviews) or SHOP (62,774 Chinese reviews); it names the
    result files (``frugalml_<dataset>_points.csv``), so it must be a plain name. ``folder``: the
    dataset's FrugalML folder (``meta.csv`` and one table per model; relative paths from the
    launch folder); the YAML derives it from ``data_root`` and ``dataset``."""

    name: str = "frugalml"
    dataset: str = "IMDB"
    folder: str = "../shared/data/frugalml/mlserviceperformance_IMDB"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", self.dataset):
            raise FieldError(
                "dataset", f"must be a plain name (letters, digits, _ and -), got {self.dataset!r}"
            )
        if not self.folder:
            raise FieldError("folder", "must name the dataset's FrugalML folder")

    def tag(self) -> str:
        """``frugalml_<dataset>`` (lower case): one set of result files per dataset."""
        return f"frugalml_{self.dataset.lower()}"
