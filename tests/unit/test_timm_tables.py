"""timm's published tables (accuracy and benchmark), read and joined by ``timm_tables``; the real
files under ``<data root>/timm-results`` are checked against rows read independently with
``csv``."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from ttamer.errors import FieldError
from ttamer.workloads.vision.timm_tables import (
    DEFAULT_BENCHMARK_FILES,
    TimmTables,
    architecture,
    read_benchmark,
    resolve_table,
)

REPO = Path(__file__).resolve().parents[2]
DATA_ROOT = Path(os.environ.get("TTAMER_DATA_ROOT", REPO.parent / "shared" / "data"))
TABLES = DATA_ROOT / "timm-results"
HISTORICAL_BENCH = "historical/benchmark-infer-amp-nhwc-pt112-cu113-rtx3090@c865028c.csv"


@pytest.fixture(scope="module")
def real_tables() -> TimmTables:
    if not (TABLES / "results" / "results-imagenet.csv").is_file():
        pytest.skip(f"timm results tables not found at {TABLES} (set TTAMER_DATA_ROOT to the data root)")
    return TimmTables.load(TABLES)


def csv_rows(path: Path, model: str, size_column: str) -> dict[int, dict[str, str]]:
    """The rows of ``model`` keyed by image size, read with the csv module."""
    with open(path, newline="") as fh:
        return {int(r[size_column]): r for r in csv.DictReader(fh) if r["model"] == model}


def test_default_benchmark_is_the_historical_rtx3090_nhwc_file(real_tables: TimmTables) -> None:
    assert DEFAULT_BENCHMARK_FILES[0] == HISTORICAL_BENCH
    if not (TABLES / HISTORICAL_BENCH).is_file():
        pytest.skip("historical benchmark table absent")
    assert real_tables.benchmark_file == TABLES / HISTORICAL_BENCH
    assert real_tables.accuracy_file == TABLES / "results" / "results-imagenet.csv"


@pytest.mark.parametrize(
    ("model", "img_size"),
    [("resnet50.a1_in1k", 224), ("resnet18.a1_in1k", 224), ("efficientnet_b0.ra_in1k", 224)],
)
def test_known_models_join_accuracy_to_throughput(real_tables: TimmTables, model: str, img_size: int) -> None:
    assert real_tables.accuracy_file is not None
    acc = csv_rows(real_tables.accuracy_file, model, "img_size")[img_size]
    bench = csv_rows(real_tables.benchmark_file, architecture(model), "infer_img_size")[img_size]
    entry = real_tables.entry(model, img_size)
    assert entry.arch == model.split(".")[0]
    assert entry.top1 == pytest.approx(float(acc["top1"]))
    assert entry.top5 == pytest.approx(float(acc["top5"]))
    assert entry.samples_per_sec == pytest.approx(float(bench["infer_samples_per_sec"]))
    assert entry.batch_size == int(bench["infer_batch_size"])
    assert entry.ms_per_image == pytest.approx(1000.0 / float(bench["infer_samples_per_sec"]))


def test_resnet50_a1_numbers(real_tables: TimmTables) -> None:
    """Pinned values of the shipped files: 80.382 top-1 at 224; 3676.35 images/s (RTX 3090,
    AMP, NHWC, PyTorch 1.12, batch 1024) -> 0.272 ms per image."""
    if real_tables.benchmark_file.name != Path(HISTORICAL_BENCH).name:
        pytest.skip("historical benchmark table absent")
    entry = real_tables.entry("resnet50.a1_in1k", 224)
    assert entry.top1 == pytest.approx(80.382)
    assert entry.samples_per_sec == pytest.approx(3676.35)
    assert entry.batch_size == 1024
    assert entry.ms_per_image == pytest.approx(0.27201, abs=1e-5)


def test_entry_without_size_uses_a_benchmarked_size(real_tables: TimmTables) -> None:
    # resnet50.a1_in1k is evaluated at 288 (listed first, higher top-1) and 224; only 224 is benchmarked
    entry = real_tables.entry("resnet50.a1_in1k")
    assert entry.img_size == 224


def test_joined_rows_match_the_files(real_tables: TimmTables) -> None:
    joined = real_tables.joined()
    assert len(joined) > 300
    assert (joined["ms_per_image"] > 0).all()
    row = joined[(joined["model"] == "resnet18.a1_in1k") & (joined["img_size"] == 224)].iloc[0]
    bench = csv_rows(real_tables.benchmark_file, "resnet18", "infer_img_size")[224]
    assert row["infer_samples_per_sec"] == pytest.approx(float(bench["infer_samples_per_sec"]))


def test_cascade_entries_accumulate_cost(real_tables: TimmTables) -> None:
    table = real_tables.entries(["resnet18.a1_in1k", "resnet50.a1_in1k"], [224, 224])
    assert list(table["model"]) == ["resnet18.a1_in1k", "resnet50.a1_in1k"]
    assert table["cumulative_ms"].iloc[-1] == pytest.approx(table["ms_per_image"].sum())


def test_missing_model_errors_name_model_and_file(real_tables: TimmTables) -> None:
    with pytest.raises(FieldError, match=r"no_such_net\.x.*results-imagenet\.csv"):
        real_tables.entry("no_such_net.x")
    with pytest.raises(FieldError, match=r"no_such_net.*benchmark-infer"):
        real_tables.ms_per_image("no_such_net.x", 224)
    with pytest.raises(FieldError, match=r"image size\(s\) \[224\].*not at 999"):
        real_tables.ms_per_image("resnet50.a1_in1k", 999)
    # an untagged name is ambiguous when several tagged models share the architecture
    with pytest.raises(FieldError, match=r"resnet50\.a1_in1k"):
        real_tables.entry("resnet50")


def test_newer_benchmark_files_have_several_sizes_per_architecture() -> None:
    path = TABLES / "results" / "benchmark-infer-amp-nhwc-pt240-cu124-rtx3090.csv"
    if not path.is_file():
        pytest.skip(f"{path} absent")
    tables = TimmTables.load(TABLES, benchmark_file=path.name)  # a bare name is found under results/
    assert tables.benchmark_file == path
    rows = csv_rows(path, "resnet10t", "infer_img_size")
    assert set(rows) >= {176, 224}
    for size, row in rows.items():
        assert tables.ms_per_image("resnet10t.c3_in1k", size) == pytest.approx(
            1000.0 / float(row["infer_samples_per_sec"])
        )


def test_tables_from_generated_files(tmp_path: Path) -> None:
    """Thousands separators, missing throughput and the fallback default benchmark."""
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "results-imagenet.csv").write_text(
        "model,img_size,top1,top5,param_count\n"
        'big.x_in1k,448,90.1,99.0,"1,013.01"\n'
        "small.y_in1k,160,50.0,70.0,0.5\n"
    )
    (tmp_path / "results" / "benchmark-infer-amp-nhwc-pt240-cu124-rtx3090.csv").write_text(
        "model,infer_img_size,infer_samples_per_sec,infer_step_time,infer_batch_size\n"
        "big,448,250.0,1.0,256\n"
        "small,160,,1.0,1024\n"
    )
    tables = TimmTables.load(tmp_path)
    assert tables.benchmark_file.name == "benchmark-infer-amp-nhwc-pt240-cu124-rtx3090.csv"
    entry = tables.entry("big.x_in1k")
    assert entry.param_count == pytest.approx(1013.01)
    assert entry.ms_per_image == pytest.approx(4.0)
    assert entry.batch_size == 256
    assert len(read_benchmark(tables.benchmark_file)) == 1  # the row without throughput is dropped
    with pytest.raises(FieldError, match=r"'small'.*not in the benchmark"):
        tables.entry("small.y_in1k")
    with pytest.raises(FieldError, match="benchmark_file"):
        resolve_table(tmp_path, "nope.csv")
    with pytest.raises(FieldError, match="benchmark_file: none of the default"):
        resolve_table(tmp_path / "empty", None)
