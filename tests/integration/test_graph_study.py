"""Graph studies (``ttamer.studies.graph_study``) and their Hydra entry (``structure=skip|tree``):
the tables against independent recomputations (the chain policies scored on the same splits,
the skip cost matrix, the chain policies scored on a reordered trace), and the refusals."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _frugal import write_frugal_folder
from conftest import run_app

from ttamer.errors import FieldError
from ttamer.evaluation.scoring import COLUMNS, ScoringConfig, score_policies
from ttamer.fitting.chain import FitConfig
from ttamer.model.skip_costs import GROUP_FIELD, HEAD_FIELD, independent_meta, skip_cost_matrix
from ttamer.studies.graph_study import GraphStudyConfig, reorder_stages, run_graph_study
from ttamer.traces.trace import Trace, repeated_splits

FIT = FitConfig(n_bins=4)


def backbone_trace(seed: int = 0, n_samples: int = 800) -> Trace:
    """Four exits on one backbone; exit 2 is no better than exit 1 and has a costly head, so
    skipping it should pay."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n_samples)
    hard = rng.random(n_samples)
    p_right = np.stack([0.95 - 0.6 * hard, 0.95 - 0.6 * hard, 0.97 - 0.3 * hard, 0.99 - 0.1 * hard], axis=1)
    correct = rng.random(p_right.shape) < p_right
    conf = np.clip(p_right + 0.05 * rng.standard_normal(p_right.shape), 0.5, 1.0)
    pred = np.where(correct, labels[:, None], 1 - labels[:, None])
    cost = [1.0, 3.0, 2.0, 2.0]
    meta = {HEAD_FIELD: json.dumps([0.2, 2.5, 0.2, 0.2]), GROUP_FIELD: json.dumps([0, 0, 0, 0])}
    return Trace.build(labels, pred, conf, cost, ["e1", "e2", "e3", "e4"], "ms", meta=meta)


