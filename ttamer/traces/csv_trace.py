"""A generic long CSV trace format: one row per (sample, stage).

Required columns:

- ``sample``: any sample id (samples are kept in order of first appearance);
- ``stage``: integer stage positions (stages ordered by value) or stage names (stages ordered by
  first appearance);
- ``label``: the sample's true class (the same on every row of a sample);
- ``pred``: the stage's predicted class;
- ``conf``: the stage's confidence in [0, 1].

Optional columns:

- ``cost``: the stage's incremental cost (the same on every row of a stage), unless costs are
  passed to :func:`import_csv`;
- ``stage_name``: the stage's name (the same on every row of a stage; default: the ``stage``
  value when it is a name, else ``stage1``, ``stage2``, ...);
- ``cost_unit``: the unit of ``cost`` (the same on every row);
- ``p0`` .. ``p{C-1}``: the stage's class probabilities (all of them, numbered from 0).

Every (sample, stage) pair must appear exactly once. The stages are taken as separate models (a
model cascade): for stage skipping (:mod:`ttamer.model.skip_costs`) the trace's ``meta`` records each
stage as its own backbone group with head cost 0. :func:`export_csv` writes this format with
integer stages 0..n-1 and every optional column the trace has, so that ``import_csv(export_csv(t))``
gives ``t`` back (float values are written at full precision).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ttamer.fileio import atomic_write_bytes
from ttamer.loading import existing_file, one_line
from ttamer.model.skip_costs import independent_meta
from ttamer.traces.trace import Trace, TraceError

REQUIRED = ("sample", "stage", "label", "pred", "conf")
_PROB_COL = re.compile(r"^p(\d+)$")


def import_csv(
    path: str | os.PathLike[str],
    costs: Sequence[float] | None = None,
    cost_unit: str | None = None,
) -> Trace:
    """Read a long CSV (see the module docstring) into a :class:`~ttamer.traces.trace.Trace`.

    ``costs`` (one per stage, in stage order) replaces or supplies the ``cost`` column;
    ``cost_unit`` replaces or supplies the ``cost_unit`` column. Errors name the column."""
    p = existing_file(path, TraceError)
    try:
        df = pd.read_csv(p, skipinitialspace=True, keep_default_na=True)
    except pd.errors.EmptyDataError:
        raise TraceError("file", f"{p} is empty") from None
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise TraceError("file", f"{p} is not a readable CSV ({one_line(exc)})") from None
    df.columns = [str(c).strip() for c in df.columns]
    return trace_from_frame(df, costs=costs, cost_unit=cost_unit, source=str(p.resolve()))


def trace_from_frame(
    df: pd.DataFrame,
    costs: Sequence[float] | None = None,
    cost_unit: str | None = None,
    source: str = "",
) -> Trace:
    """The trace in a long data frame with the columns of the CSV format."""
    for col in REQUIRED:
        if col not in df.columns:
            raise TraceError(col, f"column is missing (columns: {list(df.columns)})")
    if len(df) == 0:
        raise TraceError("sample", "the file has no rows")
    for col in REQUIRED:
        _no_missing(df, col)
    cells = _Cells.of(df)
    n_samples, n_stages = cells.n_samples, cells.n_stages
    labels = _sample_labels(df, cells)
    pred = _integers(df, "pred")[cells.order].reshape(n_samples, n_stages)
    conf = _floats(df, "conf")[cells.order].reshape(n_samples, n_stages)
    cost = _stage_costs(df, cells, costs)
    stage_names, unit = _stage_names(df, cells), _cost_unit(df, cost_unit)
    probs = _probabilities(df, cells)
    meta = {"source": source} if source else {}
    meta.update(independent_meta(n_stages))
    return Trace.build(labels, pred, conf, cost, stage_names, unit, probs, meta)


@dataclass(frozen=True)
class _Cells:
    """The (sample, stage) grid of a long frame: each row's sample code ``s_code`` (rows,) into
    ``s_ids`` and stage code ``k_code`` into ``k_ids`` (sorted when the stages are integers),
    and ``order``: the rows in (N, n) order, row-major."""

    s_code: NDArray[np.intp]
    s_ids: Any
    k_code: NDArray[np.intp]
    k_ids: Any
    stage_is_int: bool
    order: NDArray[np.intp]

    @property
    def n_samples(self) -> int:
        return len(self.s_ids)

    @property
    def n_stages(self) -> int:
        return len(self.k_ids)

    @staticmethod
    def of(df: pd.DataFrame) -> _Cells:
        """The grid of ``df``; a (sample, stage) pair with no row or several rows is refused."""
        s_code, s_ids = pd.factorize(df["sample"], sort=False)
        stage_is_int = pd.api.types.is_integer_dtype(df["stage"])
        k_code, k_ids = pd.factorize(df["stage"], sort=stage_is_int)
        n_samples, n_stages = len(s_ids), len(k_ids)
        flat = s_code.astype(np.int64) * n_stages + k_code
        counts = np.bincount(flat, minlength=n_samples * n_stages)
        if (counts > 1).any():
            cell = int(np.argmax(counts > 1))
            sample, stage = _py(s_ids[cell // n_stages]), _py(k_ids[cell % n_stages])
            raise TraceError("stage", f"sample {sample!r} has {counts[cell]} rows for stage {stage!r}")
        if (counts == 0).any():
            cell = int(np.argmax(counts == 0))
            sample, stage = _py(s_ids[cell // n_stages]), _py(k_ids[cell % n_stages])
            raise TraceError(
                "stage",
                f"sample {sample!r} has no row for stage {stage!r} "
                f"({int((counts == 0).sum())} (sample, stage) pairs missing)",
            )
        # every (sample, stage) pair appears once: place rows into (N, n) order
        order = np.argsort(flat, kind="stable")
        return _Cells(s_code, s_ids, k_code, k_ids, stage_is_int, order)


def _sample_labels(df: pd.DataFrame, cells: _Cells) -> NDArray[np.int64]:
    """The label of every sample (N,); a sample with different labels on its rows is refused."""
    label_rows = _integers(df, "label")
    labels = np.empty(cells.n_samples, dtype=np.int64)
    labels[cells.s_code] = label_rows
    conflict = np.flatnonzero(labels[cells.s_code] != label_rows)
    if conflict.size:
        r = int(conflict[0])
        raise TraceError(
            "label",
            f"sample {_py(cells.s_ids[cells.s_code[r]])!r} has conflicting labels ({label_rows[r]} on "
            f"line {r + 2}, {labels[cells.s_code[r]]} elsewhere)",
        )
    return labels


def _stage_costs(df: pd.DataFrame, cells: _Cells, costs: Sequence[float] | None) -> NDArray[np.float64]:
    """The cost of every stage (n,): ``costs`` when given, else the ``cost`` column."""
    cost = _stage_constant_floats(df, "cost", cells.k_code, cells.k_ids) if "cost" in df.columns else None
    if costs is not None:
        cost = np.asarray(costs, dtype=np.float64)
        if cost.shape != (cells.n_stages,):
            raise TraceError("cost", f"{cost.size} costs given for {cells.n_stages} stages")
    if cost is None:
        raise TraceError("cost", "column is missing and no costs were given (one per stage)")
    return cost


def _stage_names(df: pd.DataFrame, cells: _Cells) -> list[str]:
    """The ``stage_name`` column; else ``stage1..`` for integer stages, else the stage values."""
    if "stage_name" in df.columns:
        return [str(x) for x in _stage_constant(df, "stage_name", cells.k_code, cells.k_ids)]
    if cells.stage_is_int:
        return [f"stage{i + 1}" for i in range(cells.n_stages)]
    return [str(x) for x in cells.k_ids]


def _cost_unit(df: pd.DataFrame, cost_unit: str | None) -> str:
    """``cost_unit`` when given, else the ``cost_unit`` column (one value), else empty."""
    unit = cost_unit
    if unit is None and "cost_unit" in df.columns:
        units = df["cost_unit"].fillna("").astype(str).unique()
        if len(units) != 1:
            raise TraceError("cost_unit", f"must be one value for the whole file, found {list(units)}")
        unit = str(units[0])
    return unit or ""


def _probabilities(df: pd.DataFrame, cells: _Cells) -> NDArray[np.float64] | None:
    """The class probabilities (N, n, C) of the columns ``p0..p{C-1}``; None without them."""
    prob_cols = sorted((int(m.group(1)), c) for c in df.columns if (m := _PROB_COL.match(c)))
    if not prob_cols:
        return None
    numbers = [i for i, _ in prob_cols]
    if numbers != list(range(len(numbers))):
        raise TraceError(
            "p0",
            f"probability columns must be p0..p{{C-1}} without gaps, found {[c for _, c in prob_cols]}",
        )
    probs = np.stack([_floats(df, c) for _, c in prob_cols], axis=1)[cells.order]
    return probs.reshape(cells.n_samples, cells.n_stages, len(prob_cols))


def export_csv(trace: Trace, path: str | os.PathLike[str]) -> None:
    """Write ``trace`` in the long CSV format, atomically (stages numbered 0..n-1)."""
    n_samples, n = trace.n_samples, trace.n_stages
    cols: dict[str, Any] = {
        "sample": np.repeat(np.arange(n_samples), n),
        "stage": np.tile(np.arange(n), n_samples),
        "label": np.repeat(trace.labels, n),
        "pred": trace.pred.reshape(-1),
        "conf": trace.conf.reshape(-1),
        "cost": np.tile(trace.cost, n_samples),
        "stage_name": np.tile(np.array(trace.stage_names, dtype=object), n_samples),
        "cost_unit": trace.cost_unit,
    }
    if trace.probs is not None:
        for c in range(trace.probs.shape[2]):
            cols[f"p{c}"] = trace.probs[:, :, c].reshape(-1)
    text = pd.DataFrame(cols).to_csv(index=False, float_format="%.17g")
    atomic_write_bytes(path, text.encode())


# ------------------------------------------------------------------------------- helpers


def _py(x: Any) -> Any:
    """A numpy scalar as the Python value (for messages)."""
    return x.item() if isinstance(x, np.generic) else x


def _no_missing(df: pd.DataFrame, col: str) -> None:
    missing = np.flatnonzero(df[col].isna().to_numpy())
    if missing.size:
        raise TraceError(col, f"is empty on line {missing[0] + 2} ({missing.size} empty cells)")


def _floats(df: pd.DataFrame, col: str) -> NDArray[np.float64]:
    vals = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(np.isnan(vals) & df[col].notna().to_numpy())
    if bad.size:
        raise TraceError(col, f"line {bad[0] + 2} holds {_py(df[col].iloc[bad[0]])!r}, not a number")
    return vals


def _integers(df: pd.DataFrame, col: str) -> NDArray[np.int64]:
    vals = _floats(df, col)
    with np.errstate(invalid="ignore"):  # inf % 1 is NaN: caught by the first test
        bad = np.flatnonzero(~np.isfinite(vals) | (vals % 1 != 0) | (np.abs(vals) > 2.0**53))
    if bad.size:
        raise TraceError(
            col, f"line {bad[0] + 2} holds {_py(df[col].iloc[bad[0]])!r}, not an integer class id"
        )
    return vals.astype(np.int64)


def _stage_constant(df: pd.DataFrame, col: str, k_code: NDArray[np.intp], k_ids: Any) -> list[Any]:
    """The value of ``col`` per stage (``k_ids``: the stages' ``stage`` values); it must not vary
    within a stage."""
    _no_missing(df, col)
    pairs = pd.DataFrame({"k": k_code, "v": df[col].to_numpy()}).drop_duplicates()
    dup = pairs["k"].duplicated(keep=False).to_numpy()
    if dup.any():
        k = int(pairs["k"].to_numpy()[dup][0])
        values = pairs["v"].to_numpy()[pairs["k"].to_numpy() == k].tolist()
        raise TraceError(col, f"must be constant per stage; stage {_py(k_ids[k])!r} has {values}")
    by_stage = dict(zip(pairs["k"].tolist(), pairs["v"].tolist(), strict=True))
    return [by_stage[k] for k in range(len(k_ids))]


def _stage_constant_floats(
    df: pd.DataFrame, col: str, k_code: NDArray[np.intp], k_ids: Any
) -> NDArray[np.float64]:
    frame = pd.DataFrame({col: _floats(df, col)})
    return np.asarray(_stage_constant(frame, col, k_code, k_ids), dtype=np.float64)
