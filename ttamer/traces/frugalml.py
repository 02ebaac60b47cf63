"""The FrugalML tables as a model-cascade trace (README: workloads).

A FrugalML dataset folder (e.g. ``mlserviceperformance_IMDB``) holds, for each model id ``m``
listed in ``meta.csv``, one value per line and sample (rows aligned across models):

- ``Model<m>_PredictedLabel.txt``: the API's predicted class;
- ``Model<m>_Confidence.txt``: the API's confidence in that prediction;
- ``Model<m>_TrueLabel.txt``: the ground truth (the same in every model's file);
- ``Model<m>_ImageName.txt`` (optional): the sample id, checked to agree across models.

``meta.csv`` has the columns ``Index`` (model id), ``MLaaS(API)`` (name), ``Cost per 10k texts``
(price) and ``label number`` (number of classes). The cascade runs the models by price, cheapest
first (ties by id); the cost of a stage is its price per 10k calls, so the cost of a request that
stops after stage i is the sum of the prices of stages 1..i (every API called is paid for).
The APIs are separate models: for stage skipping (:mod:`ttamer.model.skip_costs`) each is its own
backbone group with head cost 0 (``meta["backbone_group"]``, ``meta["exit_head_cost"]``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ttamer.loading import one_line, read_bytes
from ttamer.model.skip_costs import independent_meta
from ttamer.traces.trace import Trace, TraceError

META_FILE = "meta.csv"
META_COLUMNS = ("Index", "MLaaS(API)", "Cost per 10k texts", "label number")
COST_UNIT = "USD per 10k calls"
# Confidences a float-rounding step outside [0, 1] are clipped; anything further is refused.
CONF_TOLERANCE = 1e-6


def import_frugalml(folder: str | os.PathLike[str]) -> Trace:
    """Read one FrugalML dataset folder into a :class:`~ttamer.traces.trace.Trace`.

    Stages are the models of ``meta.csv`` ordered by price ascending (ties by model id); ``cost``
    is the price per 10k calls, ``stage_names`` the API names, ``conf`` the API's confidence.
    Every inconsistency (row counts, true labels or sample ids that differ between models,
    labels outside ``label number`` classes, confidences outside [0, 1]) raises
    :class:`~ttamer.traces.trace.TraceError` naming the file."""
    root = Path(folder)
    try:
        is_dir = root.is_dir()
    except OSError:
        is_dir = False
    if not is_dir:
        raise TraceError("file", f"{root} is not a folder")
    ids, names, prices, n_classes = _read_meta(root / META_FILE)
    order = sorted(range(len(ids)), key=lambda j: (prices[j], ids[j]))
    ids = [ids[j] for j in order]
    names = [names[j] for j in order]
    prices = [prices[j] for j in order]

    labels, preds, confs = _read_models(root, ids, n_classes)
    _check_sample_ids(root, ids)

    meta = {
        "source": "frugalml",
        "folder": str(root.resolve()),
        "dataset": root.name.removeprefix("mlserviceperformance_"),
        "model_ids": ",".join(str(m) for m in ids),
        "prices": ",".join(repr(p) for p in prices),
        "n_classes": str(n_classes),
        **independent_meta(len(ids)),
    }
    return Trace.build(
        labels,
        np.stack(preds, axis=1),
        np.stack(confs, axis=1),
        np.asarray(prices, dtype=np.float64),
        names,
        COST_UNIT,
        meta=meta,
    )


def _read_models(
    root: Path, ids: list[int], n_classes: int
) -> tuple[NDArray[np.int64], list[NDArray[np.int64]], list[NDArray[np.float64]]]:
    """The true labels (N,) shared by every model of ``ids``, and each model's predictions and
    confidences (N,), in the order of ``ids``; the sample ids must match too."""
    labels: NDArray[np.int64] | None = None
    ref_file = ""
    preds, confs = [], []
    for m in ids:
        true_path = root / f"Model{m}_TrueLabel.txt"
        y = _read_labels(true_path, n_classes)
        if labels is None:
            labels, ref_file = y, true_path.name
        else:
            _check_same_labels(true_path, y, labels, ref_file)
        pred_path = root / f"Model{m}_PredictedLabel.txt"
        p = _read_labels(pred_path, n_classes)
        _check_rows(pred_path, p.size, labels.size, ref_file)
        conf_path = root / f"Model{m}_Confidence.txt"
        c = _read_conf(conf_path)
        _check_rows(conf_path, c.size, labels.size, ref_file)
        preds.append(p)
        confs.append(c)
    assert labels is not None
    _check_sample_ids(root, ids)
    return labels, preds, confs


def _check_same_labels(path: Path, y: NDArray[np.int64], labels: NDArray[np.int64], ref_file: str) -> None:
    """``path``'s true labels ``y`` must equal those of ``ref_file`` row by row."""
    if y.size != labels.size:
        raise TraceError(str(path), f"has {y.size} rows but {ref_file} has {labels.size}")
    diff = np.flatnonzero(y != labels)
    if diff.size:
        r = int(diff[0])
        raise TraceError(
            str(path),
            f"true label of row {r + 1} is {y[r]} but {ref_file} says {labels[r]} "
            f"({diff.size} rows disagree)",
        )