def test_skip_study_tables() -> None:
    trace = backbone_trace()
    config = GraphStudyConfig(structure="skip", n_splits=3, fit_config=FIT, progress=False)
    result = run_graph_study(trace, config)
    points = result.points
    assert list(points.columns) == list(COLUMNS)
    assert set(points["policy"]) == {
        "recall",
        "no_recall",
        "static",
        "skip_recall",
        "skip_no_recall",
        "single_exit",
    }
    # the chain policies score exactly as score_policies scores them on the same splits
    chain_scores = score_policies(
        trace, ScoringConfig(("recall", "no_recall", "static"), 3, fit_config=FIT, progress=False)
    )
    chain = points[points["policy"].isin(["recall", "no_recall", "static"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(chain, chain_scores)
    # one exit alone costs the jump from the root; its accuracy is the stage's on the test split
    c = skip_cost_matrix(trace)
    splits = repeated_splits(trace.n_samples, 3, 0.5, 0)
    for r, (_, test_idx) in enumerate(splits):
        single = points[(points["policy"] == "single_exit") & (points["split"] == r)].sort_values("knob")
        np.testing.assert_allclose(single["mean_cost"], c[0])
        np.testing.assert_allclose(single["accuracy"], trace.correct[test_idx].mean(axis=0))
    # usage: every request returns exactly one stage, and only stages it ran
    usage = result.usage
    for _, g in usage.groupby(["policy", "knob", "split"]):
        assert g["returned_fraction"].sum() == pytest.approx(1.0)
        assert (g["returned_fraction"] <= g["run_fraction"] + 1e-12).all()
        assert (g["run_fraction"] + g["skipped_fraction"] <= 1 + 1e-12).all()
        assert g.sort_values("stage")["skipped_fraction"].iloc[-1] == 0.0  # nothing after the last
    # skipping the useless costly head pays: somewhere the skip policy runs exit 3 without exit 2
    skip = usage[usage["policy"] == "skip_recall"].pivot_table(
        index=["knob", "split"], columns="stage", values="run_fraction"
    )
    assert ((skip[3] - skip[2]) > 0.5).any()
    skipped = usage[usage["policy"] == "skip_recall"].pivot_table(
        index=["knob", "split"], columns="stage", values="skipped_fraction"
    )
    assert (skipped[2] >= skip[3] - skip[2] - 1e-12).all()  # ran exit 3 but not exit 2: skipped it
    area = result.summary.query("metric == 'area'").set_index("policy")["mean"]
    assert area["skip_recall"] > area["recall"]
    assert result.orders.empty


def frugal_trace(tmp_path: Path) -> Trace:
    from ttamer.traces.importers import import_frugalml

    folder = tmp_path / "frugal"
    write_frugal_folder(folder, n=600, models=((0, "A", 0.001), (1, "B", 0.75), (2, "C", 2.5)))
    return import_frugalml(folder)


def test_tree_study_best_order_is_the_chain_scoring_on_the_chosen_order(tmp_path: Path) -> None:
    trace = frugal_trace(tmp_path)
    config = GraphStudyConfig(
        structure="tree", parents=(None, 0, 0), chain_orders=True, n_splits=2, fit_config=FIT, progress=False
    )
    result = run_graph_study(trace, config)
    assert {"tree_recall", "tree_no_recall", "chain_recall_best_order"} <= set(result.points["policy"])
    orders = result.orders
    assert len(orders) == 2 * 6 and orders.groupby("split")["chosen"].sum().tolist() == [1, 1]
    splits = repeated_splits(trace.n_samples, 2, 0.5, 0)
    for r, (fit_idx, test_idx) in enumerate(splits):
        rows = orders[orders["split"] == r]
        chosen = rows[rows["chosen"]].iloc[0]
        assert chosen["fit_area"] == rows["fit_area"].max()
        order = tuple(trace.stage_names.index(name) for name in chosen["order"].split(">"))
        fit, test = (reorder_stages(trace.subset(i), order) for i in (fit_idx, test_idx))
        recall_only = ScoringConfig(("recall",), fit_config=FIT, progress=False)
        expected = score_policies(test, recall_only, fit_trace=fit)
        got = result.points[
            (result.points["policy"] == "chain_recall_best_order") & (result.points["split"] == r)
        ]
        np.testing.assert_allclose(got["accuracy"], expected["accuracy"])
        np.testing.assert_allclose(got["mean_cost"], expected["mean_cost"])


def test_study_refusals(tmp_path: Path) -> None:
    with pytest.raises(FieldError, match="parents"):
        GraphStudyConfig(structure="tree")
    with pytest.raises(FieldError, match="structure"):
        GraphStudyConfig(structure="dag")
    with pytest.raises(FieldError, match="static"):
        GraphStudyConfig(chain_policies=("recall",))
    with pytest.raises(FieldError, match="parents"):
        run_graph_study(frugal_trace(tmp_path), GraphStudyConfig(structure="tree", parents=(None, 0)))
    with pytest.raises(FieldError, match="separate models"):
        reorder_stages(backbone_trace(), (1, 0, 2, 3))
    tree_orders = GraphStudyConfig(structure="tree", parents=(None, 0, 0, 0), chain_orders=True)
    with pytest.raises(FieldError, match="separate models"):
        run_graph_study(backbone_trace(), tree_orders)
    same = reorder_stages(frugal_trace(tmp_path), (2, 0, 1))
    assert same.stage_names == ("C", "A", "B") and same.meta[GROUP_FIELD] == independent_meta(3)[GROUP_FIELD]


# ------------------------------------------------------------------------------ Hydra


def _run(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    folder = tmp_path / "data" / "frugalml" / "mlserviceperformance_TINY"
    if not folder.exists():
        write_frugal_folder(folder, n=400)
    return run_app(
        f"hydra.run.dir={tmp_path / 'run'}", "workload=frugalml", "workload.dataset=TINY",
        f"data_root={tmp_path / 'data'}", "workload.n_splits=2", "workload.fit.n_bins=4", "logger=none",
        "progress=false", *overrides,
    )  # fmt: skip


def test_hydra_tree_run_writes_every_table_and_figure(tmp_path: Path) -> None:
    proc = _run(tmp_path, "structure=tree", "structure.parents=[null,0,0]")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = tmp_path / "run"
    for key in ("points", "summary", "hulls", "usage", "orders"):
        assert (run / f"frugalml_tiny_tree_{key}.csv").is_file(), key
    for fig in ("fig_frugalml_tiny_tree.png", "fig_frugalml_tiny_tree_usage.png"):
        assert (run / fig).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    points = pd.read_csv(run / "frugalml_tiny_tree_points.csv")
    assert {"tree_recall", "tree_no_recall", "chain_recall_best_order", "static"} <= set(points["policy"])
    assert (points["cost_unit"] == "USD per 10k calls").all()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("structure=tree", "structure.parents=[null,0]"), "structure.parents: has 2 entries for 3 stages"),
        (("structure=tree", "structure.parents=[]"), "structure.parents"),
        (("structure=dag",), "structure"),
        (("structure=skip", "structure.chain_policies=[recall]"), "structure.chain_policies"),
    ],
)
def test_hydra_refusals_name_the_field(tmp_path: Path, overrides: tuple[str, ...], message: str) -> None:
    proc = _run(tmp_path, *overrides)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr or overrides == ("structure=dag",)
