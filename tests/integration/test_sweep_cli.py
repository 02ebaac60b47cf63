"""``score_policies`` and the trace commands of the command line (sweep, import-frugalml, import-csv)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ttamer.cli import main
from ttamer.errors import FieldError
from ttamer.evaluation.scoring import COLUMNS, ScoringConfig, score_policies
from ttamer.fitting.chain import FitConfig
from ttamer.policies.base import Decisions, ScoringContext
from ttamer.traces.csv_trace import export_csv
from ttamer.traces.trace import Trace, TraceError, load_trace, save_trace

EXPECTED_COLUMNS = [
    "policy",
    "knob",
    "knob_name",
    "accuracy",
    "error_rate",
    "mean_cost",
    "normalized_cost",
    "split",
    "n_test",
    "cost_unit",
    "predicted_accuracy",
    "selected",
    "target",
]


def _trace(n_samples: int = 400, n: int = 3, seed: int = 0, cost_unit: str = "ms") -> Trace:
    """Improving stages whose confidence says something about correctness."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n_samples)
    skill = np.linspace(0.6, 0.9, n)
    correct = rng.random((n_samples, n)) < skill
    pred = np.where(correct, labels[:, None], 1 - labels[:, None])
    conf = np.clip(0.5 + 0.3 * correct + 0.2 * rng.random((n_samples, n)) - 0.1, 0.5, 1.0)
    return Trace.build(labels, pred, conf, np.arange(1.0, n + 1), None, cost_unit)


class EveryStage:
    """A stand-in policy: stop at (and return) stage k, one knob value per stage."""

    name = "every_stage"
    knob_name = "stage"

    def decide(self, ctx: ScoringContext) -> Decisions:
        n, m = ctx.test.n_stages, ctx.test.n_samples
        stop = np.repeat(np.arange(n, dtype=np.int64)[:, None], m, axis=1)
        return Decisions(np.arange(1.0, n + 1), stop, stop)


class FitSize:
    """A stand-in policy whose knob is the number of fit samples it was given."""

    name = "fit_size"
    knob_name = "n_fit"

    def decide(self, ctx: ScoringContext) -> Decisions:
        stop = np.zeros((1, ctx.test.n_samples), dtype=np.int64)
        return Decisions(np.array([float(ctx.fit.n_samples)]), stop, stop)


# ---------------------------------------------------------------------------- score_policies


def test_sweep_with_fit_trace_scores_all_of_trace() -> None:
    fit, test = _trace(seed=1), _trace(n_samples=300, seed=2, cost_unit="ms")
    df = score_policies(test, ScoringConfig(policies=(EveryStage(), FitSize())), fit_trace=fit)
    assert list(df.columns) == EXPECTED_COLUMNS == list(COLUMNS)
    assert set(df["split"]) == {0}
    assert set(df["n_test"]) == {300}
    assert set(df["cost_unit"]) == {"ms"}
    every = df[df["policy"] == "every_stage"]
    np.testing.assert_allclose(every["accuracy"], test.correct.mean(axis=0))
    np.testing.assert_allclose(every["error_rate"], 1 - test.correct.mean(axis=0))
    np.testing.assert_allclose(every["mean_cost"], [1.0, 3.0, 6.0])
    np.testing.assert_allclose(every["normalized_cost"], [1 / 6, 3 / 6, 1.0])
    assert list(every["knob_name"]) == ["stage"] * 3
    assert df.loc[df["policy"] == "fit_size", "knob"].tolist() == [400.0]


def test_sweep_random_splits() -> None:
    t = _trace(n_samples=401)
    cfg = ScoringConfig(policies=(EveryStage(), FitSize()), n_splits=4, fit_fraction=0.25, seed=3)
    df = score_policies(t, cfg)
    assert list(df.columns) == EXPECTED_COLUMNS
    assert sorted(set(df["split"])) == [0, 1, 2, 3]
    assert len(df) == 4 * (3 + 1)
    n_fit = round(0.25 * 401)
    assert set(df["n_test"]) == {401 - n_fit}
    assert set(df.loc[df["policy"] == "fit_size", "knob"]) == {float(n_fit)}
    # the splits differ, and the same seed gives the same table
    acc = df[df["policy"] == "every_stage"].pivot(index="split", columns="knob", values="accuracy")
    assert acc.drop_duplicates().shape[0] > 1
    pd.testing.assert_frame_equal(df, score_policies(t, cfg))
    other = score_policies(t, ScoringConfig(policies=(EveryStage(),), n_splits=4, fit_fraction=0.25, seed=4))
    assert not np.allclose(other["accuracy"], df.loc[df["policy"] == "every_stage", "accuracy"])


