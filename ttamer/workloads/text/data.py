"""Reading text datasets (no torch): TSV files with a header row, integer labels, and seeded
subsamples of a split."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ttamer.errors import FieldError


def read_tsv(path: Path, columns: Sequence[str], field: str) -> pd.DataFrame:
    """A TSV with a header row (no quoting: SST-2 sentences hold bare quotes) holding ``columns``;
    FieldError ``field`` when the file or a column is missing."""
    if not path.is_file():
        raise FieldError(field, f"{path} is not a file")
    frame = pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, keep_default_na=False, dtype=str)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise FieldError(field, f"{path} has no column {missing[0]!r} (columns: {list(frame.columns)})")
    return frame


def int_labels(values: Any, path: Path, field: str) -> NDArray[np.int64]:
    """Labels as integers >= 0 (FieldError ``field`` otherwise)."""
    try:
        labels = np.asarray([int(v) for v in values], dtype=np.int64)
    except ValueError as exc:
        raise FieldError(field, f"{path}: labels must be integers ({exc})") from None
    if labels.size and labels.min() < 0:
        raise FieldError(field, f"{path}: negative label {int(labels.min())} (unlabelled split?)")
    return labels


def subsample(n: int, size: int | None, seed: int) -> NDArray[np.intp]:
    """``size`` indices of ``range(n)`` drawn without replacement (sorted), or all."""
    if size is None or size >= n:
        return np.arange(n)
    if size < 1:
        raise ValueError(f"subsample size must be >= 1, got {size}")
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))
