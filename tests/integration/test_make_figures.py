"""``scripts/make_figures.py`` end to end, and the library behind it (``ttamer.evaluation.report``,
``ttamer.plots.report_figures``): every figure and the headline table regenerated from saved
tables only (README: experiments), on a small results tree built here; no torch, no model, no
solver."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from ttamer.evaluation.calibration import calibration_table
from ttamer.evaluation.pareto import summarise
from ttamer.evaluation.report import (
    build_report,
    fmt_estimate,
    load_results,
    replace_marked_section,
    report_files,
)
from ttamer.evaluation.results import ResultsError, stage_names_from_benchmark
from ttamer.fileio import atomic_write_bytes
from ttamer.plots.report_figures import figure_jobs
from ttamer.studies.synthetic_study import SyntheticStudyConfig, run_synthetic_study

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_figures.py"
PNG = b"\x89PNG\r\n\x1a\n"
UNIT = "ms per request (batch 1, cpu)"
STAGE_COST = np.array([0.2, 0.3, 0.5])  # incremental; static stage k costs the cumulative sum
STAGE_ACC = np.array([0.70, 0.80, 0.85])
POLICIES = ["recall", "max_softmax", "static", "oracle"]

# runs main() and then reports whether anything imported torch (or transformers, timm)
RUNNER = (
    "import runpy, sys; sys.argv = ['make_figures.py', *sys.argv[1:]]\n"
    "try:\n"
    f"    runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n"
    "except SystemExit as e:\n"
    "    code = e.code or 0\n"
    "else:\n"
    "    code = 0\n"
    "heavy = sorted(m for m in ('torch', 'transformers', 'timm') if m in sys.modules)\n"
    "print('HEAVY:' + ','.join(heavy), file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def _run(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", RUNNER, *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _points(seed: int = 0, n_splits: int = 3) -> pd.DataFrame:
    """A tidy points table like ``ttamer sweep`` writes: 3 stages, 4 policies; max_softmax
    never comes within 1 point of the last stage; recall reaches it at 0.6 of the cost."""
    rng = np.random.default_rng(seed)
    rows: list[tuple[Any, ...]] = []
    full = float(STAGE_COST.sum())
    for split in range(n_splits):
        acc = STAGE_ACC + rng.normal(0, 0.003, 3)
        for k in range(3):
            cost = float(STAGE_COST[: k + 1].sum())
            rows.append(("static", k + 1, "stage", acc[k], cost, split))
        for knob, (c, a) in enumerate(
            [(0.2, acc[0]), (0.35, acc[1] - 0.01), (0.6, acc[2] + 0.002), (1.0, acc[2])]
        ):
            rows.append(("recall", 0.1 * (knob + 1), "lam", a, c * full, split))
        for knob, (c, a) in enumerate([(0.2, acc[0]), (0.5, 0.80), (0.9, 0.82)]):
            rows.append(("max_softmax", 0.5 + 0.1 * knob, "t", a, c * full, split))
        rows.append(("oracle", np.nan, "", 0.95, 0.3 * full, split))
    df = pd.DataFrame(rows, columns=["policy", "knob", "knob_name", "accuracy", "mean_cost", "split"])
    df["error_rate"] = 1.0 - df["accuracy"]
    df["normalized_cost"] = df["mean_cost"] / full
    df["n_test"] = 50
    df["cost_unit"] = UNIT
    df["predicted_accuracy"] = np.where(df["policy"] == "recall", df["accuracy"] + 0.01, np.nan)
    return df


def _write_csv(path: Path, table: pd.DataFrame) -> None:
    atomic_write_bytes(path, table.to_csv(index=False).encode())


def _hydra(folder: Path, overrides: list[str], workload: dict[str, str]) -> None:
    hydra = folder / ".hydra"
    hydra.mkdir(parents=True)
    lines = ["workload:", *(f"  {k}: {v}" for k, v in workload.items()), "seed: 0"]
    (hydra / "config.yaml").write_text("\n".join(lines) + "\n")
    (hydra / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    run_dir = f"hydra.run.dir=results/{folder.name}"
    (hydra / "hydra.yaml").write_text(
        "hydra:\n  overrides:\n    hydra:\n"
        f"    - {run_dir}\n    - hydra.mode=RUN\n    task:\n" + "".join(f"    - {o}\n" for o in overrides)
    )


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """results/{toy (points, summary, config, latency table), toy2 (points only), syn}."""
    root = tmp_path_factory.mktemp("results")
    toy = root / "toy"
    toy.mkdir()
    points = _points()
    _write_csv(toy / "toy_points.csv", points)
    _write_csv(toy / "toy_summary.csv", summarise(points, "last_stage"))
    _write_csv(toy / "toy_calibration.csv", calibration_table(points))
    _hydra(toy, ["workload=toy", "logger=none"], {"name": "toy", "reference": "last_stage"})
    bench = pd.DataFrame(
        {
            "stage": [1, 2, 3, 1, 2, 3],
            "stage_name": ["exitA", "exitB", "exitC"] * 2,
            "batch_size": [1, 1, 1, 8, 8, 8],
            "median_ms": [0.2, 0.3, 0.5, 1.0, 1.5, 2.0],
            "cpu_count": 2,
            "machine": "x86_64",
            "device": "cpu",
            "torch": "2.0",
            "torch_threads": 2,
        }
    )
    _write_csv(toy / "benchmark-infer-fp32-pt2.0-cpu-toy.csv", bench)
    toy2 = root / "toy2"
    toy2.mkdir()
    _write_csv(toy2 / "toy2_points.csv", points)  # no summary, no config: recomputed, reference assumed
    syn = root / "syn"
    syn.mkdir()
    cfg = SyntheticStudyConfig(
        chains_per_family=2, n_stages=3, n_states=3, n_alphas=3, n_lam_grid=6, progress=False
    )
    result = run_synthetic_study(cfg)
    for key in ("lower_bound", "ratios", "pareto"):
        _write_csv(syn / f"synthetic_{key}.csv", getattr(result, key))
    (root / "README.md").write_text(
        "# r\n\nbefore\n<!-- BEGIN make_figures -->\nSTALE TABLE\n<!-- END make_figures -->\nafter\n"
    )
    return root


@pytest.fixture(scope="module")
def made(tree: Path) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tree / "figures"
    proc = _run("--results", tree, "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, proc


FIGURES = [
    "fig_toy.png",
    "fig_toy_calibration.png",
    "fig_toy2.png",
    "fig_syn_lower_bound.png",
    "fig_syn_ratio_distribution.png",
    "fig_syn_pareto.png",
]


def test_every_figure_written_without_torch(made: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, proc = made
    for name in FIGURES:
        data = (out / name).read_bytes()
        assert data[:8] == PNG and len(data) > 1000, name
    heavy = [line for line in proc.stderr.splitlines() if line.startswith("HEAVY:")]
    assert heavy == ["HEAVY:"], f"imported a model library: {heavy}"
    progress = [line for line in proc.stdout.splitlines() if ".png" in line]
    assert len(progress) == len(FIGURES)  # one progress line per figure
    assert not list(out.glob(".*.tmp")), "atomic writes left temporary files"
    assert sorted(p.name for p in out.glob("*.png")) == sorted(FIGURES)


def test_summary_table_rows_and_values(
    tree: Path, made: tuple[Path, subprocess.CompletedProcess[str]]
) -> None:
    out, _ = made
    table = pd.read_csv(out / "summary.csv")
    expected = {(w, p) for w in ("toy", "toy2") for p in ["recall", "max_softmax", "static", "oracle"]}
    assert set(zip(table["workload"], table["policy"], strict=True)) == expected
    assert len(table) == len(expected)
    saved = pd.read_csv(tree / "toy" / "toy_summary.csv").set_index(["policy", "metric"])
    toy = table[table["workload"] == "toy"].set_index("policy")
    assert toy.loc["recall", "saving_d1_mean"] == pytest.approx(
        saved.loc[("recall", "saving_at_delta_1"), "mean"]
    )
    assert toy.loc["recall", "area_mean"] == pytest.approx(saved.loc[("recall", "area"), "mean"])
    assert toy.loc["recall", "calibration_gap_mean"] == pytest.approx(0.01)
    assert np.isnan(toy.loc["max_softmax", "calibration_gap_mean"])  # no fitted model
    assert toy.loc["max_softmax", "saving_d1_n_unreached"] == 3  # never within 1 point
    assert toy.loc["max_softmax", "saving_d1_n_reached"] == 0
    assert (table["reference"] == "last_stage").all()
    assert str(toy.loc["recall", "costs"]).startswith("measured here")
    # the recomputed summary (toy2 has none saved) equals the saved one
    toy2 = table[table["workload"] == "toy2"].set_index("policy")
    cols = [c for c in table.columns if c.startswith(("saving_", "area_"))]
    pd.testing.assert_frame_equal(toy[cols], toy2[cols])
    assert toy2["summary_source"].str.startswith("recomputed").all()
    syn = pd.read_csv(out / "summary_synthetic.csv")
    assert set(syn["folder"]) == {"syn"} and (syn["n_chains"] == 2).all()
    assert (syn["no_recall_over_recall_median"] >= 1 - 1e-9).all()


def test_markdown_and_readme(tree: Path, made: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, _ = made
    md = (out / "summary.md").read_text()
    assert "| `toy` | last stage (" in md
    assert "— (3/3 unreached)" in md  # max_softmax at δ = 1
    assert "`ttamer-run workload=toy logger=none hydra.run.dir=results/toy`" in md
    assert "not recorded" in md  # toy2: no .hydra/config.yaml
    readme = (tree / "README.md").read_text()
    assert readme.startswith("# r\n\nbefore\n<!-- BEGIN make_figures -->\n") and readme.endswith(
        "<!-- END make_figures -->\nafter\n"
    )
    assert "STALE TABLE" not in readme and "| `toy2` |" in readme


def test_stage_names_from_benchmark() -> None:
    bench = pd.DataFrame(
        {"stage": [2, 1, 2, 1], "stage_name": ["b", "a", "b", "a"], "batch_size": [1, 1, 8, 8]}
    )
    assert stage_names_from_benchmark(bench) == ["a", "b"]
    assert stage_names_from_benchmark(bench.drop(columns="stage_name")) is None
    assert stage_names_from_benchmark(pd.DataFrame({"stage": [1, 3], "stage_name": ["a", "c"]})) is None


def test_format_estimate() -> None:
    fmt = fmt_estimate
    assert fmt(0.6523, 0.0219, 10, 0) == "0.652 ± 0.022"
    assert fmt(0.677, 0.009, 8, 2) == "0.677 ± 0.009 (2/10 unreached)"
    assert fmt(float("nan"), float("nan"), 0, 10) == "— (10/10 unreached)"
    assert fmt(0.448, float("nan"), 1, 9) == "0.448 (9/10 unreached)"


def _copy_tree(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("figures"))
    return dst


@pytest.mark.parametrize(
    "breakage, message",
    [
        ("missing_root", "does not exist"),
        ("points_column", "missing column(s) accuracy"),
        ("synthetic_table", "without synthetic_pareto.csv"),
        ("hydra_only", "no *_points.csv or synthetic_*.csv"),
        ("bad_reference", "workload.reference"),
    ],
)
def test_bad_results_exit_2(tree: Path, tmp_path: Path, breakage: str, message: str) -> None:
    root = tmp_path / "missing" if breakage == "missing_root" else _copy_tree(tree, tmp_path / "results")
    if breakage == "points_column":
        p = root / "toy2" / "toy2_points.csv"
        pd.read_csv(p).drop(columns="accuracy").to_csv(p, index=False)
    elif breakage == "synthetic_table":
        (root / "syn" / "synthetic_pareto.csv").unlink()
    elif breakage == "hydra_only":
        _hydra(root / "empty", ["workload=toy"], {"name": "toy"})
    elif breakage == "bad_reference":
        cfg = root / "toy" / ".hydra" / "config.yaml"
        cfg.write_text(cfg.read_text().replace("last_stage", "median_stage"))
    out = tmp_path / "figs"
    proc = _run("--results", root, "--out", out)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if not line.startswith("HEAVY:")]
    assert len(errors) == 1 and errors[0].startswith("error: ") and message in errors[0], proc.stderr
    assert not out.exists(), "nothing may be written when a folder is malformed"


# ---------------------------------------------------------------------------------- library


def test_library_writes_what_the_script_wrote(
    tree: Path, made: tuple[Path, subprocess.CompletedProcess[str]]
) -> None:
    out, _ = made
    traces, synthetic = load_results(tree, skip=out)
    assert [t.key for t in traces] == ["toy", "toy2"] and [s.key for s in synthetic] == ["syn"]
    files = report_files(build_report(traces, synthetic), tree)
    assert list(files) == ["summary.csv", "summary_synthetic.csv", "summary.md"]
    for name, text in files.items():
        assert (out / name).read_text() == text, name


def test_figure_jobs_names_and_sources(tree: Path) -> None:
    traces, synthetic = load_results(tree, skip=tree / "figures")
    jobs = figure_jobs(traces, synthetic, tree / "figs")
    assert [j.path.name for j in jobs] == FIGURES
    assert {j.path.parent for j in jobs} == {tree / "figs"}
    assert [j.source.relative_to(tree).as_posix() for j in jobs] == [
        "toy/toy_points.csv",
        "toy/toy_calibration.csv",
        "toy2/toy2_points.csv",
        "syn/synthetic_lower_bound.csv",
        "syn/synthetic_ratios.csv",
        "syn/synthetic_pareto.csv",
    ]


def test_several_studies_in_one_folder_and_clashing_names(tmp_path: Path) -> None:
    root = tmp_path / "results"
    points = _points(n_splits=2)
    for rel in ("a/x_points.csv", "a/y_points.csv", "p_q/p_points.csv"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        _write_csv(root / rel, points)
    traces, _ = load_results(root)
    assert [t.key for t in traces] == ["a_x", "a_y", "p_q"]  # folder key, plus the tag when several
    (root / "p" / "q").mkdir(parents=True)
    _write_csv(root / "p" / "q" / "q_points.csv", points)  # folder key p_q again
    traces, synthetic = load_results(root)
    with pytest.raises(ResultsError, match=r"would both write fig_p_q\.png"):
        figure_jobs(traces, synthetic, tmp_path / "figs")


def test_replace_marked_section() -> None:
    text = "top\n<!-- BEGIN make_figures -->\nold\n<!-- END make_figures -->\nend\n"
    new = replace_marked_section(text, "| a |\n")
    assert new == "top\n<!-- BEGIN make_figures -->\n| a |\n<!-- END make_figures -->\nend\n"
    assert replace_marked_section("no markers\n", "x") is None
    assert replace_marked_section("<!-- END make_figures -->\n<!-- BEGIN make_figures -->\n", "x") is None
