"""Any GLUE classification task with any transformers encoder (BERT-like, DistilBERT) or GPT-2:
an exit after every transformer layer (pooling + a linear head), frozen backbone by default,
heads trained on a random subsample of the training split, the trace scored on the evaluation
split (GLUE's labelled validation split; its test splits have no labels).

Data: local TSV files with a header row (``train_path``, ``eval_path``; columns ``text_fields``
and ``label_field``; labels integers, or strings mapped to ids through ``label_names`` or else in
sorted order), or, when both paths are null, ``datasets.load_dataset(hub_dataset, task)``
(online, or from the local ``datasets`` cache). Weights: ``model`` is a local folder
(``save_pretrained`` layout, with its tokenizer) or a hub name (``from_pretrained``; online, or
the local HF cache with ``HF_HUB_OFFLINE=1``). Relative paths are taken from the current
working directory. The remaining fields are those of
:func:`~ttamer.workloads.text.text_exits.text_exits_config`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ttamer.errors import FieldError
from ttamer.traces.trace import Trace
from ttamer.workloads.text.sst2_minilm import read_tsv, resolve_path, subsample

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GlueTask:
    """Text columns, number of classes and the labelled evaluation split of a GLUE task."""

    text_fields: tuple[str, ...]
    n_classes: int
    eval_split: str = "validation"


GLUE_TASKS: dict[str, GlueTask] = {
    "cola": GlueTask(("sentence",), 2),
    "sst2": GlueTask(("sentence",), 2),
    "mrpc": GlueTask(("sentence1", "sentence2"), 2),
    "qqp": GlueTask(("question1", "question2"), 2),
    "mnli": GlueTask(("premise", "hypothesis"), 3, "validation_matched"),
    "qnli": GlueTask(("question", "sentence"), 2),
    "rte": GlueTask(("sentence1", "sentence2"), 2),
    "wnli": GlueTask(("sentence1", "sentence2"), 2),
}
REGRESSION_TASKS = ("stsb",)


@dataclass(frozen=True)
class TextSplit:
    """``texts`` (first segments), ``pairs`` (second segments, or None) and labels."""

    texts: list[str]
    pairs: list[str] | None
    labels: NDArray[np.int64]

    def subset(self, idx: NDArray[np.intp]) -> TextSplit:
        pairs = None if self.pairs is None else [self.pairs[i] for i in idx]
        return TextSplit([self.texts[i] for i in idx], pairs, self.labels[idx])


def task_spec(config: Mapping[str, Any]) -> GlueTask:
    """The task's text fields, classes and evaluation split, with the config's overrides."""
    task = str(config.get("task", "sst2")).lower()
    if task in REGRESSION_TASKS:
        raise FieldError("workload.task", f"{task} is a regression task; exits here are classifiers")
    base = GLUE_TASKS.get(task)
    fields = config.get("text_fields")
    if fields is None and base is None:
        raise FieldError(
            "workload.text_fields", f"task {task!r} is not a known GLUE task: give its text fields"
        )
    text_fields = tuple(str(f) for f in fields) if fields is not None else base.text_fields  # type: ignore[union-attr]
    if not 1 <= len(text_fields) <= 2:
        raise FieldError("workload.text_fields", f"needs one or two columns, got {list(text_fields)}")
    n_classes = config.get("num_labels")
    eval_split = config.get("eval_split")
    return GlueTask(
        text_fields,
        int(n_classes) if n_classes is not None else (base.n_classes if base is not None else 0),
        str(eval_split)
        if eval_split is not None
        else (base.eval_split if base is not None else "validation"),
    )


def _labels(values: Sequence[Any], names: Sequence[str] | None, field: str, where: str) -> NDArray[np.int64]:
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
    return TextSplit(texts, pairs, _labels(list(frame[label_field]), names, field, str(path)))


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
    labels = _labels(list(ds[label_field]), None, "workload.eval_split", f"{dataset}/{task}:{split}")
    return TextSplit([str(s) for s in ds[spec.text_fields[0]]], pairs, labels)


def load_splits(config: Mapping[str, Any], spec: GlueTask) -> tuple[TextSplit, TextSplit, str]:
    """The training and evaluation splits, and where they came from."""
    label_field = str(config.get("label_field", "label"))
    names = config.get("label_names")
    names = None if names is None else [str(n) for n in names]
    train_path, eval_path = config.get("train_path"), config.get("eval_path")
    if (train_path is None) != (eval_path is None):
        raise FieldError(
            "workload.eval_path" if eval_path is None else "workload.train_path",
            "give both train_path and eval_path, or neither (then `datasets` loads the task)",
        )
    if train_path is not None:
        tp, ep = resolve_path(str(train_path)), resolve_path(str(eval_path))
        train = tsv_split(tp, spec, label_field, names, "workload.train_path")
        evaluate = tsv_split(ep, spec, label_field, names, "workload.eval_path")
        return train, evaluate, f"{tp} | {ep}"
    dataset, task = str(config.get("hub_dataset", "nyu-mll/glue")), str(config.get("task", "sst2")).lower()
    train = hub_split(dataset, task, "train", spec, label_field)
    evaluate = hub_split(dataset, task, spec.eval_split, spec, label_field)
    return train, evaluate, f"{dataset}/{task} (train | {spec.eval_split})"


def produce(config: dict[str, Any], out_dir: Path) -> Trace:
    """The trace of a multi-exit ``model`` on a GLUE ``task`` (see the module docstring)."""
    from ttamer.workloads.text.text_exits import (
        assemble_trace,
        load_backbone,
        run_text_exits,
        text_exits_config,
    )

    cfg = text_exits_config(config)
    spec = task_spec(config)
    train, evaluate, source = load_splits(config, spec)
    n_classes = spec.n_classes or int(max(train.labels.max(initial=0), evaluate.labels.max(initial=0))) + 1
    for name, split in (("train_path", train), ("eval_path", evaluate)):
        if len(split.labels) == 0:
            raise FieldError(f"workload.{name}", "the split has no rows")
        if split.labels.max() >= n_classes:
            raise FieldError(f"workload.{name}", f"label {int(split.labels.max())} >= num_labels {n_classes}")
    train_size, eval_size = config.get("train_size", 4000), config.get("eval_size")
    train = train.subset(
        subsample(len(train.labels), None if train_size is None else int(train_size), cfg.seed)
    )
    evaluate = evaluate.subset(
        subsample(len(evaluate.labels), None if eval_size is None else int(eval_size), cfg.seed + 1)
    )
    model_name = config.get("model")
    if model_name is None:
        raise FieldError("workload.model", "give a hub model name or a local folder")
    local = resolve_path(str(model_name))
    backbone, tokenizer = load_backbone(local if local.is_dir() else str(model_name), "workload.model")
    log.info(
        "glue_hf %s: %d training, %d evaluation rows (%s); model %s (%s)", config.get("task"),
        len(train.labels), len(evaluate.labels), source, model_name, type(backbone).__name__,
    )  # fmt: skip
    try:
        result = run_text_exits(
            backbone, tokenizer, (train.texts, train.pairs, train.labels), (evaluate.texts, evaluate.pairs),
            n_classes, cfg,
        )  # fmt: skip
    except ValueError as exc:
        if "unsupported backbone" in str(exc):
            raise FieldError("workload.model", str(exc)) from None
        raise
    names = [f"layer{i + 1}" for i in range(result.probs.shape[1])]
    meta = {
        "workload": "glue_hf",
        "task": str(config.get("task")),
        "model": str(model_name),
        "architecture": type(backbone).__name__,
        "data": source,
        "train_size": str(len(train.labels)),
        "eval_size": str(len(evaluate.labels)),
        "train_loss": str(result.history[-1] if result.history else float("nan")),
        "seconds": str({k: round(v, 2) for k, v in result.seconds.items()}),
    }
    b0 = cfg.latency.batch_sizes[0]
    trace = assemble_trace(evaluate.labels, result.probs, result.latency, b0, names, meta, result.environment)
    acc = (trace.pred == trace.labels[:, None]).mean(axis=0)
    log.info(
        "glue_hf accuracy per exit: %s", ", ".join(f"{n} {a:.3f}" for n, a in zip(names, acc, strict=True))
    )
    return trace
