"""The results files of a run folder, written and found in one place (README: experiments).

A trace study tagged ``<tag>`` writes its tables as ``<tag>_<kind>.csv`` in the run folder:

=============== ===================================================================
``points``      one row per policy, knob value and split (12 significant digits)
``summary``     one row per policy and metric, aggregated over the splits
``hulls``       the upper hull vertices of every policy and split
``calibration`` predicted against realised accuracy (policies with a fitted model)
``usage``       graph studies: how often each stage ran, answered, was skipped
``orders``      graph studies with chain orders: the order chosen on each fit split
=============== ===================================================================

The synthetic study writes ``synthetic_<kind>.csv`` (kinds ``lower_bound``, ``ratios``,
``pareto``): the same scheme with the tag ``synthetic``. Figures are ``fig_<tag>[_<kind>].png``;
a measured latency table is ``benchmark-infer-*.csv`` (timm's naming). Every table is written
atomically; every float at full precision except the points tables.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml

from ttamer.fileio import atomic_write_bytes

TRACE_TABLE_KINDS = ("points", "summary", "hulls", "calibration", "usage", "orders")
"""Tables of a trace study, ``<tag>_<kind>.csv``, in the order a reader lists them."""

COMPACT_TABLE_KINDS = ("points",)
"""Tables written with 12 significant digits (large; far below any reported figure's precision)."""

SYNTHETIC_TAG = "synthetic"
SYNTHETIC_TABLE_KINDS = ("lower_bound", "ratios", "pareto")
"""Tables of the synthetic study, ``synthetic_<kind>.csv``."""

USAGE_COLUMNS = (
    "policy",
    "knob",
    "split",
    "stage",
    "stage_name",
    "run_fraction",
    "returned_fraction",
    "skipped_fraction",
)
"""Columns of a graph study's ``usage`` table (fractions of the test requests, per stage)."""

ORDER_COLUMNS = ("split", "order", "fit_area", "chosen")
"""Columns of a graph study's ``orders`` table."""

LATENCY_TABLE_GLOB = "benchmark-infer-*.csv"
"""A measured latency table (``ttamer.workloads.latency.benchmark_filename`` names it)."""

HYDRA_FOLDER = ".hydra"
"""Hydra's record of a run: ``config.yaml`` (composed config), ``hydra.yaml``, ``overrides.yaml``."""

COMPACT_FLOAT_FORMAT = "%.12g"


class ResultsError(Exception):
    """A missing or malformed results folder; the message is one line."""


# ---------------------------------------------------------------------------------- names


def table_name(tag: str, kind: str) -> str:
    """``<tag>_<kind>.csv``, e.g. ``digits_points.csv`` or ``synthetic_pareto.csv``."""
    return f"{tag}_{kind}.csv"


def table_path(folder: str | os.PathLike[str], tag: str, kind: str) -> Path:
    """The path of the ``kind`` table of the study ``tag`` in ``folder``."""
    return Path(folder) / table_name(tag, kind)


def figure_name(tag: str | None, kind: str | None = None) -> str:
    """``fig_<tag>.png``, ``fig_<tag>_<kind>.png`` or, without a tag, ``fig_<kind>.png``."""
    return "_".join(["fig", *(p for p in (tag, kind) if p is not None)]) + ".png"


def figure_path(folder: str | os.PathLike[str], tag: str | None, kind: str | None = None) -> Path:
    """The path of a figure in ``folder`` (:func:`figure_name`)."""
    return Path(folder) / figure_name(tag, kind)


def is_compact(kind: str) -> bool:
    """Whether the ``kind`` table is written with 12 significant digits."""
    return kind in COMPACT_TABLE_KINDS


# ---------------------------------------------------------------------------------- writing


def table_bytes(table: pd.DataFrame, compact: bool = False) -> bytes:
    """``table`` as CSV bytes without the index: floats at full precision (shortest repr that
    round-trips), or to 12 significant digits with ``compact``."""
    return table.to_csv(index=False, float_format=COMPACT_FLOAT_FORMAT if compact else None).encode()


def write_table(table: pd.DataFrame, path: str | os.PathLike[str], compact: bool = False) -> Path:
    """Write ``table`` as CSV atomically (:func:`table_bytes`); returns the path."""
    atomic_write_bytes(path, table_bytes(table, compact))
    return Path(path)


def write_study_table(folder: str | os.PathLike[str], tag: str, kind: str, table: pd.DataFrame) -> Path:
    """Write the ``kind`` table of the study ``tag`` to ``<folder>/<tag>_<kind>.csv``, compact
    when the kind is (:data:`COMPACT_TABLE_KINDS`); returns the path."""
    return write_table(table, table_path(folder, tag, kind), compact=is_compact(kind))


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) atomically; returns the path."""
    atomic_write_bytes(path, text.encode())
    return Path(path)


# ---------------------------------------------------------------------------------- finding


@dataclass(frozen=True)
class StudyFiles:
    """One study's tables in one folder: ``tables`` maps each kind present to its path."""

    folder: Path
    tag: str
    study: Literal["trace", "synthetic"]
    tables: Mapping[str, Path]


