"""The configs of the vision workloads and FrugalML: their defaults are the values the YAML files
held before the dataclasses became their schema (copied here as literals), their trace cache
keys are unchanged, bad values name their field, and discovering them imports no torch."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _frugal import write_frugal_folder

from ttamer.errors import FieldError
from ttamer.fitting.chain import FitConfig
from ttamer.traces.cache import config_key
from ttamer.workloads.base import WorkloadConfig, workload, workloads
from ttamer.workloads.frugalml import FrugalmlConfig
from ttamer.workloads.latency import LatencyConfig
from ttamer.workloads.vision.digits import DigitsConfig, DigitsModelConfig, DigitsTrainConfig
from ttamer.workloads.vision.fashion_mnist import FashionMnistConfig, FashionMnistTrainConfig
from ttamer.workloads.vision.imagenet_timm import HeadTraining, ImageNetTimmConfig

STUDY = {"fit_fraction": 0.5, "deltas": [0.0, 0.5, 1.0, 2.0], "target": "label", "recompute": False}
FIT = {"score": "max_softmax", "agreement": False, "loss_prior": 1.0, "transition_prior": 0.5}
# conf/workload/<name>.yaml before the change, composed with the default data_root (../shared/data)
YAML: dict[str, dict[str, Any]] = {
    "digits": {
        **STUDY, "name": "digits", "test_size": 500, "cache_dir": ".cache/ttamer/traces/trace",
        "model": {"channels": [8, 16, 16, 64], "convs": [1, 1, 1, 2],
                  "downsample": [False, True, True, False], "head_pool": [2, 2, 1, 2]},
        "train": {"epochs": 30, "batch_size": 64, "lr": 0.003, "weight_decay": 0.0001},
        "latency": {"batch_sizes": [1, 64], "warmup": 10, "repeats": 50, "threads": None},
        "n_splits": 20, "reference": "last_stage", "fit": {**FIT, "n_bins": 6},
    },
    "fashion_mnist": {
        **STUDY, "name": "fashion_mnist", "data_dir": "/usr/share/datasets/fashion-mnist",
        "train_subsample": None, "test_subsample": None, "image_size": 28,
        "model": {"name": "resnet18", "kwargs": {"channels": [16, 32, 64, 128], "stem_type": "deep",
                                                 "stem_width": 8},
                  "out_indices": [1, 2, 3, 4], "head_dropout": 0.0},
        "train": {"epochs": 4, "batch_size": 128, "lr": 0.002, "weight_decay": 0.0001, "max_seconds": 600,
                  "threads": 1},
        "latency": {"batch_sizes": [1, 64], "warmup": 10, "repeats": 50, "threads": 1},
        "cache_dir": ".cache/ttamer/traces/trace", "n_splits": 10, "reference": "last_stage",
        "fit": {**FIT, "n_bins": 10},
    },
    "imagenet_timm": {
        **STUDY, "name": "imagenet_timm", "mode": "cascade",
        "models": ["resnet18.a1_in1k", "resnet50.a1_in1k"], "model": "resnet50.a1_in1k", "pretrained": True,
        "data_dir": "../shared/data/imagenet", "val_labels": None, "val_label_map": None,
        "precision": "fp32", "compile": False, "cudnn_benchmark": False, "persistent_workers": True,
        "token_pool": "auto",
        "labels": "auto", "train_per_class": 20, "val_per_class": 10, "batch_size": 64, "num_workers": 4,
        "use_test_size": False, "device": "auto", "amp": False, "channels_last": False, "store_probs": True,
        "cost_source": "measured", "tables_dir": "../shared/data/timm-results", "accuracy_file": None,
        "benchmark_file": None, "out_indices": None, "final_head": "model",
        "train": {"epochs": 5, "lr": 0.001, "weight_decay": 0.0001, "head_dropout": 0.0, "max_seconds": None,
                  "shuffle": True},
        "latency": {"batch_sizes": [1, 64], "warmup": 5, "repeats": 30, "threads": None},
        "cache_dir": ".cache/ttamer/traces/trace", "n_splits": 10, "reference": "best_stage",
        "fit": {**FIT, "n_bins": 10},
    },
    "frugalml": {
        "name": "frugalml", "dataset": "IMDB", "folder": "../shared/data/frugalml/mlserviceperformance_IMDB",
        "n_splits": 10, "fit_fraction": 0.5, "reference": "best_stage", "deltas": [0.0, 0.5, 1.0, 2.0],
        "target": "label", "fit": {**FIT, "n_bins": 10},
    },
}  # fmt: skip
CONFIGS: dict[str, type[WorkloadConfig]] = {
    "digits": DigitsConfig, "fashion_mnist": FashionMnistConfig, "imagenet_timm": ImageNetTimmConfig,
    "frugalml": FrugalmlConfig,
}  # fmt: skip


def plain(config: Any) -> Any:
    """A config as JSON data (tuples as lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


@pytest.mark.parametrize("name", sorted(YAML))
def test_defaults_are_the_former_yaml_values(name: str) -> None:
    config = CONFIGS[name]()
    values = plain(config)
    assert {k: values[k] for k in YAML[name]} == YAML[name]
    extra = set(values) - set(YAML[name])  # fields the YAML lacked: the study defaults (frugalml)
    assert {k: values[k] for k in extra} == {k: plain(WorkloadConfig())[k] for k in extra}
    assert workload(name).config is CONFIGS[name]


def test_trace_keys_are_unchanged() -> None:
    """The cache keys ``ttamer-run`` computed before the change (``config_key`` of the composed
    workload without its study fields, plus the seed), so cached traces are reused."""
    assert config_key(DigitsConfig().trace_key(0)) == "1538d83af88f3b20"
    assert config_key(FashionMnistConfig().trace_key(0)) == "379ea7ae9770ec86"
    imagenet = ImageNetTimmConfig(data_dir="/data/imagenet", tables_dir="/data/timm-results")
    assert config_key(imagenet.trace_key(0)) == "174b7dab8e7dc194"  # with data_root=/data
    assert config_key(DigitsConfig().trace_key(1)) != "1538d83af88f3b20"
    key = DigitsConfig(n_splits=3, fit=FitConfig(n_bins=2), cache_dir="x", recompute=True).trace_key(0)
    assert key == DigitsConfig().trace_key(0)  # the study fields do not change the trace


def test_bad_values_name_their_field() -> None:
    bad = [
        (lambda: DigitsConfig(test_size=2000), "test_size"),
        (lambda: DigitsConfig(reference="first"), "reference"),
        (lambda: DigitsModelConfig(head_pool=(1, 1, 0, 1)), "head_pool"),
        (lambda: DigitsTrainConfig(batch_size=0), "batch_size"),
        (lambda: LatencyConfig(batch_sizes=()), "batch_sizes"),
        (lambda: LatencyConfig(threads=0), "threads"),
        (lambda: FashionMnistTrainConfig(max_seconds=0), "max_seconds"),
        (lambda: FashionMnistConfig(train_subsample=0), "train_subsample"),
        (lambda: ImageNetTimmConfig(labels="wordnet"), "labels"),
        (lambda: ImageNetTimmConfig(final_head="mlp"), "final_head"),
        (lambda: ImageNetTimmConfig(mode="exits", model=""), "model"),
        (lambda: HeadTraining(lr=0.0), "lr"),
        (lambda: FrugalmlConfig(dataset="../IMDB"), "dataset"),
        (lambda: FrugalmlConfig(fit_fraction=1.0), "fit_fraction"),
    ]
    for make, field_name in bad:
        with pytest.raises(FieldError) as info:
            make()
        assert info.value.field == field_name


def test_frugalml_tag_and_cache() -> None:
    assert FrugalmlConfig().tag() == "frugalml_imdb"
    assert FrugalmlConfig(dataset="SHOP").tag() == "frugalml_shop"
    assert DigitsConfig().tag() == "digits"
    assert not workload("frugalml").cache and workload("digits").cache


def test_frugalml_reads_its_folder_from_the_launch_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = write_frugal_folder(tmp_path / "data" / "frugalml" / "mlserviceperformance_X", n=12)
    monkeypatch.chdir(tmp_path)
    config = FrugalmlConfig(dataset="X", folder="data/frugalml/mlserviceperformance_X")
    trace = workload("frugalml").produce(config, 0, tmp_path / "out")
    # stages by price: Tiny (id 7), Mid (3), Big (0)
    assert trace.stage_names == ("Tiny", "Mid", "Big")
    np.testing.assert_array_equal(trace.labels, written[0]["y"])
    np.testing.assert_array_equal(trace.pred[:, 0], written[7]["pred"])
    np.testing.assert_allclose(trace.cost, [0.001, 0.75, 2.5])
    assert not (tmp_path / "out").exists()


def test_discovery_imports_no_torch() -> None:
    code = (
        "import json, sys\n"
        "import ttamer.workloads.base as b\n"
        "specs = b.workloads()\n"
        "print(json.dumps({'names': sorted(specs), 'torch': 'torch' in sys.modules,"
        " 'impl': {n: s.implementation for n, s in specs.items()}}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    out = json.loads(proc.stdout)
    assert {"digits", "fashion_mnist", "imagenet_timm", "frugalml"} <= set(out["names"])
    assert out["torch"] is False
    assert out["impl"]["digits"] == "ttamer.workloads.vision.digits.produce"
    assert out["impl"]["frugalml"] == "ttamer.workloads.frugalml.produce"
    assert set(workloads()) == set(out["names"])


def test_implementations_provide_their_functions() -> None:
    for name in ("digits", "fashion_mnist", "imagenet_timm"):
        spec = workload(name)
        for fn in ("produce", "produce_with_model", "untrained_model", "held_out_requests"):
            assert callable(spec.function(fn))
    with pytest.raises(FieldError, match="has no produce_with_model"):
        workload("frugalml").function("produce_with_model")
