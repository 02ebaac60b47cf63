"""The FrugalML workload's trace (README: workloads): the dataset folder read by
:func:`ttamer.traces.frugalml.import_frugalml`."""

from __future__ import annotations

from pathlib import Path

from ttamer.traces.frugalml import import_frugalml
from ttamer.traces.trace import Trace
from ttamer.workloads.base import resolve_path
from ttamer.workloads.frugalml.config import FrugalmlConfig


def produce(config: FrugalmlConfig, seed: int, out_dir: Path) -> Trace:
    """The recorded outputs of ``config.folder`` (``seed`` and ``out_dir`` are not used: the
    trace is read, not made)."""
    del seed, out_dir
    return import_frugalml(resolve_path(config.folder))