@dataclass(frozen=True)
class ResultsFolder:
    """A folder holding results: its studies (trace studies by points file name, then the
    synthetic study), its latency tables (sorted) and whether Hydra recorded the run."""

    folder: Path
    studies: tuple[StudyFiles, ...]
    latency_tables: tuple[Path, ...] = ()
    has_config: bool = False

    @property
    def traces(self) -> tuple[StudyFiles, ...]:
        return tuple(s for s in self.studies if s.study == "trace")

    @property
    def synthetic(self) -> StudyFiles | None:
        return next((s for s in self.studies if s.study == "synthetic"), None)


def _is_results_table(name: str) -> bool:
    return name.endswith("_points.csv") or re.fullmatch(rf"{SYNTHETIC_TAG}_.*\.csv", name) is not None


def results_folders(root: Path, skip: Path | None = None) -> list[Path]:
    """Every folder under ``root`` (itself included, in walk order with sorted names) holding a
    points table, a synthetic table or a Hydra config; hidden folders, ``wandb`` and ``skip``
    (an output folder) are not entered."""
    found = []
    skip_resolved = skip.resolve() if skip is not None else None
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(
            n
            for n in dirnames
            if not n.startswith(".") and n != "wandb" and (here / n).resolve() != skip_resolved
        )
        if any(_is_results_table(f) for f in filenames) or (here / HYDRA_FOLDER / "config.yaml").is_file():
            found.append(here)
    return found


def _present(folder: Path, tag: str, kinds: Sequence[str]) -> dict[str, Path]:
    return {k: p for k in kinds if (p := table_path(folder, tag, k)).is_file()}


def read_results_folder(folder: Path) -> ResultsFolder:
    """The studies of one folder: a trace study per ``<tag>_points.csv`` (sorted by file name)
    with its other tables that exist, and the synthetic study if any ``synthetic_*.csv`` exists
    (its ``tables``: those of :data:`SYNTHETIC_TABLE_KINDS` that exist)."""
    studies = []
    for points in sorted(folder.glob("*_points.csv")):
        tag = points.name[: -len("_points.csv")]
        studies.append(StudyFiles(folder, tag, "trace", _present(folder, tag, TRACE_TABLE_KINDS)))
    if any(folder.glob(f"{SYNTHETIC_TAG}_*.csv")):
        tables = _present(folder, SYNTHETIC_TAG, SYNTHETIC_TABLE_KINDS)
        studies.append(StudyFiles(folder, SYNTHETIC_TAG, "synthetic", tables))
    return ResultsFolder(
        folder=folder,
        studies=tuple(studies),
        latency_tables=tuple(sorted(folder.glob(LATENCY_TABLE_GLOB))),
        has_config=(folder / HYDRA_FOLDER / "config.yaml").is_file(),
    )


