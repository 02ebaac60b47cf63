"""timm's published ImageNet tables: accuracy per pretrained model and inference throughput per
architecture, joined into a cost per image (README: workloads; model cascades after Lebovitz et al.).

The tables come from ``huggingface/pytorch-image-models`` (folder ``results/``; a copy, with the
2022 versions under ``historical/``, is in ``../shared/data/timm-results``):

- accuracy, ``results-imagenet*.csv``: one row per evaluated (model, image size); ``model`` is a
  tagged pretrained name such as ``resnet50.a1_in1k`` (untagged in files before late 2022), with
  ``img_size``, ``top1``, ``top5``, ``param_count`` (may carry thousands separators), ``crop_pct``,
  ``interpolation``. A model evaluated at several sizes has several rows (file sorted by top-1).
- benchmark, ``benchmark-infer-<precision>-<layout>-pt<torch>-<cuda or cpu>-<gpu>.csv``: one row per
  (bare architecture, ``infer_img_size``) with ``infer_samples_per_sec``, ``infer_batch_size``,
  ``infer_step_time``, ``infer_gmacs``, ``infer_macts``, ``param_count``.

Rows are joined on the architecture (the tagged name up to its first dot) and the image size.

**Cost per image** = ``1000 / infer_samples_per_sec`` milliseconds: derived from throughput at the
benchmark's own batch size (``infer_batch_size``, typically 256-1024 on GPUs, 1 for the CPU
files), precision and memory layout, so it is an amortised per-image cost, not a batch-1 latency.
The default benchmark is the RTX 3090 AMP channels-last file of PyTorch 1.12 (timm commit
c865028c, July 2022) that the model-cascade literature used; a timm checkout without
``historical/`` falls back to the newest RTX 3090 AMP channels-last file in ``results/``.

Pure pandas: no torch, no timm.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ttamer.errors import FieldError

DEFAULT_ACCURACY_FILE = "results/results-imagenet.csv"

#: The default benchmark: the first of these that exists under the tables folder.
DEFAULT_BENCHMARK_FILES: tuple[str, ...] = (
    "historical/benchmark-infer-amp-nhwc-pt112-cu113-rtx3090@c865028c.csv",
    "results/benchmark-infer-amp-nhwc-pt112-cu113-rtx3090.csv",
    "results/benchmark-infer-amp-nhwc-pt240-cu124-rtx3090.csv",
    "results/benchmark-infer-amp-nhwc-pt210-cu121-rtx3090.csv",
    "results/benchmark-infer-amp-nhwc-pt113-cu117-rtx3090.csv",
)

ACCURACY_COLUMNS = ("model", "img_size", "top1", "top5")
BENCHMARK_COLUMNS = ("model", "infer_img_size", "infer_samples_per_sec", "infer_batch_size")


def architecture(model: str) -> str:
    """The bare architecture of a (possibly tagged) timm model name: ``resnet50.a1_in1k`` ->
    ``resnet50``."""
    return model.split(".", 1)[0]


def resolve_table(root: str | Path, name: str | None, kind: str = "benchmark_file") -> Path:
    """The table file ``name`` (absolute, relative to ``root``, or a bare file name found in
    ``root/results`` or ``root/historical``); ``None`` (benchmark only): the first default that
    exists. ``kind`` names the config field in errors."""
    base = Path(root).expanduser()
    if name is None or str(name).strip().lower() in ("", "none", "null", "auto", "default"):
        if kind != "benchmark_file":
            name = DEFAULT_ACCURACY_FILE
        else:
            for candidate in DEFAULT_BENCHMARK_FILES:
                if (base / candidate).is_file():
                    return base / candidate
            raise FieldError(
                kind,
                f"none of the default benchmark tables exists under {base} "
                f"(looked for {DEFAULT_BENCHMARK_FILES})",
            )
    p = Path(str(name)).expanduser()
    candidates = [p] if p.is_absolute() else [base / p, base / "results" / p, base / "historical" / p]
    for c in candidates:
        if c.is_file():
            return c
    raise FieldError(kind, f"table {name!r} not found (looked at {[str(c) for c in candidates]})")


def _read_csv(path: Path, required: tuple[str, ...], kind: str) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, thousands=",")
    except (OSError, ValueError) as exc:
        raise FieldError(kind, f"{path} is not a readable CSV table ({exc})") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise FieldError(kind, f"{path} lacks the column(s) {missing}; has {list(df.columns)}")
    return df


def read_accuracy(path: str | Path) -> pd.DataFrame:
    """An accuracy table: the file's columns plus ``arch`` (architecture of ``model``)."""
    df = _read_csv(Path(path), ACCURACY_COLUMNS, "accuracy_file")
    df["model"] = df["model"].astype(str)
    df["arch"] = df["model"].map(architecture)
    df["img_size"] = df["img_size"].astype(np.int64)
    return df