def test_sweep_with_registry_policies() -> None:
    t = _trace(n_samples=600)
    cfg = ScoringConfig(
        policies=("static", "recall", "max_softmax"), n_splits=2, fit_config=FitConfig(n_bins=4)
    )
    df = score_policies(t, cfg)
    assert set(df["policy"]) == {"static", "recall", "max_softmax"}
    assert (df["accuracy"].between(0, 1)).all() and (df["normalized_cost"].between(0, 1 + 1e-12)).all()
    static = df[(df["policy"] == "static") & (df["split"] == 0)]
    assert static["knob"].tolist() == [1.0, 2.0, 3.0]
    from ttamer.policies import POLICIES, default_trace_policies

    assert ScoringConfig().policies == default_trace_policies() == tuple(POLICIES)


def test_sweep_errors() -> None:
    t = _trace()
    with pytest.raises(FieldError) as info:
        score_policies(t, ScoringConfig(policies=("static", "nonsense")))
    assert info.value.field == "policies"
    with pytest.raises(FieldError, match="more than once"):
        score_policies(t, ScoringConfig(policies=(EveryStage(), EveryStage())))
    with pytest.raises(TraceError, match="fit trace has 2 stages"):
        score_policies(t, ScoringConfig(policies=(EveryStage(),)), fit_trace=_trace(n=2))
    for kwargs, field in [
        ({"n_splits": 0}, "n_splits"),
        ({"fit_fraction": 1.0}, "fit_fraction"),
        ({"policies": ()}, "policies"),
        ({"policies": "static"}, "policies"),
    ]:
        with pytest.raises(FieldError) as info:
            ScoringConfig(**kwargs)  # type: ignore[arg-type]
        assert info.value.field == field


def test_bad_policy_output_is_caught() -> None:
    class Broken:
        name = "broken"
        knob_name = "k"

        def decide(self, ctx: ScoringContext) -> Decisions:
            stop = np.zeros((1, ctx.test.n_samples), dtype=np.int64)
            return Decisions(np.array([0.0]), stop, stop + 1)  # returns a stage it never ran

    with pytest.raises(ValueError, match="did not run"):
        score_policies(_trace(), ScoringConfig(policies=(Broken(),), n_splits=1))


def test_no_progress_bar_without_tty(capsys: pytest.CaptureFixture[str]) -> None:
    score_policies(_trace(), ScoringConfig(policies=(EveryStage(),), n_splits=2, progress=True))
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------------------- command line


@pytest.fixture
def traces(tmp_path: Path) -> dict[str, Path]:
    paths = {"a": tmp_path / "a.npz", "b": tmp_path / "b.npz", "two": tmp_path / "two.npz"}
    save_trace(_trace(seed=5), paths["a"])
    save_trace(_trace(n_samples=250, seed=6), paths["b"])
    save_trace(_trace(n=2, seed=7), paths["two"])
    return paths


