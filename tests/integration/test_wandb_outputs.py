"""What a job logs to W&B (README: W&B), read back from the offline run's files: the run config's
pivot keys, the artifacts (instances, fitted models, the trace by reference), the interactive
charts' specs and tables; and the fitted models saved under ``models/`` are the ones the scored
policies used."""

from __future__ import annotations

import contextlib
import io
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from _frugal import write_frugal_folder
from conftest import SMALL_SYNTHETIC, app_env, run_app

from ttamer.cli import main as cli_main
from ttamer.fitting.chain import FitConfig, fit_chain
from ttamer.fitting.graph import fit_closure
from ttamer.fitting.model_files import load_fitted_chain, load_fitted_graph, load_posterior_model
from ttamer.model.chain import load_chain
from ttamer.model.graph import Graph, load_instance
from ttamer.policies.base import ScoringContext, score_decisions
from ttamer.policies.posterior import PosteriorRecallPolicy, posterior_decisions
from ttamer.policies.recall import RecallPolicy, recall_decisions
from ttamer.solvers import evaluate_recall_solution, solve_recall
from ttamer.studies.graph_study import GraphStudyConfig, graph_policies, score_walks
from ttamer.traces.cache import content_hash
from ttamer.traces.frugalml import import_frugalml
from ttamer.traces.trace import repeated_splits

SYNTHETIC = SMALL_SYNTHETIC
N, SPLITS, BINS = 400, 3, 4


# --------------------------------------------------------------------------- offline run files


