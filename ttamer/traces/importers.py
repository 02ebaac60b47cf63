"""Importers: turn cached outputs of existing models into traces (README: traces).

- :func:`ttamer.traces.frugalml.import_frugalml`: the FrugalML tables (four sentiment APIs
  with real per-sample confidences, cost = price per 10k calls);
- :func:`ttamer.traces.csv_trace.import_csv` / :func:`~ttamer.traces.csv_trace.export_csv`:
  a generic long CSV, one row per (sample, stage).
"""

from __future__ import annotations

from ttamer.traces.csv_trace import export_csv, import_csv
from ttamer.traces.frugalml import import_frugalml

__all__ = ["export_csv", "import_csv", "import_frugalml"]
