"""The results files (``ttamer.evaluation.results``): names, atomic writing at full or 12-digit
precision, and finding every study of a results tree; checked against hand-written names,
Python's own float formatting and a tree built here."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ttamer.evaluation.results import (
    ResultsError,
    figure_name,
    find_results,
    find_studies,
    producing_command,
    read_table,
    table_name,
    table_path,
    write_study_table,
    write_table,
)

VALUES = [0.1 + 0.2, 1.0 / 3.0, 2.0 / 3.0 * 1e-17, 123456.78901234567, math.pi * 1e9, 0.5, -7.0]


def _float_cells(path: Path) -> list[str]:
    """The ``x`` column of a CSV written from :data:`VALUES`, as text."""
    lines = path.read_text().splitlines()
    assert lines[0] == "name,x"
    return [line.split(",")[1] for line in lines[1:]]


def _values_table() -> pd.DataFrame:
    return pd.DataFrame({"name": [f"v{i}" for i in range(len(VALUES))], "x": VALUES})


def test_names() -> None:
    assert table_name("digits", "points") == "digits_points.csv"
    assert table_name("synthetic", "lower_bound") == "synthetic_lower_bound.csv"
    assert table_path(Path("r/x"), "sst2_minilm_skip", "usage") == Path("r/x/sst2_minilm_skip_usage.csv")
    assert figure_name("digits") == "fig_digits.png"
    assert figure_name("digits", "calibration") == "fig_digits_calibration.png"
    assert figure_name(None, "ratio_distribution") == "fig_ratio_distribution.png"


def test_full_precision_round_trips_every_float(tmp_path: Path) -> None:
    path = write_table(_values_table(), tmp_path / "sub" / "t.csv")
    assert path == tmp_path / "sub" / "t.csv"
    assert [float(c) for c in _float_cells(path)] == VALUES  # exactly, bit for bit
    assert not list(path.parent.glob(".*.tmp")), "atomic write left a temporary file"


def test_compact_writes_12_significant_digits(tmp_path: Path) -> None:
    path = write_table(_values_table(), tmp_path / "t.csv", compact=True)
    assert _float_cells(path) == [format(v, ".12g") for v in VALUES]
    assert float(_float_cells(path)[0]) != VALUES[0]  # 0.30000000000000004 is rounded


def test_study_tables_points_compact_others_full(tmp_path: Path) -> None:
    points = write_study_table(tmp_path, "toy", "points", _values_table())
    summary = write_study_table(tmp_path, "toy", "summary", _values_table())
    assert (points.name, summary.name) == ("toy_points.csv", "toy_summary.csv")
    assert _float_cells(points) == [format(v, ".12g") for v in VALUES]
    assert [float(c) for c in _float_cells(summary)] == VALUES


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("a\n1\n")


def test_find_results_tree(tmp_path: Path) -> None:
    root = tmp_path / "results"
    for name in ("x_points.csv", "x_summary.csv", "x_agreement_points.csv", "x_agreement_usage.csv"):
        _touch(root / "a" / name)
    _touch(root / "a" / "benchmark-infer-fp32-pt2.0-cpu-x.csv")
    _touch(root / "a" / "notes.csv")
    for name in ("synthetic_ratios.csv", "synthetic_pareto.csv"):  # lower_bound missing
        _touch(root / "b" / "syn" / name)
    _touch(root / "c" / ".hydra" / "config.yaml")
    _touch(root / ".hidden" / "h_points.csv")
    _touch(root / "wandb" / "w_points.csv")
    _touch(root / "figures" / "f_points.csv")
    _touch(root / "d" / "nothing.txt")

    found = find_results(root, skip=root / "figures")
    assert [f.folder for f in found] == [root / "a", root / "b" / "syn", root / "c"]
    a, syn, c = found
    # trace studies in file-name order: "x_agreement_points.csv" < "x_points.csv"
    assert [s.tag for s in a.traces] == ["x_agreement", "x"]
    assert dict(a.traces[0].tables) == {
        "points": root / "a" / "x_agreement_points.csv",
        "usage": root / "a" / "x_agreement_usage.csv",
    }
    assert set(a.traces[1].tables) == {"points", "summary"}
    assert a.latency_tables == (root / "a" / "benchmark-infer-fp32-pt2.0-cpu-x.csv",)
    assert a.synthetic is None and not a.has_config
    assert syn.traces == () and syn.synthetic is not None
    assert syn.synthetic.tag == "synthetic" and set(syn.synthetic.tables) == {"ratios", "pareto"}
    assert c.studies == () and c.has_config
    assert [(s.folder.name, s.tag) for s in find_studies(root, skip=root / "figures")] == [
        ("a", "x_agreement"),
        ("a", "x"),
        ("syn", "synthetic"),
    ]
    assert "figures" in {s.folder.name for s in find_studies(root)}  # only skipped when asked


def test_read_table_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    pd.DataFrame({"a": [1.0], "b": [2.0]}).to_csv(path, index=False)
    assert read_table(path, ("a",))["b"].tolist() == [2.0]
    with pytest.raises(ResultsError, match=r"t\.csv: missing column\(s\) c, d"):
        read_table(path, ("a", "c", "d"))
    pd.DataFrame({"a": np.array([], dtype=float)}).to_csv(path, index=False)
    with pytest.raises(ResultsError, match="no rows"):
        read_table(path, ("a",))
    with pytest.raises(ResultsError, match="not a readable CSV"):
        read_table(tmp_path / "absent.csv", ("a",))


def test_producing_command(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    assert producing_command(folder) is None
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("- workload=digits\n- seed=1\n")
    assert producing_command(folder) == f"ttamer-run workload=digits seed=1 hydra.run.dir={folder}"
    (folder / ".hydra" / "hydra.yaml").write_text(
        "hydra:\n  overrides:\n    hydra:\n    - hydra.mode=RUN\n    - hydra.run.dir=out/x\n"
        "    task:\n    - experiment=fig4_vision_digits\n    - 'workload.note=a b'\n"
    )
    assert (
        producing_command(folder)
        == "ttamer-run experiment=fig4_vision_digits 'workload.note=a b' hydra.run.dir=out/x"
    )
