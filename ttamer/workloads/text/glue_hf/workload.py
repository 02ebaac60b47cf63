"""The ``glue_hf`` workload's implementation (torch, transformers; README: workloads): the trace
of a multi-exit ``model`` on a GLUE ``task``, the heads trained on a random subsample of the
training split and the trace scored on the evaluation split (GLUE's labelled validation split;
its test splits have no labels)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ttamer.errors import FieldError
from ttamer.traces.trace import Trace
from ttamer.workloads.base import resolve_path
from ttamer.workloads.text.data import subsample
from ttamer.workloads.text.exits.trace import (
    TextExitsResult,
    assemble_trace,
    check_device,
    exit_names,
    log_accuracy,
    run_text_exits,
)
from ttamer.workloads.text.glue_hf.config import GlueHfConfig
from ttamer.workloads.text.glue_hf.data import TextSplit, load_splits

log = logging.getLogger(__name__)


def class_count(config: GlueHfConfig, train: TextSplit, evaluate: TextSplit) -> int:
    """The number of classes (the task's or ``num_labels``, else the largest label + 1);
    FieldError ``workload.train_path`` / ``workload.eval_path`` for an empty split or a label
    out of range."""
    n_classes = config.task_spec().n_classes
    n_classes = n_classes or int(max(train.labels.max(initial=0), evaluate.labels.max(initial=0))) + 1
    for name, split in (("train_path", train), ("eval_path", evaluate)):
        if len(split.labels) == 0:
            raise FieldError(f"workload.{name}", "the split has no rows")
        if split.labels.max() >= n_classes:
            raise FieldError(f"workload.{name}", f"label {int(split.labels.max())} >= num_labels {n_classes}")
    return n_classes


def produce(config: GlueHfConfig, seed: int, out_dir: Path) -> Trace:
    """The trace of ``config.model``'s exits on ``config.task`` (see the module docstring);
    ``seed`` draws the subsamples (training rows with ``seed``, evaluation rows with
    ``seed + 1``) and trains the heads. ``out_dir`` is unused."""
    from ttamer.workloads.text.exits.segments import load_backbone

    check_device(config.device)
    train, evaluate, source = load_splits(config)
    n_classes = class_count(config, train, evaluate)
    train = train.subset(subsample(len(train.labels), config.train_size, seed))
    evaluate = evaluate.subset(subsample(len(evaluate.labels), config.eval_size, seed + 1))
    local = resolve_path(config.model)
    backbone, tokenizer = load_backbone(local if local.is_dir() else config.model, "workload.model")
    log.info(
        "glue_hf %s: %d training, %d evaluation rows (%s); model %s (%s)", config.task,
        len(train.labels), len(evaluate.labels), source, config.model, type(backbone).__name__,
    )  # fmt: skip
    result = _run(backbone, tokenizer, train, evaluate, n_classes, config, seed)
    meta = {
        "workload": "glue_hf",
        "task": config.task,
        "model": config.model,
        "architecture": type(backbone).__name__,
        "data": source,
        "eval_split": config.task_spec().eval_split,
        "recipe": config.train.recipe,
        "precision": config.precision,
        "compile": str(config.compile),
        "train_size": str(len(train.labels)),
        "eval_size": str(len(evaluate.labels)),
        **result.meta(),
    }
    names = exit_names(result.probs.shape[1])
    b0 = config.latency.batch_sizes[0]
    trace = assemble_trace(evaluate.labels, result.probs, result.latency, b0, names, meta, result.environment)
    log_accuracy("glue_hf", trace)
    return trace


def _run(
    backbone: Any, tokenizer: Any, train: TextSplit, evaluate: TextSplit, n_classes: int,
    config: GlueHfConfig, seed: int,
) -> TextExitsResult:  # fmt: skip
    """:func:`~ttamer.workloads.text.exits.trace.run_text_exits`; an unsupported architecture
    is a FieldError ``workload.model``."""
    try:
        return run_text_exits(
            backbone, tokenizer, (train.texts, train.pairs, train.labels), (evaluate.texts, evaluate.pairs),
            n_classes, config, seed,
        )  # fmt: skip
    except ValueError as exc:
        if "unsupported backbone" in str(exc):
            raise FieldError("workload.model", str(exc)) from None
        raise
