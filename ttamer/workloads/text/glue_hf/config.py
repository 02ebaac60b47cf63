"""The ``glue_hf`` workload's config (``conf/workload/glue_hf.yaml``; no torch) and the GLUE
tasks it knows."""

from __future__ import annotations

from dataclasses import dataclass

from ttamer.errors import FieldError, check_bounds
from ttamer.workloads.base import register_workload
from ttamer.workloads.text.exits.config import TextExitsConfig


@dataclass(frozen=True)
class GlueTask:
    """Text columns, number of classes (0: from the labels) and the labelled evaluation split
    of a GLUE task."""

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
    ``eval_split``: None, the task's labelled validation split (validation_matched for mnli).
    The other fields: :class:`~ttamer.workloads.text.exits.config.TextExitsConfig`."""

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
        return GlueTask(text_fields, n_classes, eval_split)
