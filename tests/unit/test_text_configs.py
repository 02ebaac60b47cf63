"""The text workloads' configs (``sst2_minilm``, ``glue_hf``): their defaults are the values the
YAML files held, their trace cache keys are the ones earlier runs used, bad values name their
field, and discovering them loads no torch."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from typing import Any

import pytest

from ttamer.errors import FieldError
from ttamer.traces.cache import config_key
from ttamer.workloads.latency import LatencyConfig
from ttamer.workloads.text.exits.config import FinetuneConfig, TextTrainConfig
from ttamer.workloads.text.glue_hf.config import GLUE_TASKS, GlueHfConfig, GlueTask
from ttamer.workloads.text.sst2_minilm.config import Sst2MinilmConfig

# conf/workload/*.yaml before their values moved into the dataclasses, composed with the default
# data_root (../shared/data), as plain data
STUDY = {
    "cache_dir": ".cache/ttamer/traces/trace", "recompute": False, "n_splits": 10, "fit_fraction": 0.5,
    "reference": "last_stage", "deltas": [0.0, 0.5, 1.0, 2.0], "target": "label",
    "fit": {"score": "max_softmax", "n_bins": 6, "agreement": False, "loss_prior": 1.0,
            "transition_prior": 0.5},
}  # fmt: skip
TEXT = {
    "max_length": 128, "pooling": "auto", "feature_batch_size": 64, "device": "cpu",
    "train": {"freeze_backbone": True, "epochs": 30, "batch_size": 128, "lr": 0.001, "weight_decay": 0.01,
              "max_seconds": 600},
    "latency": {"batch_sizes": [1, 32], "warmup": 5, "repeats": 30, "threads": None},
}  # fmt: skip
SST2_YAML = {
    "name": "sst2_minilm", "data_dir": "../shared/data/sst2", "model_dir": None, "train_size": 4000,
    "test_size": None, "vader_stage": True, "vader_calibration": "logistic", "threads": 1, **TEXT, **STUDY,
}  # fmt: skip
GLUE_YAML = {
    "name": "glue_hf", "task": "sst2", "model": "bert-base-uncased", "text_fields": None,
    "label_field": "label", "label_names": None, "num_labels": None, "train_path": None, "eval_path": None,
    "hub_dataset": "nyu-mll/glue", "eval_split": None, "train_size": 4000, "eval_size": None, "threads": None,
    **TEXT, **STUDY,
}  # fmt: skip
# fields added since: in the config (their defaults) but not in the trace key of the default
# configs (recipe heads: the fine-tuning fields do not act; single-text task: no pair separator)
FINETUNE = {"epochs": 3, "batch_size": 32, "backbone_lr": 2e-5, "head_lr": 1e-3, "weight_decay": 0.01,
            "warmup_fraction": 0.1, "max_grad_norm": 1.0, "precision": "auto"}  # fmt: skip
ADDED_TRAIN = {"recipe": "heads", "finetune": FINETUNE}
ADDED_SPEED = {"precision": "fp32", "compile": False}
ADDED_GLUE = {"device": "auto", "pair_separator": "{eos} ", **ADDED_SPEED}
STUDY_KEYS = ("cache_dir", "recompute", "n_splits", "fit_fraction", "reference", "deltas", "target", "fit")


def as_json(config: object) -> str:
    """A config as the canonical JSON of its plain data (tuples as lists; 600 and 600.0 differ)."""
    return json.dumps(dataclasses.asdict(config), sort_keys=True)  # type: ignore[call-overload]


@pytest.mark.parametrize(
    "cls, yaml, added", [(Sst2MinilmConfig, SST2_YAML, ADDED_SPEED), (GlueHfConfig, GLUE_YAML, ADDED_GLUE)]
)
def test_defaults_are_the_former_yaml_values(cls: type, yaml: dict[str, Any], added: dict[str, Any]) -> None:
    """The former values, plus the fields added since (glue_hf's device became ``auto``)."""
    expected = {**yaml, "train": {**yaml["train"], **ADDED_TRAIN}, **added}
    assert as_json(cls()) == json.dumps(expected, sort_keys=True)
    assert type(cls().train.max_seconds) is int and type(cls().train.lr) is float


def test_trace_keys_are_the_ones_earlier_runs_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pinned: the keys the Hydra app gave the default configs (seed 0) before the dataclasses
    held the values, i.e. the cached traces of earlier runs are still found (glue_hf's device
    ``auto`` resolves to ``cpu`` on a machine without CUDA, as here)."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert config_key(Sst2MinilmConfig().trace_key(0)) == "0f66f36917adb8af"
    assert config_key(GlueHfConfig().trace_key(0)) == "cc8e121c2f4dc8b9"
    for cls, yaml in ((Sst2MinilmConfig, SST2_YAML), (GlueHfConfig, GLUE_YAML)):
        for seed in (0, 3):
            former = {k: v for k, v in yaml.items() if k not in STUDY_KEYS} | {"seed": seed}
            assert config_key(cls().trace_key(seed)) == config_key(former)


def test_trace_key_holds_the_resolved_device_and_the_acting_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    key = GlueHfConfig().trace_key(0)
    assert key["device"] == "cuda" and key == GlueHfConfig(device="cuda").trace_key(0)
    assert config_key(key) != "cc8e121c2f4dc8b9"  # a trace timed on a GPU is another trace
    assert "recipe" not in key["train"] and "pair_separator" not in key
    tuned = GlueHfConfig(device="cpu", train=TextTrainConfig(recipe="finetune")).trace_key(0)
    assert tuned["train"]["recipe"] == "finetune" and tuned["train"]["finetune"] == FINETUNE
    pair = GlueHfConfig(task="mnli", device="cpu")
    assert pair.trace_key(0)["pair_separator"] == "{eos} "
    spaced = dataclasses.replace(pair, pair_separator=" {eos} ")
    assert config_key(spaced.trace_key(0)) != config_key(pair.trace_key(0))
    # a heads config never holds the fine-tuning fields, whatever their values
    other = TextTrainConfig(finetune=FinetuneConfig(epochs=9, precision="bf16"))
    assert Sst2MinilmConfig(train=other).trace_key(0) == Sst2MinilmConfig().trace_key(0)


def test_study_fields_do_not_change_the_key_and_trace_fields_do() -> None:
    base = config_key(Sst2MinilmConfig().trace_key(0))
    assert config_key(Sst2MinilmConfig(n_splits=3, reference="best_stage").trace_key(0)) == base
    assert config_key(Sst2MinilmConfig(vader_stage=False).trace_key(0)) != base
    assert config_key(Sst2MinilmConfig(train=TextTrainConfig(epochs=3)).trace_key(0)) != base
    assert config_key(Sst2MinilmConfig().trace_key(1)) != base


@pytest.mark.parametrize(
    "build, field",
    [
        (lambda: Sst2MinilmConfig(pooling="max"), "pooling"),
        (lambda: Sst2MinilmConfig(vader_calibration="isotonic"), "vader_calibration"),
        (lambda: Sst2MinilmConfig(train_size=0), "train_size"),
        (lambda: Sst2MinilmConfig(test_size=-1), "test_size"),
        (lambda: Sst2MinilmConfig(threads=0), "threads"),
        (lambda: Sst2MinilmConfig(max_length=0), "max_length"),
        (lambda: Sst2MinilmConfig(device="gpu"), "device"),
        (lambda: Sst2MinilmConfig(reference="best"), "reference"),
        (lambda: GlueHfConfig(task="stsb"), "task"),
        (lambda: GlueHfConfig(task="custom"), "text_fields"),
        (lambda: GlueHfConfig(text_fields=("a", "b", "c")), "text_fields"),
        (lambda: GlueHfConfig(train_path="train.tsv"), "eval_path"),
        (lambda: GlueHfConfig(eval_path="dev.tsv"), "train_path"),
        (lambda: GlueHfConfig(model=""), "model"),
        (lambda: GlueHfConfig(num_labels=1), "num_labels"),
        (lambda: GlueHfConfig(eval_size=0), "eval_size"),
        (lambda: TextTrainConfig(lr=0.0), "lr"),
        (lambda: TextTrainConfig(recipe="lora"), "recipe"),
        (lambda: FinetuneConfig(backbone_lr=0.0), "backbone_lr"),
        (lambda: FinetuneConfig(head_lr=-1.0), "head_lr"),
        (lambda: FinetuneConfig(warmup_fraction=1.0), "warmup_fraction"),
        (lambda: FinetuneConfig(max_grad_norm=0.0), "max_grad_norm"),
        (lambda: FinetuneConfig(precision="fp8"), "precision"),
        (lambda: FinetuneConfig(epochs=-1), "epochs"),
        (lambda: GlueHfConfig(device="tpu"), "device"),
        (lambda: TextTrainConfig(batch_size=0), "batch_size"),
        (lambda: TextTrainConfig(epochs=-1), "epochs"),
        (lambda: TextTrainConfig(max_seconds=-5), "max_seconds"),
        (lambda: LatencyConfig(batch_sizes=()), "batch_sizes"),
    ],
)
def test_bad_values_name_their_field(build: object, field: str) -> None:
    with pytest.raises(FieldError) as info:
        build()  # type: ignore[operator]
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


def test_glue_task_spec_takes_the_task_and_the_overrides() -> None:
    mnli = GlueTask(("premise", "hypothesis"), 3, "validation_matched", "mnli", ("sentence1", "sentence2"),
                    "gold_label", ("entailment", "neutral", "contradiction"))  # fmt: skip
    assert GlueHfConfig(task="MNLI").task_spec() == mnli
    mismatched = dataclasses.replace(mnli, eval_split="validation_mismatched")
    assert GlueHfConfig(task="mnli_mm").task_spec() == mismatched
    assert GlueHfConfig(task="mnli", eval_split="validation_mismatched").task_spec() == mismatched
    assert GlueHfConfig(task="mrpc").task_spec() == GLUE_TASKS["mrpc"]
    custom = GlueHfConfig(task="custom", text_fields=("text",), num_labels=4, eval_split="dev")
    assert custom.task_spec() == GlueTask(("text",), 4, "dev")
    assert GlueHfConfig(task="custom", text_fields=("text",)).task_spec().n_classes == 0  # from the labels
    assert GlueHfConfig(text_fields=("a", "b")).task_spec().text_fields == ("a", "b")


def test_discovery_registers_the_text_workloads_without_torch() -> None:
    code = (
        "import sys, ttamer.workloads.base as b; w = b.workloads(); "
        "from ttamer.workloads.text.sst2_minilm.config import Sst2MinilmConfig; "
        "from ttamer.workloads.text.glue_hf.config import GlueHfConfig; "
        "assert w['sst2_minilm'].config is Sst2MinilmConfig and w['glue_hf'].config is GlueHfConfig; "
        "assert w['sst2_minilm'].implementation == 'ttamer.workloads.text.sst2_minilm.workload'; "
        "assert w['glue_hf'].implementation == 'ttamer.workloads.text.glue_hf.workload'; "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
