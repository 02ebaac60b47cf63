"""The ``glue_hf`` workload's data (no torch): a training and an evaluation split from local
TSV files or from ``datasets.load_dataset(hub_dataset, task)``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ttamer.errors import FieldError
from ttamer.workloads.base import resolve_path
from ttamer.workloads.text.data import read_tsv
from ttamer.workloads.text.glue_hf.config import GlueHfConfig, GlueTask


@dataclass(frozen=True)
class TextSplit:
    """``texts`` (first segments), ``pairs`` (second segments, or None) and labels."""

    texts: list[str]
    pairs: list[str] | None
    labels: NDArray[np.int64]

    def subset(self, idx: NDArray[np.intp]) -> TextSplit:
        pairs = None if self.pairs is None else [self.pairs[i] for i in idx]
        return TextSplit([self.texts[i] for i in idx], pairs, self.labels[idx])


def label_ids(
    values: Sequence[Any], names: Sequence[str] | None, field: str, where: str
) -> NDArray[np.int64]:
    """Class ids of ``values``: their index in ``names``, or the values as integers >= 0."""
    if names is not None:
        index = {str(n): i for i, n in enumerate(names)}
        unknown = sorted({str(v) for v in values} - set(index))
        if unknown:
            raise FieldError(field, f"{where}: label {unknown[0]!r} is not in label_names {list(names)}")
        return np.asarray([index[str(v)] for v in values], dtype=np.int64)
    try:
        labels = np.asarray([int(v) for v in values], dtype=np.int64)
    except (TypeError, ValueError):
        raise FieldError(field, f"{where}: labels are not integers; give workload.label_names") from None
    if labels.size and labels.min() < 0:
        raise FieldError(field, f"{where}: negative label {int(labels.min())} (an unlabelled test split?)")
    return labels


def tsv_split(
    path: Path, spec: GlueTask, label_field: str, names: Sequence[str] | None, field: str
) -> TextSplit:
    """A split from a TSV with a header row."""
    frame = read_tsv(path, [*spec.text_fields, label_field], field)
    texts = [str(s) for s in frame[spec.text_fields[0]]]
    pairs = [str(s) for s in frame[spec.text_fields[1]]] if len(spec.text_fields) > 1 else None
    return TextSplit(texts, pairs, label_ids(list(frame[label_field]), names, field, str(path)))


def hub_split(dataset: str, task: str, split: str, spec: GlueTask, label_field: str) -> TextSplit:
    """A split from ``datasets.load_dataset(dataset, task, split=split)``."""
    try:
        import datasets
    except ImportError:
        raise FieldError(
            "workload.train_path",
            "no local TSV files given and the `datasets` package is not installed "
            "(pip install datasets, or set workload.train_path and workload.eval_path)",
        ) from None
    try:
        ds = datasets.load_dataset(dataset, task, split=split)
    except Exception as exc:  # offline, unknown task or split: one clear line
        raise FieldError("workload.task", f"cannot load {dataset}/{task} split {split!r}: {exc}") from None
    missing = [c for c in (*spec.text_fields, label_field) if c not in ds.column_names]
    if missing:
        raise FieldError(
            "workload.text_fields", f"{dataset}/{task} has no column {missing[0]!r}: {ds.column_names}"
        )
    pairs = [str(s) for s in ds[spec.text_fields[1]]] if len(spec.text_fields) > 1 else None
    labels = label_ids(list(ds[label_field]), None, "workload.eval_split", f"{dataset}/{task}:{split}")
    return TextSplit([str(s) for s in ds[spec.text_fields[0]]], pairs, labels)


def load_splits(config: GlueHfConfig) -> tuple[TextSplit, TextSplit, str]:
    """The training and evaluation splits, and where they came from."""
    spec = config.task_spec()
    if config.train_path is not None and config.eval_path is not None:
        tp, ep = resolve_path(config.train_path), resolve_path(config.eval_path)
        names = config.label_names
        train = tsv_split(tp, spec, config.label_field, names, "workload.train_path")
        evaluate = tsv_split(ep, spec, config.label_field, names, "workload.eval_path")
        return train, evaluate, f"{tp} | {ep}"
    dataset, task = config.hub_dataset, config.task.lower()
    train = hub_split(dataset, task, "train", spec, config.label_field)
    evaluate = hub_split(dataset, task, spec.eval_split, spec, config.label_field)
    return train, evaluate, f"{dataset}/{task} (train | {spec.eval_split})"
