"""The ``imagenet_timm`` cascade's per-model output cache, ImageNet's raw flat val layout and the
cascade's device label, on generated images (3 ImageNet wnid classes) with random-weight tiny
timm models: a cascade of cached models (reordered, a subset, another cost source or batch size)
runs no model, and its trace equals the one computed from scratch; a flat val folder labelled by
the devkit's ground truth gives the trace of the same images in class folders."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from ttamer.errors import FieldError
from ttamer.traces.cache import config_key, digest
from ttamer.traces.trace import Trace
from ttamer.workloads.latency import LatencyConfig
from ttamer.workloads.trace_from_model import latency_table_from_trace
from ttamer.workloads.vision.imagenet_timm import cascade
from ttamer.workloads.vision.imagenet_timm.config import ImageNetTimmConfig
from ttamer.workloads.vision.imagenet_timm.data import imagenet_wnids, read_split
from ttamer.workloads.vision.imagenet_timm.outputs import latency_key, outputs_key
from ttamer.workloads.vision.imagenet_timm.produce import imagenet_trace, produce
from ttamer.workloads.vision.imagenet_timm.raw_val import ValLabels

WNIDS = ("n01440764", "n01443537", "n01484850")  # ImageNet-1k classes 0, 1, 2
PER_CLASS = 5
MODELS = ("test_vit", "test_byobnet")  # both at 160 px
THROUGHPUT = {"test_vit": 2000.0, "test_byobnet": 500.0}  # made-up images/s in the generated table
FAST: dict[str, Any] = {
    "num_workers": 0, "batch_size": 4, "latency": LatencyConfig(batch_sizes=(2, 4), warmup=1, repeats=2),
    "tables_dir": None, "pretrained": False, "val_per_class": 4,
}  # fmt: skip


def write_val(root: Path) -> tuple[Path, Path]:
    """The same JPEGs twice: ``root/folders/val/<wnid>/ILSVRC2012_val_<n>.JPEG`` and
    ``root/flat/val/ILSVRC2012_val_<n>.JPEG`` (the image numbers interleave the classes), plus
    the flat layout's label files in ``root/devkit``: the ground truth (ILSVRC2012_IDs in a
    shuffled ID order), meta.mat and a text map of that order, a wnid-per-line list and a
    Kaggle CSV."""
    rng = np.random.default_rng(0)
    classes = rng.permutation(np.repeat(np.arange(len(WNIDS)), PER_CLASS))
    id_order = [str(w) for w in rng.permutation(imagenet_wnids())]  # ILSVRC2012_ID i+1 -> id_order[i]
    devkit = root / "devkit"
    devkit.mkdir(parents=True)
    for n, c in enumerate(classes, start=1):
        img = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
        img[..., c] = 255
        name = f"ILSVRC2012_val_{n:08d}.JPEG"
        folder = root / "folders" / "val" / WNIDS[c]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / name, format="JPEG")
        (root / "flat" / "val").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / name, root / "flat" / "val" / name)
    gt = [str(id_order.index(WNIDS[c]) + 1) for c in classes]
    (devkit / "ILSVRC2012_validation_ground_truth.txt").write_text("\n".join(gt) + "\n")
    (devkit / "id_map.txt").write_text("".join(f"{i + 1} {w}\n" for i, w in enumerate(id_order)))
    (devkit / "wnids.txt").write_text("".join(f"{WNIDS[c]}\n" for c in classes))
    rows = [f"ILSVRC2012_val_{n:08d},{WNIDS[c]} 1 2 30 40 " for n, c in enumerate(classes, start=1)]
    (devkit / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + "\n".join(rows) + "\n")
    write_meta_mat(devkit / "meta.mat", id_order)
    return root / "folders", root / "flat"


def write_meta_mat(path: Path, id_order: list[str]) -> None:
    """A devkit-style meta.mat: a ``synsets`` struct array, the 1000 leaves then inner nodes."""
    from scipy.io import savemat

    synsets = np.zeros(1003, dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("num_children", "O")])
    for i, w in enumerate([*id_order, "n00001740", "n00001930", "n00002137"]):
        synsets[i] = (i + 1, w, 0 if i < 1000 else 2)
    savemat(str(path), {"synsets": synsets})


def write_tables(root: Path) -> Path:
    (root / "results").mkdir(parents=True)
    rows = [f"{m},160,{v},1.0,256" for m, v in THROUGHPUT.items()]
    header = "model,infer_img_size,infer_samples_per_sec,infer_step_time,infer_batch_size"
    (root / "results" / "benchmark-infer-amp-nhwc-pt240-cu124-rtx3090.csv").write_text(
        "\n".join([header, *rows]) + "\n"
    )
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("imagenet")
    folders, flat = write_val(root)
    return {
        "folders": folders,
        "flat": flat,
        "devkit": root / "devkit",
        "tables": write_tables(root / "timm"),
    }


class Calls:
    """Counts of model creations and classification passes (each a model's forward over the images)."""

    def __init__(self) -> None:
        self.created: list[str] = []
        self.classified = 0


def fake_measure(net: Any, example: torch.Tensor, job: Any) -> pd.DataFrame:
    """A deterministic latency table (ms per batch grows with the model's parameter count and
    the batch size), so that traces computed twice have equal costs."""
    params = sum(p.numel() for p in net.parameters())
    rows = [
        {"stage": 1, "batch_size": b, "median_ms": params * b / 1e5, "p10_ms": 0.0, "p90_ms": 0.0,
         "repeats": 1, "head_median_ms": 0.0, "head_p10_ms": 0.0, "head_p90_ms": 0.0}
        for b in job.config.latency.batch_sizes
    ]  # fmt: skip
    return pd.DataFrame(rows)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    counts = Calls()
    create, classify = cascade.create_classifier, cascade.classify

    def counting_create(name: str, pretrained: bool) -> Any:
        counts.created.append(name)
        return create(name, pretrained)

    def counting_classify(*args: Any) -> Any:
        counts.classified += 1
        return classify(*args)

    monkeypatch.setattr(cascade, "create_classifier", counting_create)
    monkeypatch.setattr(cascade, "classify", counting_classify)
    return counts


def assert_same_trace(a: Trace, b: Trace, same_images: bool = True) -> None:
    """Equal outputs, costs and per-stage meta (to float precision); the outputs' cache keys
    differ where the images are other files (``same_images`` false)."""
    assert a.stage_names == b.stage_names and a.cost_unit == b.cost_unit
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.pred, b.pred)
    np.testing.assert_allclose(a.conf, b.conf, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(a.cost, b.cost, rtol=1e-12)
    assert (a.probs is None) == (b.probs is None)
    if a.probs is not None and b.probs is not None:
        np.testing.assert_allclose(a.probs, b.probs, rtol=1e-5, atol=1e-9)
    for k in sorted(k for k in {*a.meta, *b.meta} if k.startswith("stage")):
        if k.endswith("_outputs_key") and not same_images:
            assert a.meta[k] != b.meta[k]
        else:
            assert a.meta.get(k) == b.meta.get(k), k


def test_cached_cascades_run_no_model(tmp_path: Path, data: dict[str, Path], calls: Calls,
                                      monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """A 2-model cascade fills the cache; reordered, a 1-model subset, timm table costs and
    another batch size then run no model, and equal the traces computed from scratch."""
    monkeypatch.setattr(cascade, "measure", fake_measure)
    base = ImageNetTimmConfig(**FAST, data_dir=str(data["folders"]), models=MODELS,
                              cache_dir=str(tmp_path / "cache"))  # fmt: skip
    first = imagenet_trace(base, 0)
    assert sorted(calls.created) == sorted(MODELS) and calls.classified == 2
    assert len(list((tmp_path / "cache" / "imagenet_outputs").glob("*.npz"))) == 2
    variants = [
        replace(base, models=MODELS[::-1]),
        replace(base, models=MODELS[1:]),
        replace(base, cost_source="timm_table", tables_dir=str(data["tables"])),
        replace(base, batch_size=3, num_workers=1),
    ]
    for k, cfg in enumerate(variants):
        calls.created.clear()
        calls.classified = 0
        trace = imagenet_trace(cfg, 0)
        assert calls.created == [] and calls.classified == 0, cfg  # no model ran
        scratch = imagenet_trace(replace(cfg, cache_dir=str(tmp_path / f"scratch{k}")), 0)
        assert sorted(calls.created) == sorted(cfg.models) and calls.classified == len(cfg.models)
        assert_same_trace(trace, scratch)
    # the reordered cascade's stages are the first one's, swapped (random weights per model)
    swapped = imagenet_trace(variants[0], 0)
    np.testing.assert_array_equal(swapped.pred, first.pred[:, ::-1])
    np.testing.assert_allclose(swapped.cost, first.cost[::-1])
    table = imagenet_trace(variants[2], 0)
    np.testing.assert_allclose(table.cost, [1000.0 / THROUGHPUT[m] for m in MODELS])
    np.testing.assert_array_equal(table.pred, first.pred)


def test_what_the_cache_is_keyed_by(tmp_path: Path, data: dict[str, Path], calls: Calls) -> None:
    """Outputs are recomputed for other images, another seed's random weights or when
    probabilities are missing; measured latency is reused only with the same latency settings;
    ``recompute`` and a corrupt file recompute."""
    base = ImageNetTimmConfig(**FAST, data_dir=str(data["folders"]), models=MODELS[:1], store_probs=False,
                              cache_dir=str(tmp_path / "cache"))  # fmt: skip

    def run(cfg: ImageNetTimmConfig, seed: int = 0) -> tuple[Trace, int, int]:
        calls.created.clear()
        calls.classified = 0
        trace = imagenet_trace(cfg, seed)
        return trace, len(calls.created), calls.classified

    first, created, classified = run(base)
    assert (created, classified) == (1, 1) and first.probs is None
    again, created, classified = run(base)
    assert (created, classified) == (0, 0)
    np.testing.assert_array_equal(again.cost, first.cost)  # the cached measurement
    assert run(replace(base, store_probs=True))[1:] == (1, 1)  # cached without probabilities
    assert run(base)[1:] == (0, 0)  # probabilities kept: serve a run without them too
    assert run(replace(base, val_per_class=3))[1:] == (1, 1)  # other images
    assert run(base, seed=1)[1:] == (1, 1)  # another subset and other random weights
    assert run(replace(base, latency=LatencyConfig(batch_sizes=(2,), warmup=0, repeats=1)))[1:] == (1, 0)
    assert run(replace(base, recompute=True))[1:] == (1, 1)
    folder = tmp_path / "cache" / "imagenet_outputs"
    latency_files = {p: p.read_bytes() for p in folder.glob("*-latency-*.json")}
    assert len(latency_files) == 2  # two latency settings
    for path in folder.glob("*.npz"):
        path.write_bytes(b"not an npz")
    assert run(base)[1:] == (1, 1)  # outputs recomputed (the model created for them)
    assert {p: p.read_bytes() for p in folder.glob("*-latency-*.json")} == latency_files  # not re-measured


def test_flat_val_with_devkit_ground_truth_equals_class_folders(
    tmp_path: Path, data: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cascade, "measure", fake_measure)
    devkit = data["devkit"]
    base = ImageNetTimmConfig(**FAST, models=MODELS, data_dir=str(data["folders"]), cache_dir=str(tmp_path))
    folders = imagenet_trace(base, 0)
    flat = imagenet_trace(
        replace(
            base,
            data_dir=str(data["flat"]),
            val_labels=str(devkit / "ILSVRC2012_validation_ground_truth.txt"),
        ),
        0,
    )  # the devkit's meta.mat beside the ground truth maps the IDs
    assert_same_trace(flat, folders, same_images=False)
    assert flat.n_samples == 3 * 4
    np.testing.assert_array_equal(np.sort(flat.labels), np.repeat([0, 1, 2], 4))


GROUND_TRUTH = "ILSVRC2012_validation_ground_truth.txt"


@pytest.mark.parametrize(
    ("labels_file", "label_map"),
    [(GROUND_TRUTH, "id_map.txt"), (GROUND_TRUTH, None), (GROUND_TRUTH, "meta.mat"), ("wnids.txt", None),
     ("LOC_val_solution.csv", None)],
)  # fmt: skip
def test_flat_val_label_files(data: dict[str, Path], labels_file: str, label_map: str | None) -> None:
    """Every label file format lists the flat folder's images as the class folders list them."""
    devkit = data["devkit"]
    spec = ValLabels(devkit / labels_file, devkit / label_map if label_map else None)
    flat, space = read_split(data["flat"], "val", None, None, "auto", 0, val_labels=spec)
    folders, _ = read_split(data["folders"], "val", None, None, "auto", 0)
    assert space == "imagenet" and flat.classes == folders.classes == WNIDS
    assert [Path(p).name for p in flat.paths] == [Path(p).name for p in folders.paths]
    np.testing.assert_array_equal(flat.labels, folders.labels)
    sub_flat, _ = read_split(data["flat"], "val", 2, None, "auto", 3, val_labels=spec)
    sub_folders, _ = read_split(data["folders"], "val", 2, None, "auto", 3)
    assert [Path(p).name for p in sub_flat.paths] == [Path(p).name for p in sub_folders.paths]


def test_flat_val_errors_name_the_field(tmp_path: Path, data: dict[str, Path]) -> None:
    devkit, flat = data["devkit"], data["flat"]
    gt = devkit / "ILSVRC2012_validation_ground_truth.txt"
    with pytest.raises(
        FieldError, match=r"^val_labels: .*without class folders.*ILSVRC2012_validation_ground"
    ):
        read_split(flat, "val", None, None, "auto", 0)
    lonely = tmp_path / "gt.txt"
    shutil.copyfile(gt, lonely)
    with pytest.raises(FieldError, match=r"^val_label_map: .*holds ILSVRC2012_IDs; name the devkit's meta"):
        read_split(flat, "val", None, None, "auto", 0, val_labels=ValLabels(lonely))
    sorted_map = tmp_path / "synsets.txt"
    sorted_map.write_text("\n".join(imagenet_wnids()) + "\n")
    with pytest.raises(FieldError, match=r"^val_label_map: .*sorted order"):
        read_split(flat, "val", None, None, "auto", 0, val_labels=ValLabels(gt, sorted_map))
    short = tmp_path / "short.txt"
    short.write_text("1\n2\n")
    with pytest.raises(FieldError, match=r"^val_labels: .*ILSVRC2012_val_00000003.* is not one of its 2"):
        read_split(flat, "val", None, None, "auto", 0, val_labels=ValLabels(short, devkit / "id_map.txt"))
    with pytest.raises(FieldError, match=r"^val_labels: .*has class folders"):
        read_split(data["folders"], "val", None, None, "auto", 0, val_labels=ValLabels(gt))
    with pytest.raises(FieldError, match=r"^val_label_map: maps the devkit's ground truth: set val_labels"):
        ImageNetTimmConfig(val_label_map="meta.mat")
    cfg = ImageNetTimmConfig(**FAST, data_dir=str(flat), models=MODELS[:1], cache_dir=str(tmp_path))
    with pytest.raises(FieldError, match=r"^workload\.val_labels: .*without class folders"):
        produce(cfg, 0, tmp_path)


def test_trace_key_names_val_labels_only_when_set() -> None:
    """Unset, the new fields leave the trace cache key as it was; set, they change it."""
    plain = ImageNetTimmConfig()
    assert "val_labels" not in plain.trace_key(0) and "val_label_map" not in plain.trace_key(0)
    flat = ImageNetTimmConfig(val_labels="gt.txt", val_label_map="meta.mat")
    assert flat.trace_key(0) == {**plain.trace_key(0), "val_labels": "gt.txt", "val_label_map": "meta.mat"}
    assert config_key(flat.trace_key(0)) != config_key(plain.trace_key(0))


def test_precision_and_compile_key_the_cache_and_older_keys_stay() -> None:
    """fp32 and fp16 keep the latency keys they had as ``amp`` false / true (written out here as
    they were); bf16 and torch.compile get keys of their own; outputs are keyed by precision but
    not by compilation (it does not change the logits beyond rounding)."""
    env, lat = {"device": "cpu"}, {"batch_sizes": [1]}
    old = {"format": 1, "model": "m", "input_size": [3, 8, 8], "device": "cpu", "environment": env,
           "channels_last": False, "latency": lat}  # fmt: skip
    assert latency_key("m", (3, 8, 8), "cpu", env, "fp32", False, lat) == {**old, "amp": False}
    assert latency_key("m", (3, 8, 8), "cpu", env, "fp16", False, lat) == {**old, "amp": True}
    variants = [latency_key("m", (3, 8, 8), "cpu", env, p, False, lat, c) for p in ("fp32", "fp16", "bf16")
                for c in (False, True)]  # fmt: skip
    assert len({digest(k) for k in variants}) == 6
    names = {p: outputs_key("m", {}, "img", {}, False, p)["precision"] for p in ("fp32", "fp16", "bf16")}
    assert names == {"fp32": "float32", "fp16": "float16-autocast", "bf16": "bfloat16-autocast"}


def test_measured_costs_come_from_the_cached_table(tmp_path: Path, data: dict[str, Path]) -> None:
    """Real timing once: the second run's costs are the first run's measurement (ms per image at
    the first batch size), labelled with the device used."""
    cfg = ImageNetTimmConfig(**FAST, data_dir=str(data["folders"]), models=MODELS, cache_dir=str(tmp_path),
                             device="cpu", store_probs=False)  # fmt: skip
    first = imagenet_trace(cfg, 0)
    second = imagenet_trace(replace(cfg, models=MODELS[::-1]), 0)
    np.testing.assert_array_equal(second.cost, first.cost[::-1])
    table = latency_table_from_trace(second)
    at2 = table[table["batch_size"] == 2].sort_values("stage")["median_ms"].to_numpy()
    np.testing.assert_allclose(second.cost, at2 / 2)
    assert second.cost_unit == "ms per image (measured, batch 2, cpu)"


def test_compiled_cascade_gives_the_eager_outputs(tmp_path: Path, data: dict[str, Path]) -> None:
    """``compile: true``: the inference pass runs the compiled model (same predictions, and
    probabilities to float rounding), its outputs are shared with eager runs (not keyed by
    compile), and the latency is measured again, compiled, and recorded as such."""
    cfg = ImageNetTimmConfig(**FAST, data_dir=str(data["folders"]), models=MODELS, device="cpu",
                             cache_dir=str(tmp_path / "a"))  # fmt: skip
    eager = imagenet_trace(cfg, 0)
    ran: list[str] = []
    original = cascade.classify

    def classify(model: Any, *args: Any) -> Any:
        ran.append(type(model).__name__)
        return original(model, *args)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cascade, "classify", classify)
        fast = imagenet_trace(replace(cfg, compile=True, cache_dir=str(tmp_path / "b")), 0)
        assert ran == ["OptimizedModule"] * len(MODELS)  # torch.compile's wrapper
        again = imagenet_trace(replace(cfg, compile=True), 0)  # eager outputs in the cache serve it
        assert len(ran) == len(MODELS)
    np.testing.assert_array_equal(fast.pred, eager.pred)
    assert fast.probs is not None and eager.probs is not None
    np.testing.assert_allclose(fast.probs, eager.probs, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(again.pred, eager.pred)
    assert set(latency_table_from_trace(eager)["compile"]) == {False}
    for trace in (fast, again):
        assert set(latency_table_from_trace(trace)["compile"]) == {True}