def _main_ok(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert len(out.strip().splitlines()) == 1, out
    return out


def test_cli_sweep_random_splits(
    traces: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_csv = tmp_path / "res" / "r.csv"
    argv = ["sweep", str(traces["a"]), "--out", str(out_csv), "--policies", "static,max_softmax,recall"]
    out = _main_ok([*argv, "--splits", "3", "--seed", "1", "--bins", "4"], capsys)
    assert "3 random fit/test splits" in out and str(out_csv) in out
    df = pd.read_csv(out_csv)
    assert list(df.columns) == EXPECTED_COLUMNS
    assert sorted(set(df["split"])) == [0, 1, 2]
    assert set(df["policy"]) == {"static", "max_softmax", "recall"}
    assert set(df["n_test"]) == {200}
    assert set(df["cost_unit"]) == {"ms"}
    assert sorted(os.listdir(out_csv.parent)) == ["r.csv"]  # atomic: no temp file left


def test_cli_sweep_with_fit(
    traces: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_csv = tmp_path / "r.csv"
    argv = ["sweep", str(traces["b"]), "--fit", str(traces["a"]), "--out", str(out_csv)]
    _main_ok([*argv, "--policies", "static,no_recall", "--score", "margin", "--agreement"], capsys)
    df = pd.read_csv(out_csv)
    assert list(df.columns) == EXPECTED_COLUMNS
    assert set(df["split"]) == {0}
    assert set(df["n_test"]) == {250}
    static = df[df["policy"] == "static"]
    np.testing.assert_allclose(static["accuracy"], load_trace(traces["b"]).correct.mean(axis=0))


def test_cli_sweep_default_policies(
    traces: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_csv = tmp_path / "r.csv"
    _main_ok(["sweep", str(traces["a"]), "--out", str(out_csv), "--splits", "1", "--bins", "4"], capsys)
    from ttamer.policies import POLICIES

    assert set(pd.read_csv(out_csv)["policy"]) == set(POLICIES)


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["sweep", "{missing}", "--out", "{out}"], "missing.npz does not exist"),
        (["sweep", "{bad}", "--out", "{out}"], "conf"),
        (["sweep", "{a}", "--out", "{out}", "--policies", "static,nope"], "unknown policy 'nope'"),
        (["sweep", "{a}", "--fit", "{two}", "--out", "{out}"], "--fit"),
        (["sweep", "{a}", "--fit", "{missing}", "--out", "{out}"], "--fit"),
        (["sweep", "{a}", "--fit", "{b}", "--splits", "3", "--out", "{out}"], "--splits"),
        (["sweep", "{a}", "--out", "{out}", "--bins", "0"], "--bins"),
        (["sweep", "{a}", "--out", "{out}", "--splits", "0"], "--splits"),
        (["sweep", "{a}", "--out", "{out}", "--score", "variance"], "--score"),
        (["sweep", "{a}", "--out", "{out}", "--bins", "300"], "conf"),  # too few fit samples
        (["sweep", "{a}"], "--out"),
        (["import-frugalml", "{missing}", "--out", "{out}"], "not a folder"),
        (["import-csv", "{missing}", "--out", "{out}"], "does not exist"),
        (["import-csv", "{badcsv}", "--out", "{out}"], "stage"),
        (["import-csv", "{csv}", "--out", "{out}", "--costs", "1,x"], "--costs"),
    ],
)
def test_cli_bad_input_exit_2(
    args: list[str], expect: str, traces: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.npz"
    t = _trace()
    np.savez(bad, labels=t.labels, pred=t.pred, conf=t.conf * 2, cost=t.cost)
    csv = tmp_path / "t.csv"
    export_csv(t, csv)
    badcsv = tmp_path / "bad.csv"
    badcsv.write_text("\n".join(csv.read_text().splitlines()[:-1]) + "\n")  # drops a (sample, stage) row
    names = {
        "missing": tmp_path / "missing.npz",
        "out": tmp_path / "out" / "r.out",
        "bad": bad,
        "csv": csv,
        "badcsv": badcsv,
        **traces,
    }
    argv = [a.format(**{k: str(v) for k, v in names.items()}) for a in args]
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert expect in lines[0]
    assert "Traceback" not in err and out == ""
    assert not (tmp_path / "out").exists()


def test_cli_import_csv_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t = _trace(n_samples=50)
    csv = tmp_path / "t.csv"
    export_csv(t, csv)
    out = tmp_path / "t.npz"
    _main_ok(["import-csv", str(csv), "--out", str(out), "--costs", "2,4,8", "--cost-unit", "GFLOP"], capsys)
    back = load_trace(out)
    np.testing.assert_array_equal(back.conf, t.conf)
    np.testing.assert_array_equal(back.cost, [2.0, 4.0, 8.0])
    assert back.cost_unit == "GFLOP"


def test_cli_import_frugalml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "mlserviceperformance_TOY"
    d.mkdir()
    (d / "meta.csv").write_text(
        "Index,MLaaS(API),Cost per 10k texts,label number\n1,Pricey,3,2\n2,Cheap,0.5,2\n"
    )
    y = np.array([0, 1, 1, 0, 1])
    for m, pred, conf in [(1, y, [0.9] * 5), (2, 1 - y, [0.2, 0.3, 0.4, 0.5, 1.0])]:
        (d / f"Model{m}_TrueLabel.txt").write_text("".join(f"{v}\n" for v in y))
        (d / f"Model{m}_PredictedLabel.txt").write_text("".join(f"{v}\n" for v in pred))
        (d / f"Model{m}_Confidence.txt").write_text("".join(f"{v}\n" for v in conf))
    out = tmp_path / "toy.npz"
    line = _main_ok(["import-frugalml", str(d), "--out", str(out)], capsys)
    assert "5 samples, 2 stages" in line and "Cheap (cost 0.5, acc 0.000)" in line
    t = load_trace(out)
    assert t.stage_names == ("Cheap", "Pricey")
    assert t.meta["dataset"] == "TOY"
    np.testing.assert_array_equal(t.correct.mean(axis=0), [0.0, 1.0])


def test_main_reports_stray_field_errors(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import ttamer.cli

    def boom(path: str, option: str) -> None:
        raise TraceError("labels", "deliberately bad")

    monkeypatch.setattr(ttamer.cli, "_load_trace_arg", boom)
    assert main(["sweep", "x.npz", "--out", "r.csv", "--policies", "static"]) == 2
    assert capsys.readouterr().err == "error: labels: deliberately bad\n"


def test_cli_subprocess_no_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ttamer.cli",
            "sweep",
            str(tmp_path / "nope.npz"),
            "--out",
            str(tmp_path / "r.csv"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"error: TRACE: {tmp_path / 'nope.npz'} does not exist"
