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
from ttamer.workloads.text.glue_hf.config import GLUE_EVAL_FILES, GlueHfConfig, GlueTask


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


def _integers(values: Sequence[Any]) -> bool:
    try:
        [int(v) for v in values]
    except (TypeError, ValueError):
        return False
    return True


def tsv_columns(header: Sequence[str], spec: GlueTask, label_field: str) -> tuple[tuple[str, ...], str]:
    """The text columns and the label column to read from a TSV with the columns ``header``: the
    task's (as in ``datasets``, or as configured) when the file has them, else those of GLUE's
    own TSV files of the task (e.g. MNLI's sentence1, sentence2, gold_label) when it has those
    (else the task's: the caller names the missing one)."""
    if all(c in header for c in (*spec.text_fields, label_field)):
        return spec.text_fields, label_field
    glue_fields = spec.tsv_text_fields or spec.text_fields
    glue_label = spec.tsv_label_field or label_field
    has_layout = spec.tsv_text_fields is not None or spec.tsv_label_field is not None
    if has_layout and all(c in header for c in (*glue_fields, glue_label)):
        return glue_fields, glue_label
    return spec.text_fields, label_field


def tsv_split(
    path: Path, spec: GlueTask, label_field: str, names: Sequence[str] | None, field: str
) -> TextSplit:
    """A split from a TSV with a header row (columns: :func:`tsv_columns`); string labels are
    looked up in ``names``, else in the task's label names (e.g. MNLI's entailment, neutral,
    contradiction)."""
    frame = read_tsv(path, [], field)
    text_fields, label_field = tsv_columns(list(frame.columns), spec, label_field)
    missing = [c for c in (*text_fields, label_field) if c not in frame.columns]
    if missing:
        raise FieldError(field, f"{path} has no column {missing[0]!r} (columns: {list(frame.columns)})")
    texts = [str(s) for s in frame[text_fields[0]]]
    pairs = [str(s) for s in frame[text_fields[1]]] if len(text_fields) > 1 else None
    values = list(frame[label_field])
    if names is None and not _integers(values):
        names = spec.label_names
    return TextSplit(texts, pairs, label_ids(values, names, field, str(path)))


DATASETS_MISSING = (
    "no local TSV files given and the `datasets` package is not installed: install the extra "
    '(pip install -e ".[glue]", or pip install datasets), or set workload.train_path and workload.eval_path'
)


def hub_split(dataset: str, task: str, split: str, spec: GlueTask, label_field: str) -> TextSplit:
    """A split from ``datasets.load_dataset(dataset, spec.hub_config or task, split=split)``;
    FieldError ``workload.train_path`` naming the ``glue`` extra when ``datasets`` is missing."""
    try:
        import datasets
    except ImportError:
        raise FieldError("workload.train_path", DATASETS_MISSING) from None
    name = spec.hub_config or task
    try:
        ds = datasets.load_dataset(dataset, name, split=split)
    except Exception as exc:  # offline, unknown task or split: one clear line
        raise FieldError("workload.task", f"cannot load {dataset}/{name} split {split!r}: {exc}") from None
    missing = [c for c in (*spec.text_fields, label_field) if c not in ds.column_names]
    if missing:
        raise FieldError(
            "workload.text_fields", f"{dataset}/{name} has no column {missing[0]!r}: {ds.column_names}"
        )
    pairs = [str(s) for s in ds[spec.text_fields[1]]] if len(spec.text_fields) > 1 else None
    labels = label_ids(list(ds[label_field]), None, "workload.eval_split", f"{dataset}/{name}:{split}")
    return TextSplit([str(s) for s in ds[spec.text_fields[0]]], pairs, labels)


def check_eval_file(path: Path, spec: GlueTask) -> None:
    """FieldError ``workload.eval_path`` when ``path`` is one of GLUE's evaluation files of
    another split than the task's (MNLI's dev_mismatched.tsv with task mnli, say)."""
    split = GLUE_EVAL_FILES.get(path.name)
    if split is not None and split != spec.eval_split:
        raise FieldError(
            "workload.eval_path",
            f"{path.name} holds {split} but the evaluation split is {spec.eval_split} "
            f"(set workload.eval_split={split}, or task mnli_mm for MNLI mismatched)",
        )


def load_splits(config: GlueHfConfig) -> tuple[TextSplit, TextSplit, str]:
    """The training and evaluation splits, and where they came from."""
    spec = config.task_spec()
    if config.train_path is not None and config.eval_path is not None:
        tp, ep = resolve_path(config.train_path), resolve_path(config.eval_path)
        check_eval_file(ep, spec)
        names = config.label_names
        train = tsv_split(tp, spec, config.label_field, names, "workload.train_path")
        evaluate = tsv_split(ep, spec, config.label_field, names, "workload.eval_path")
        return train, evaluate, f"{tp} | {ep}"
    dataset, task = config.hub_dataset, config.task.lower()
    train = hub_split(dataset, task, "train", spec, config.label_field)
    evaluate = hub_split(dataset, task, spec.eval_split, spec, config.label_field)
    return train, evaluate, f"{dataset}/{spec.hub_config or task} (train | {spec.eval_split})"