def read_benchmark(path: str | Path) -> pd.DataFrame:
    """A benchmark table: rows with a positive finite throughput, plus ``ms_per_image`` =
    1000 / ``infer_samples_per_sec`` (throughput-derived, at the file's batch size)."""
    df = _read_csv(Path(path), BENCHMARK_COLUMNS, "benchmark_file")
    df["model"] = df["model"].astype(str)
    rate = pd.to_numeric(df["infer_samples_per_sec"], errors="coerce")
    df = df[np.isfinite(rate) & (rate > 0)].copy()
    df["infer_img_size"] = df["infer_img_size"].astype(np.int64)
    df["infer_batch_size"] = df["infer_batch_size"].astype(np.int64)
    df["ms_per_image"] = 1000.0 / df["infer_samples_per_sec"].astype(np.float64)
    return df.reset_index(drop=True)


@dataclass(frozen=True)
class ModelEntry:
    """One model in both tables: accuracy at ``img_size`` and the architecture's throughput there."""

    model: str
    arch: str
    img_size: int
    top1: float
    top5: float
    param_count: float
    samples_per_sec: float
    batch_size: int
    ms_per_image: float


@dataclass(frozen=True)
class TimmTables:
    """An accuracy table and a benchmark table, with the files they came from."""

    accuracy: pd.DataFrame
    benchmark: pd.DataFrame
    accuracy_file: Path | None
    benchmark_file: Path

    @classmethod
    def load(
        cls,
        root: str | Path,
        accuracy_file: str | None = None,
        benchmark_file: str | None = None,
        require_accuracy: bool = True,
    ) -> TimmTables:
        """Read both tables under ``root`` (see :func:`resolve_table` for the names). With
        ``require_accuracy=False`` a missing or unreadable accuracy table leaves an empty one
        (costs only)."""
        bench = resolve_table(root, benchmark_file, "benchmark_file")
        benchmark = read_benchmark(bench)
        acc: Path | None = None
        try:
            found = resolve_table(root, accuracy_file, "accuracy_file")
            accuracy, acc = read_accuracy(found), found
        except FieldError:
            if require_accuracy:
                raise
            acc, accuracy = None, pd.DataFrame(columns=[*ACCURACY_COLUMNS, "arch"])
        return cls(accuracy, benchmark, acc, bench)

    @property
    def benchmark_label(self) -> str:
        """The benchmark file's name, as cost units and reports quote it."""
        return self.benchmark_file.name

    def joined(self) -> pd.DataFrame:
        """Every accuracy row whose architecture and image size the benchmark has: the accuracy
        columns, ``arch``, ``infer_samples_per_sec``, ``infer_batch_size``, ``ms_per_image``."""
        bench = self.benchmark[
            ["model", "infer_img_size", "infer_samples_per_sec", "infer_batch_size", "ms_per_image"]
        ]
        bench = bench.rename(columns={"model": "arch", "infer_img_size": "img_size"})
        return self.accuracy.merge(bench, on=["arch", "img_size"], how="inner")

    def accuracy_rows(self, model: str) -> pd.DataFrame:
        """The accuracy rows of ``model`` (exact name; an untagged name also matches its only
        tagged variant when the file has exactly one)."""
        rows = self.accuracy[self.accuracy["model"] == model]
        if rows.empty and "." not in model:
            tagged = self.accuracy[self.accuracy["arch"] == model]
            if tagged["model"].nunique() == 1:
                rows = tagged
        if rows.empty:
            near = sorted(self.accuracy.loc[self.accuracy["arch"] == architecture(model), "model"].unique())
            hint = f"; that architecture has {near[:10]}" if near else ""
            raise FieldError(
                "models", f"model {model!r} is not in the accuracy table {self.accuracy_file}{hint}"
            )
        return rows

    def throughput(self, model: str, img_size: int) -> pd.Series:
        """The benchmark row of ``model``'s architecture at ``img_size``."""
        arch = architecture(model)
        rows = self.benchmark[self.benchmark["model"] == arch]
        if rows.empty:
            raise FieldError(
                "models",
                f"architecture {arch!r} (of model {model!r}) is not in the benchmark table "
                f"{self.benchmark_file}",
            )
        at = rows[rows["infer_img_size"] == int(img_size)]
        if at.empty:
            sizes = sorted(int(s) for s in rows["infer_img_size"])
            raise FieldError(
                "models",
                f"architecture {arch!r} (of model {model!r}) is benchmarked at image size(s) {sizes} in "
                f"{self.benchmark_file}, not at {int(img_size)}",
            )
        return at.iloc[0]

    def ms_per_image(self, model: str, img_size: int) -> float:
        """Throughput-derived milliseconds per image of ``model``'s architecture at ``img_size``."""
        return float(self.throughput(model, img_size)["ms_per_image"])

    def entry(self, model: str, img_size: int | None = None) -> ModelEntry:
        """``model``'s accuracy at ``img_size`` joined to its architecture's throughput there.

        ``img_size=None``: the accuracy row evaluated at a size the benchmark has; among several,
        the one listed first (the files are sorted by top-1)."""
        rows = self.accuracy_rows(model)
        if img_size is not None:
            at = rows[rows["img_size"] == int(img_size)]
            if at.empty:
                raise FieldError(
                    "models",
                    f"model {model!r} is evaluated at image size(s) {sorted(rows['img_size'].tolist())} in "
                    f"{self.accuracy_file}, not at {int(img_size)}",
                )
            rows = at
        else:
            arch = architecture(model)
            sizes = set(self.benchmark.loc[self.benchmark["model"] == arch, "infer_img_size"].tolist())
            benchmarked = rows[rows["img_size"].isin(sizes)]
            rows = benchmarked if not benchmarked.empty else rows
        row = rows.iloc[0]
        bench = self.throughput(str(row["model"]), int(row["img_size"]))
        params = row["param_count"] if "param_count" in row.index else np.nan
        return ModelEntry(
            model=str(row["model"]),
            arch=str(row["arch"]),
            img_size=int(row["img_size"]),
            top1=float(row["top1"]),
            top5=float(row["top5"]),
            param_count=float(params),
            samples_per_sec=float(bench["infer_samples_per_sec"]),
            batch_size=int(bench["infer_batch_size"]),
            ms_per_image=float(bench["ms_per_image"]),
        )

    def entries(
        self, models: list[str] | tuple[str, ...], img_sizes: list[int | None] | None = None
    ) -> pd.DataFrame:
        """One row per model (:meth:`entry`), in the given order, with ``cumulative_ms`` (the
        cost of running the models one after another, as a cascade does)."""
        sizes = img_sizes if img_sizes is not None else [None] * len(models)
        if len(sizes) != len(models):
            raise FieldError("img_sizes", f"has {len(sizes)} entries for {len(models)} models")
        df = pd.DataFrame([asdict(self.entry(m, s)) for m, s in zip(models, sizes, strict=True)])
        df["cumulative_ms"] = df["ms_per_image"].cumsum()
        return df