def find_results(root: Path, skip: Path | None = None) -> list[ResultsFolder]:
    """Every results folder under ``root`` (:func:`results_folders`), with its studies; a folder
    with a Hydra config and no table has no studies."""
    return [read_results_folder(f) for f in results_folders(root, skip)]


def find_studies(root: Path, skip: Path | None = None) -> list[StudyFiles]:
    """Every study under ``root``, folder by folder (:func:`find_results`)."""
    return [s for f in find_results(root, skip) for s in f.studies]


# ---------------------------------------------------------------------------------- reading


def display_path(path: Path) -> str:
    """``path`` relative to the current folder when inside it, else as given (for messages)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def read_table(path: Path, columns: Sequence[str]) -> pd.DataFrame:
    """A CSV with at least ``columns`` and one row, or :class:`ResultsError` naming the file."""
    try:
        table = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{display_path(path)}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ResultsError(f"{display_path(path)}: missing column(s) {', '.join(missing)}")
    if table.empty:
        raise ResultsError(f"{display_path(path)}: no rows")
    return table


def read_yaml(path: Path) -> dict[str, Any]:
    """A ``.yaml`` file as a dict (``{}`` if absent or empty); Hydra interpolations stay strings."""
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ResultsError(f"{display_path(path)}: not readable YAML ({str(exc).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ResultsError(f"{display_path(path)}: expected a mapping at the top level")
    return data


def run_config(folder: Path) -> dict[str, Any]:
    """The composed config Hydra saved for the run of ``folder`` (``{}`` if none)."""
    return read_yaml(folder / HYDRA_FOLDER / "config.yaml")


def producing_command(folder: Path) -> str | None:
    """The ``ttamer-run`` command line that produced ``folder``, from Hydra's saved overrides
    (``hydra.run.dir`` added when not recorded); ``None`` without them."""
    hydra = read_yaml(folder / HYDRA_FOLDER / "hydra.yaml").get("hydra", {})
    overrides = hydra.get("overrides", {}) if isinstance(hydra, dict) else {}
    task = overrides.get("task") if isinstance(overrides, dict) else None
    if task is None:
        saved = folder / HYDRA_FOLDER / "overrides.yaml"
        if not saved.is_file():
            return None
        try:
            task = yaml.safe_load(saved.read_text()) or []
        except (OSError, yaml.YAMLError) as exc:
            raise ResultsError(
                f"{display_path(saved)}: not readable YAML ({str(exc).splitlines()[0]})"
            ) from None
    extra = overrides.get("hydra") if isinstance(overrides, dict) else None
    hydra_args = [str(o) for o in extra or [] if not str(o).startswith("hydra.mode=")]
    if not any(a.startswith("hydra.run.dir=") for a in hydra_args):
        hydra_args.append(f"hydra.run.dir={display_path(folder)}")
    return " ".join(["ttamer-run", *(shlex.quote(str(o)) for o in [*task, *hydra_args])])


def stage_names_from_benchmark(bench: pd.DataFrame) -> list[str] | None:
    """Stage names, in stage order, from a latency table (``benchmark-infer-*.csv``) with
    columns ``stage`` (1-based) and ``stage_name``; ``None`` when it has no names or the stages
    are not exactly 1..n. Points tables carry only the stage number (the ``static`` knob)."""
    if not {"stage", "stage_name"} <= set(bench.columns):
        return None
    pairs = bench[["stage", "stage_name"]].dropna().drop_duplicates()
    stages = pd.to_numeric(pairs["stage"], errors="coerce")
    if stages.isna().any() or stages.duplicated().any():
        return None
    order = np.argsort(stages.to_numpy())
    if stages.to_numpy()[order].tolist() != list(range(1, len(pairs) + 1)):
        return None
    return [str(x) for x in pairs["stage_name"].to_numpy()[order]]
