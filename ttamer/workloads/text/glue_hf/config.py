"""The ``glue_hf`` workload's config (``conf/workload/glue_hf.yaml``; no torch) and the GLUE
tasks it knows."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ttamer.errors import FieldError, check_bounds
from ttamer.workloads.base import register_workload
from ttamer.workloads.text.exits.config import TextExitsConfig


@dataclass(frozen=True)
class GlueTask:
    """Text columns, number of classes (0: from the labels) and the labelled evaluation split
    of a GLUE task (as ``datasets`` holds it), the ``datasets`` config that holds the task
    (None: the task's name), and how GLUE's own TSV files differ: their text columns and label
    column (None: as in ``datasets``) and their string labels in class order (None: integers)."""

    text_fields: tuple[str, ...]
    n_classes: int
    eval_split: str = "validation"
    hub_config: str | None = None
    tsv_text_fields: tuple[str, ...] | None = None
    tsv_label_field: str | None = None
    label_names: tuple[str, ...] | None = None


MNLI_LABELS = ("entailment", "neutral", "contradiction")  # the class ids of `datasets`' glue/mnli
NLI2_LABELS = ("entailment", "not_entailment")  # qnli, rte
_MNLI = GlueTask(("premise", "hypothesis"), 3, "validation_matched", "mnli", ("sentence1", "sentence2"),
                 "gold_label", MNLI_LABELS)  # fmt: skip
_MRPC = GlueTask(("sentence1", "sentence2"), 2, tsv_text_fields=("#1 String", "#2 String"),
                 tsv_label_field="Quality")  # fmt: skip
GLUE_TASKS: dict[str, GlueTask] = {
    "cola": GlueTask(("sentence",), 2),
    "sst2": GlueTask(("sentence",), 2),
    "mrpc": _MRPC,
    "qqp": GlueTask(("question1", "question2"), 2, tsv_label_field="is_duplicate"),
    "mnli": _MNLI,  # evaluated on validation_matched (GLUE's dev_matched.tsv)
    "mnli_mm": dataclasses.replace(_MNLI, eval_split="validation_mismatched"),  # dev_mismatched.tsv
    "qnli": GlueTask(("question", "sentence"), 2, label_names=NLI2_LABELS),
    "rte": GlueTask(("sentence1", "sentence2"), 2, label_names=NLI2_LABELS),
    "wnli": GlueTask(("sentence1", "sentence2"), 2),
}
REGRESSION_TASKS = ("stsb",)
# GLUE's file names of the evaluation splits that have one, by the `datasets` split they hold
GLUE_EVAL_FILES = {"dev_matched.tsv": "validation_matched", "dev_mismatched.tsv": "validation_mismatched"}


@register_workload("glue_hf", implementation="ttamer.workloads.text.glue_hf.workload")
@dataclass(frozen=True)
class GlueHfConfig(TextExitsConfig):
    """Any GLUE classification ``task`` (:data:`GLUE_TASKS`; stsb is regression: refused) with
    any transformers encoder (BERT-like, DistilBERT) or GPT-2 ``model`` (a hub name or a local
    ``save_pretrained`` folder with its tokenizer): an exit after every transformer layer,
    frozen backbone by default, heads trained on ``train_size`` training rows (a seeded draw;
    None: all), the trace scored on ``eval_size`` rows of the evaluation split (None: all).

    Data: local TSV files with a header row (``train_path`` and ``eval_path``, both or
    neither; relative to the launch folder) or, when both are None,
    ``datasets.load_dataset(hub_dataset, task)`` (online, or the local ``datasets`` cache).
    ``text_fields``: one or two text columns (None: the task's, e.g. sentence1, sentence2 for
    mrpc); ``label_field``: the label column; ``label_names``: for string labels in TSVs, their
    order gives the class ids; ``num_labels``: None, the task's (else the largest label + 1);
    ``eval_split``: None, the task's labelled validation split (validation_matched for mnli,
    validation_mismatched for mnli_mm, which is mnli evaluated on its mismatched genres).
    GLUE's own TSV files (MNLI's train.tsv, dev_matched.tsv, dev_mismatched.tsv with
    sentence1, sentence2 and gold_label strings; QNLI and RTE with string labels) are read as
    they are when the task's ``datasets`` columns are not in the file.

    ``pair_separator``: for sentence pairs with a tokenizer that has no separator token (GPT-2),
    the string between the two texts, ``{eos}`` standing for its end-of-text token; tokenizers
    with one (BERT's ``[SEP]``) use their own pair template. ``device`` defaults to ``auto``
    (cuda when available). The other fields:
    :class:`~ttamer.workloads.text.exits.config.TextExitsConfig`."""

    name: str = "glue_hf"
    task: str = "sst2"
    model: str = "bert-base-uncased"
    text_fields: tuple[str, ...] | None = None
    label_field: str = "label"
    label_names: tuple[str, ...] | None = None
    num_labels: int | None = None
    train_path: str | None = None
    eval_path: str | None = None
    hub_dataset: str = "nyu-mll/glue"
    eval_split: str | None = None
    train_size: int | None = 4000
    eval_size: int | None = None
    device: str = "auto"
    pair_separator: str = "{eos} "

    def __post_init__(self) -> None:
        super().__post_init__()
        self.task_spec()
        if not self.model:
            raise FieldError("model", "give a hub model name or a local folder")
        if (self.train_path is None) != (self.eval_path is None):
            raise FieldError(
                "eval_path" if self.eval_path is None else "train_path",
                "give both train_path and eval_path, or neither (then `datasets` loads the task)",
            )
        check_bounds(self, ("train_size", "eval_size"), 1, optional=True)
        check_bounds(self, ("num_labels",), 2, optional=True)

    def task_spec(self) -> GlueTask:
        """The task's text fields, classes and evaluation split, with this config's overrides
        (FieldError ``task`` or ``text_fields`` when they cannot be told)."""
        task = self.task.lower()
        if task in REGRESSION_TASKS:
            raise FieldError("task", f"{task} is a regression task; exits here are classifiers")
        base = GLUE_TASKS.get(task)
        if self.text_fields is None and base is None:
            raise FieldError("text_fields", f"task {task!r} is not a known GLUE task: give its text fields")
        text_fields = self.text_fields if self.text_fields is not None else base.text_fields  # type: ignore[union-attr]
        if not 1 <= len(text_fields) <= 2:
            raise FieldError("text_fields", f"needs one or two columns, got {list(text_fields)}")
        default = base if base is not None else GlueTask(text_fields, 0)
        n_classes = self.num_labels if self.num_labels is not None else default.n_classes
        eval_split = self.eval_split if self.eval_split is not None else default.eval_split
        if self.text_fields is not None:  # the columns given are the columns of every source
            default = dataclasses.replace(default, tsv_text_fields=None)
        return dataclasses.replace(
            default, text_fields=text_fields, n_classes=n_classes, eval_split=eval_split
        )

    def trace_key(self, seed: int) -> dict[str, Any]:
        """The trace cache key; ``pair_separator`` only for sentence-pair tasks (single-text
        tasks keep their earlier keys)."""
        key = super().trace_key(seed)
        if len(self.task_spec().text_fields) < 2:
            del key["pair_separator"]
        return key
