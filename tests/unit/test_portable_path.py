"""``portable_path``: paths written to logs and result files without this machine's layout."""

from __future__ import annotations

import sys
from pathlib import Path

from ttamer.fileio import portable_path


def test_inside_the_base_relative_inside_python_prefixed_else_unchanged(tmp_path: Path) -> None:
    assert portable_path(tmp_path / "runs" / "a.csv", tmp_path) == "runs/a.csv"
    assert portable_path(tmp_path, tmp_path) == "."
    assert portable_path(Path(sys.prefix) / "bin" / "python3", tmp_path) == "<python>/bin/python3"
    source = Path(__file__).resolve().parents[2]
    assert portable_path(source / "conf", tmp_path) == "<source>/conf"
    elsewhere = "/somewhere/else/file.txt"
    assert portable_path(elsewhere, tmp_path) == elsewhere
    assert portable_path("relative/x", Path.cwd()) == "relative/x"