def _read_meta(path: Path) -> tuple[list[int], list[str], list[float], int]:
    if not path.is_file():
        raise TraceError(str(path), "does not exist (a FrugalML folder needs meta.csv)")
    try:
        df = pd.read_csv(path, skipinitialspace=True)
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError, OSError) as exc:
        raise TraceError(str(path), f"is not a readable CSV ({one_line(exc)})") from None
    df.columns = [str(c).strip() for c in df.columns]
    for col in META_COLUMNS:
        if col not in df.columns:
            raise TraceError(str(path), f"has no column {col!r} (columns: {list(df.columns)})")
    if len(df) == 0:
        raise TraceError(str(path), "lists no models")
    ids = _integer_column(df, "Index", path)
    if len(set(ids)) != len(ids):
        raise TraceError(str(path), f"column 'Index' repeats a model id: {ids}")
    classes = _integer_column(df, "label number", path)
    if len(set(classes)) != 1 or classes[0] < 2:
        raise TraceError(str(path), f"column 'label number' must be one value >= 2, got {classes}")
    price = pd.to_numeric(df["Cost per 10k texts"], errors="coerce").to_numpy(dtype=np.float64)
    if not np.isfinite(price).all() or (price < 0).any():
        raise TraceError(
            str(path), f"column 'Cost per 10k texts' must hold finite prices >= 0, got {price.tolist()}"
        )
    names = [str(x).strip() for x in df["MLaaS(API)"]]
    return ids, names, price.tolist(), classes[0]


def _integer_column(df: pd.DataFrame, col: str, path: Path) -> list[int]:
    vals = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64)
    if not np.isfinite(vals).all() or (vals % 1).any() or (vals < 0).any():
        raise TraceError(str(path), f"column {col!r} must hold integers >= 0, got {df[col].tolist()}")
    return [int(v) for v in vals]


def _read_column(path: Path) -> NDArray[np.float64]:
    """One number per line (blank lines skipped), as float64."""
    if not path.is_file():
        raise TraceError(str(path), "does not exist")
    try:
        df = pd.read_csv(path, header=None, dtype=np.float64, engine="c")
    except pd.errors.EmptyDataError:
        raise TraceError(str(path), "is empty") from None
    except (ValueError, pd.errors.ParserError, OSError) as exc:
        raise TraceError(str(path), f"must hold one number per line ({one_line(exc)})") from None
    if df.shape[1] != 1:
        # tolerate a trailing separator ("0.5,"): only if every extra column is empty
        if not df.iloc[:, 1:].isna().all().all():
            raise TraceError(str(path), f"must hold one number per line, found {df.shape[1]} columns")
    vals = df.iloc[:, 0].to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(vals))
    if bad.size:
        raise TraceError(str(path), f"row {bad[0] + 1} is not a finite number")
    return vals


def _read_labels(path: Path, n_classes: int) -> NDArray[np.int64]:
    vals = _read_column(path)
    bad = np.flatnonzero((vals % 1 != 0) | (vals < 0) | (vals >= n_classes))
    if bad.size:
        r = int(bad[0])
        raise TraceError(
            str(path), f"row {r + 1} holds {vals[r]:g}, not a class id in 0..{n_classes - 1} (meta.csv)"
        )
    return vals.astype(np.int64)


def _read_conf(path: Path) -> NDArray[np.float64]:
    vals = _read_column(path)
    bad = np.flatnonzero((vals < -CONF_TOLERANCE) | (vals > 1 + CONF_TOLERANCE))
    if bad.size:
        r = int(bad[0])
        raise TraceError(str(path), f"row {r + 1} holds confidence {float(vals[r])!r}, outside [0, 1]")
    return np.clip(vals, 0.0, 1.0)


def _check_rows(path: Path, n: int, expected: int, ref_file: str) -> None:
    if n != expected:
        raise TraceError(str(path), f"has {n} rows but {ref_file} has {expected}")


def _check_sample_ids(root: Path, ids: list[int]) -> None:
    """When every model has an ``ImageName`` file, they must list the same samples in order."""
    paths = [root / f"Model{m}_ImageName.txt" for m in ids]
    if not all(p.is_file() for p in paths):
        return
    ref = read_bytes(paths[0], TraceError)
    for p in paths[1:]:
        other = read_bytes(p, TraceError)
        if other != ref:
            a, b = ref.splitlines(), other.splitlines()
            r = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
            raise TraceError(
                str(p), f"sample ids differ from {paths[0].name} at row {r + 1}: rows are not aligned"
            )
