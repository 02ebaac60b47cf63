"""``glue_hf`` on MNLI (matched and mismatched, GLUE's own TSV files with string labels and from
``datasets``), sentence pairs as BERT and GPT-2 take them, and the ``glue`` extra: generated
TSVs and tiny random-weight models built here (nothing downloads)."""

from __future__ import annotations

import dataclasses
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from test_workload_glue_hf import WORDS, bert_tokenizer, tiny_model

from ttamer.errors import FieldError
from ttamer.workloads.latency import LatencyConfig
from ttamer.workloads.stand_ins import word_tokenizer
from ttamer.workloads.text.exits.config import TextTrainConfig
from ttamer.workloads.text.exits.tokens import tokenize
from ttamer.workloads.text.glue_hf.config import GlueHfConfig
from ttamer.workloads.text.glue_hf.data import load_splits

CLASSES = {"entailment": 0, "neutral": 1, "contradiction": 2}  # glue/mnli's class ids in `datasets`
CUE = {"entailment": "good", "neutral": "fine", "contradiction": "bad"}  # decides the class


def write_mnli(folder: Path, sizes: dict[str, int]) -> dict[str, pd.DataFrame]:
    """GLUE's MNLI files (train.tsv, dev_matched.tsv, dev_mismatched.tsv): GLUE's columns,
    string gold labels; the hypothesis ends in a word that gives the class."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    frames = {}
    for name, n in sizes.items():
        gold = rng.choice(list(CLASSES), n)
        frame = pd.DataFrame({
            "index": range(n), "promptID": range(n), "pairID": [f"{i}e" for i in range(n)],
            "genre": "fiction" if "mismatched" not in name else "travel",
            "sentence1": [" ".join(rng.choice(WORDS, 4)) for _ in range(n)],
            "sentence2": [" ".join([*rng.choice(WORDS, 2), CUE[g]]) for g in gold],
            "label1": gold, "gold_label": gold,
        })  # fmt: skip
        frame.to_csv(folder / f"{name}.tsv", sep="\t", index=False)
        frames[name] = frame
    return frames


def mnli_config(folder: Path, eval_file: str, **fields: Any) -> GlueHfConfig:
    paths = {"train_path": str(folder / "train.tsv"), "eval_path": str(folder / eval_file)}
    return GlueHfConfig(**{"task": "mnli", "model": "unused", **paths, **fields})


def test_mnli_reads_glue_tsv_files_matched_and_mismatched(tmp_path: Path) -> None:
    frames = write_mnli(tmp_path, {"train": 30, "dev_matched": 12, "dev_mismatched": 9})
    train, matched, _ = load_splits(mnli_config(tmp_path, "dev_matched.tsv"))
    assert train.texts == list(frames["train"]["sentence1"])
    assert train.pairs == list(frames["train"]["sentence2"])
    assert train.labels.tolist() == [CLASSES[g] for g in frames["train"]["gold_label"]]
    assert matched.labels.tolist() == [CLASSES[g] for g in frames["dev_matched"]["gold_label"]]
    for config in (
        mnli_config(tmp_path, "dev_mismatched.tsv", eval_split="validation_mismatched"),
        mnli_config(tmp_path, "dev_mismatched.tsv", task="mnli_mm"),
    ):
        _, mismatched, _ = load_splits(config)
        assert mismatched.pairs == list(frames["dev_mismatched"]["sentence2"])
        assert mismatched.labels.tolist() == [CLASSES[g] for g in frames["dev_mismatched"]["gold_label"]]
    wrong = r"^workload\.eval_path: dev_(mis)?matched\.tsv holds validation_(mis)?matched but"
    with pytest.raises(FieldError, match=wrong):
        load_splits(mnli_config(tmp_path, "dev_mismatched.tsv"))  # task mnli evaluates on matched
    with pytest.raises(FieldError, match=wrong):
        load_splits(mnli_config(tmp_path, "dev_matched.tsv", task="mnli_mm"))


def test_mnli_tsv_in_datasets_layout_and_unknown_labels(tmp_path: Path) -> None:
    """Files with the `datasets` columns (premise, hypothesis, integer label) read as they are;
    a string label outside MNLI's three is refused, naming the file's field."""
    frame = pd.DataFrame({"premise": ["a b", "c"], "hypothesis": ["d", "e f"], "label": [2, 0]})
    for name in ("train", "dev"):
        frame.to_csv(tmp_path / f"{name}.tsv", sep="\t", index=False)
    _, dev, _ = load_splits(mnli_config(tmp_path, "dev.tsv"))
    assert dev.texts == ["a b", "c"] and dev.pairs == ["d", "e f"] and dev.labels.tolist() == [2, 0]
    bad = write_mnli(tmp_path / "bad", {"train": 4, "dev_matched": 3})["dev_matched"]
    bad.loc[1, "gold_label"] = "-"
    bad.to_csv(tmp_path / "bad" / "dev_matched.tsv", sep="\t", index=False)
    with pytest.raises(FieldError, match=r"^workload\.eval_path: .*label '-' is not in label_names"):
        load_splits(mnli_config(tmp_path / "bad", "dev_matched.tsv"))


@pytest.mark.parametrize("kind, task", [("bert", "mnli_mm"), ("gpt2", "mnli")])
def test_mnli_trace_has_three_classes(tmp_path: Path, kind: str, task: str) -> None:
    from ttamer.workloads.text.glue_hf.workload import produce

    frames = write_mnli(tmp_path / "data", {"train": 60, "dev_matched": 15, "dev_mismatched": 12})
    eval_file = "dev_mismatched.tsv" if task == "mnli_mm" else "dev_matched.tsv"
    config = dataclasses.replace(
        mnli_config(tmp_path / "data", eval_file, task=task), model=str(tiny_model(kind, tmp_path / kind)),
        device="cpu", train=TextTrainConfig(epochs=30, lr=0.01),
        latency=LatencyConfig((1, 2), warmup=1, repeats=2),
    )  # fmt: skip
    trace = produce(config, 0, tmp_path)
    dev = frames[eval_file[:-4]]
    assert trace.labels.tolist() == [CLASSES[g] for g in dev["gold_label"]]
    assert trace.probs is not None and trace.probs.shape == (len(dev), 3, 3)
    split = "validation_mismatched" if task == "mnli_mm" else "validation_matched"
    assert trace.meta["eval_split"] == split


class FakeSplit:
    def __init__(self, columns: dict[str, list[Any]]):
        self.columns = columns
        self.column_names = list(columns)

    def __getitem__(self, name: str) -> list[Any]:
        return self.columns[name]


def test_mnli_from_datasets_loads_the_mnli_config_and_the_split(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str, str]] = []

    def load_dataset(path: str, name: str, split: str) -> FakeSplit:
        calls.append((path, name, split))
        return FakeSplit({"premise": ["p"], "hypothesis": ["h"], "label": [1], "idx": [0]})

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    for config, split in (
        (GlueHfConfig(task="mnli"), "validation_matched"),
        (GlueHfConfig(task="mnli_mm"), "validation_mismatched"),
        (GlueHfConfig(task="mnli", eval_split="validation_mismatched"), "validation_mismatched"),
    ):
        calls.clear()
        _, evaluate, source = load_splits(config)
        assert calls == [("nyu-mll/glue", "mnli", "train"), ("nyu-mll/glue", "mnli", split)]
        assert evaluate.pairs == ["h"] and evaluate.labels.tolist() == [1]
        assert source == f"nyu-mll/glue/mnli (train | {split})"


def test_hub_path_without_datasets_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets raises ImportError
    with pytest.raises(FieldError, match=r'^workload\.train_path: .*pip install -e "\.\[glue\]"'):
        load_splits(GlueHfConfig(task="rte"))


def test_sentence_pair_token_ids_bert_and_gpt2() -> None:
    """BERT takes a pair with its own template, [CLS] a [SEP] b [SEP] with segment ids; GPT-2
    (no separator token) gets the end-of-text token between the texts (or a given string)."""
    bert = bert_tokenizer()
    v = bert.get_vocab()
    x = tokenize(bert, ["good film"], ["bad plot"])
    ids = [v["[CLS]"], v["good"], v["film"], v["[SEP]"], v["bad"], v["plot"], v["[SEP]"]]
    assert x.input_ids.tolist() == [ids]
    assert x.token_type_ids is not None and x.token_type_ids.tolist() == [[0, 0, 0, 0, 1, 1, 1]]
    assert tokenize(bert, ["good film"], ["bad plot"], pair_separator=" | ").input_ids.tolist() == [ids]
    gpt2 = word_tokenizer("gpt2")
    gpt2.pad_token = gpt2.eos_token
    g = gpt2.get_vocab()
    first, second = "The cat sat.", "He left."

    def chars(text: str) -> list[int]:  # the byte-level alphabet, no merges: one id per character
        return [g["Ġ" if c == " " else c] for c in text]

    x = tokenize(gpt2, [first], [second])
    assert x.input_ids.tolist() == [[*chars(first), g["<|endoftext|>"], *chars(" " + second)]]
    x = tokenize(gpt2, [first], [second], pair_separator=" | ")
    assert x.input_ids.tolist() == [chars(first + " | " + second)]
    assert int(x.attention_mask.sum()) == len(first + " | " + second)