def wandb_records(run: Path) -> list[Any]:
    """Every record of the offline run's transaction log (``run-*.wandb``): a LevelDB-style log
    of 32 KiB blocks after a 7-byte file header, each chunk with a 7-byte header (CRC, length,
    type: 1 full, 2 first, 3 middle, 4 last), holding ``wandb_internal_pb2.Record`` messages."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = next(run.glob("*.wandb")).read_bytes()
    assert data[:4] == b":W&B"
    pos, block, buf, out = 7, 32768, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7]) if left >= 7 else (0, 0, 0)
        if left < 7 or (kind == 0 and length == 0):
            pos += left
            continue
        buf += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(buf)
            out.append(record)
            buf = b""
    return out


def offline_run(folder: Path) -> Path:
    runs = sorted((folder / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    return runs[0]


def run_record(records: list[Any]) -> Any:
    return next(r.run for r in records if r.WhichOneof("record_type") == "run")


def run_config(records: list[Any]) -> dict[str, Any]:
    return {u.key: json.loads(u.value_json) for u in run_record(records).config.update}


def artifacts(records: list[Any]) -> dict[str, Any]:
    """Logged artifacts by name (W&B's own run tables left out)."""
    arts = [r.artifact for r in records if r.WhichOneof("record_type") == "artifact"]
    return {a.name: a for a in arts if a.type != "run_table"}


def chart_specs(records: list[Any]) -> dict[str, dict[str, Any]]:
    """The custom charts of the run (key -> panel config), from its config records."""
    specs = {}
    for r in records:
        if r.WhichOneof("record_type") != "config":
            continue
        for u in r.config.update:
            value = json.loads(u.value_json)
            if isinstance(value, dict) and "panel_config" in value:
                specs[u.nested_key[-1] if u.nested_key else u.key] = value["panel_config"]
    return specs


def chart_table(run: Path, key: str) -> pd.DataFrame:
    """The table behind chart ``charts/<key>`` (``files/media/table/charts/<key>_table_*.json``)."""
    (path,) = (run / "files" / "media" / "table" / "charts").glob(f"{key}_table_*.table.json")
    data = json.loads(path.read_text())
    return pd.DataFrame(data["data"], columns=data["columns"])


# ------------------------------------------------------------------------------------- runs


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synthetic") / "run"
    proc = run_app(f"hydra.run.dir={out}", *SYNTHETIC, env=app_env(WANDB_MODE="offline"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def _frugal(tmp: Path, *overrides: str, mode: str = "offline") -> Path:
    folder = tmp / "data" / "frugalml" / "mlserviceperformance_TINY"
    if not folder.exists():
        write_frugal_folder(folder, n=N)
    out = tmp / "run"
    proc = run_app(
        f"hydra.run.dir={out}", "workload=frugalml", "workload.dataset=TINY", f"data_root={tmp / 'data'}",
        f"workload.n_splits={SPLITS}", f"workload.fit.n_bins={BINS}", "progress=false", *overrides,
        env=app_env(WANDB_MODE=mode),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


@pytest.fixture(scope="module")
def frugal_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _frugal(tmp_path_factory.mktemp("frugal"))


def _frugal_trace(run: Path) -> Any:
    return import_frugalml(run.parent / "data" / "frugalml" / "mlserviceperformance_TINY")


# -------------------------------------------------------------------------------- synthetic


def test_run_config_has_the_pivot_keys_and_the_resolved_config(synthetic_run: Path) -> None:
    config = run_config(wandb_records(offline_run(synthetic_run)))
    assert config["workload"] == "synthetic" and config["policy_set"] == "all"
    assert config["seed"] == 0 and config["launcher"] == "BasicLauncher"
    assert run_record(wandb_records(offline_run(synthetic_run))).job_type == "synthetic_study"
    resolved = config["resolved"]
    assert resolved["workload"]["name"] == "synthetic" and resolved["workload"]["n_stages"] == 4
    assert resolved["sweep"]["lam_grid"]["num"] == 12


@pytest.mark.parametrize("value", ["", "OFFLINE", "dryrun"])
def test_wandb_mode_spellings_from_the_environment(tmp_path: Path, value: str) -> None:
    """An empty ``WANDB_MODE`` means unset (the configured offline mode); other spellings of a
    mode are accepted as their mode: the run is made, with no error from W&B's own check."""
    out = tmp_path / "run"
    proc = run_app(f"hydra.run.dir={out}", *SYNTHETIC, env=app_env(WANDB_MODE=value))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert run_record(wandb_records(offline_run(out))).job_type == "synthetic_study"


def test_synthetic_instances_artifact_and_lower_bound_chart(synthetic_run: Path) -> None:
    run = offline_run(synthetic_run)
    records = wandb_records(run)
    art = artifacts(records)["lower_bound_instances"]
    assert art.type == "instances"
    files = sorted(p.relative_to(synthetic_run / "instances").as_posix()
                   for p in (synthetic_run / "instances").rglob("*.json"))  # fmt: skip
    assert sorted(e.path for e in art.manifest.contents) == files
    spec = chart_specs(records)["charts/lower_bound_ratio"]
    assert spec["panelDefId"] == "wandb/line/v0"
    ratio = "ratio (no recall / recall)"
    assert spec["fieldSettings"] == {"x": "alpha", "y": ratio, "stroke": "chain"}
    table = chart_table(run, "lower_bound_ratio")
    assert list(table.columns) == ["alpha", ratio, "chain"]
    lb = pd.read_csv(synthetic_run / "synthetic_lower_bound.csv")
    gen = lb[lb["case"] == "generalised"]
    assert table["chain"].nunique() == len(gen.groupby(["n_stages", "cost_scale"]))  # a line each
    for (n, cs), rows in gen.groupby(["n_stages", "cost_scale"]):
        line = table[table["chain"] == f"n_stages={n}, cost_scale={cs:g}"].sort_values("alpha")
        rows = rows.sort_values("alpha")
        np.testing.assert_allclose(line["alpha"], rows["alpha"], rtol=1e-12)
        np.testing.assert_allclose(line[ratio], rows["ratio"], rtol=1e-12)


# ----------------------------------------------------------------------------------- traces


def test_trace_is_a_dataset_artifact_by_reference(frugal_run: Path) -> None:
    art = artifacts(wandb_records(offline_run(frugal_run)))["frugalml_tiny_trace"]
    assert art.type == "dataset"
    folder = (frugal_run.parent / "data" / "frugalml" / "mlserviceperformance_TINY").resolve()
    refs = {e.path: e.ref for e in art.manifest.contents}
    assert set(refs) == {p.name for p in folder.iterdir()}
    assert all(ref == (folder / name).as_uri() for name, ref in refs.items())  # referenced, not copied
    meta = json.loads(art.metadata)
    trace = _frugal_trace(frugal_run)
    assert meta["content_sha256"] == content_hash(trace)
    assert meta["n_samples"] == N and meta["stage_names"] == list(trace.stage_names)


def test_pareto_and_calibration_charts(frugal_run: Path) -> None:
    run = offline_run(frugal_run)
    specs = chart_specs(wandb_records(run))
    cost = "cost (USD per 10k calls)"
    assert specs["charts/pareto"]["panelDefId"] == "wandb/line/v0"
    assert specs["charts/pareto"]["fieldSettings"] == {"x": cost, "y": "accuracy", "stroke": "policy"}
    pareto = chart_table(run, "pareto")
    assert list(pareto.columns) == [cost, "accuracy", "policy"]
    points = pd.read_csv(frugal_run / "frugalml_tiny_points.csv")
    assert set(pareto["policy"]) == set(points["policy"])
    full = float(points.loc[points["policy"] == "static", "mean_cost"].max())  # the full cascade
    assert pareto[cost].max() == pytest.approx(full, rel=1e-12)
    assert pareto["accuracy"].between(0, 1).all()
    assert specs["charts/calibration"]["panelDefId"] == "wandb/scatter/v0"
    axes = {"x": "predicted accuracy", "y": "realised accuracy"}
    assert specs["charts/calibration"]["fieldSettings"] == axes
    calibration = chart_table(run, "calibration")
    saved = pd.read_csv(frugal_run / "frugalml_tiny_calibration.csv")
    np.testing.assert_allclose(calibration["realised accuracy"], saved["accuracy"], rtol=1e-12)
    np.testing.assert_allclose(calibration["predicted accuracy"], saved["predicted_accuracy"], rtol=1e-12)


def test_fitted_models_artifact(frugal_run: Path) -> None:
    records = wandb_records(offline_run(frugal_run))
    art = artifacts(records)["frugalml_tiny_models"]
    assert art.type == "model" and run_record(records).job_type == "trace_study"
    kinds = ("chain", "posterior_recall", "posterior_no_recall")
    assert sorted(e.path for e in art.manifest.contents) == sorted(f"{k}/split_{r}.json" for k in kinds
                                                                   for r in range(SPLITS))  # fmt: skip
    meta = json.loads(art.metadata)
    assert meta["seed"] == 0 and meta["fit_fraction"] == 0.5 and meta["fit_config"]["n_bins"] == BINS


def _split(run: Path, r: int) -> tuple[Any, Any]:
    trace = _frugal_trace(run)
    fit_idx, test_idx = repeated_splits(N, SPLITS, 0.5, 0)[r]
    return trace.subset(fit_idx), trace.subset(test_idx)


def _solve_cli(path: Path, lam: float) -> dict[str, Any]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert cli_main(["solve", str(path), "--lam", str(lam)]) == 0
    return json.loads(buf.getvalue())


@pytest.mark.parametrize("r", range(SPLITS))
def test_saved_chain_is_the_fit_of_its_split_and_reproduces_recall(frugal_run: Path, r: int) -> None:
    path = frugal_run / "models" / "frugalml_tiny" / "chain" / f"split_{r}.json"
    saved = load_fitted_chain(path)
    fit, test = _split(frugal_run, r)
    fresh = fit_chain(fit, FitConfig(n_bins=BINS))
    assert saved.config == fresh.config
    for a, b in zip((*saved.edges, *saved.chain.losses, *saved.chain.transitions),
                    (*fresh.edges, *fresh.chain.losses, *fresh.chain.transitions), strict=True):  # fmt: skip
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(load_chain(path).costs, fresh.chain.costs)
    lams = RecallPolicy().lambdas()
    decisions = recall_decisions(saved.chain, saved.states(test), lams)
    scores = score_decisions(decisions, test)
    points = pd.read_csv(frugal_run / "frugalml_tiny_points.csv")
    rows = points[(points["policy"] == "recall") & (points["split"] == r)]
    np.testing.assert_allclose(scores.accuracy, rows["accuracy"], atol=1e-9, rtol=0)
    np.testing.assert_allclose(scores.mean_cost, rows["mean_cost"], atol=1e-9, rtol=0)
    assert decisions.estimated_error is not None
    np.testing.assert_allclose(1 - decisions.estimated_error, rows["predicted_accuracy"], atol=1e-9, rtol=0)
    out = _solve_cli(path, 0.7)  # `ttamer solve` reads the file as a chain
    ev = evaluate_recall_solution(fresh.chain, solve_recall(fresh.chain, 0.7))
    assert out["objective"] == pytest.approx(float(ev.objective[0]), abs=1e-12)


@pytest.mark.parametrize("policy", ["posterior_recall", "posterior_no_recall"])
def test_saved_posterior_models_reproduce_their_points(frugal_run: Path, policy: str) -> None:
    points = pd.read_csv(frugal_run / "frugalml_tiny_points.csv")
    for r in range(SPLITS):
        model = load_posterior_model(frugal_run / "models" / "frugalml_tiny" / policy / f"split_{r}.json")
        fit, test = _split(frugal_run, r)
        rows = points[(points["policy"] == policy) & (points["split"] == r)]
        lams = PosteriorRecallPolicy().lambdas()  # the knob grid (the CSV rounds it to 12 digits)
        decisions = posterior_decisions(model, ScoringContext(fit, test), lams, policy == "posterior_recall")
        scores = score_decisions(decisions, test)
        np.testing.assert_allclose(scores.accuracy, rows["accuracy"], atol=1e-9, rtol=0)
        np.testing.assert_allclose(scores.mean_cost, rows["mean_cost"], atol=1e-9, rtol=0)


def test_graph_study_saves_the_fitted_closure_of_each_split(tmp_path: Path) -> None:
    run = _frugal(tmp_path, "structure=skip", "logger=none", "workload.n_splits=2", mode="disabled")
    assert not (run / "wandb").exists()
    points = pd.read_csv(run / "frugalml_tiny_skip_points.csv")
    trace = _frugal_trace(run)
    for r, (fit_idx, test_idx) in enumerate(repeated_splits(N, 2, 0.5, 0)):
        path = run / "models" / "frugalml_tiny_skip" / "closure" / f"split_{r}.json"
        saved = load_fitted_graph(path)
        fresh = fit_closure(trace.subset(fit_idx), FitConfig(n_bins=BINS))
        assert saved.graph.to_json_dict() == fresh.graph.to_json_dict()
        assert isinstance(load_instance(path), Graph)  # `ttamer solve` reads it as a graph
        test = trace.subset(test_idx)
        walks = graph_policies(saved, GraphStudyConfig().lambdas.lambdas(), saved.states(test))
        scored = score_walks("skip_recall", walks["skip_recall"], saved, test, r).points
        rows = points[(points["policy"] == "skip_recall") & (points["split"] == r)]
        np.testing.assert_allclose(scored["accuracy"], rows["accuracy"], atol=1e-9, rtol=0)
        np.testing.assert_allclose(scored["mean_cost"], rows["mean_cost"], atol=1e-9, rtol=0)
        assert (run / "models" / "frugalml_tiny_skip" / "chain" / f"split_{r}.json").is_file()
