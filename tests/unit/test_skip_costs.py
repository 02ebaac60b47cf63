"""Stage-skipping costs (``ttamer.model.skip_costs``): closed-form small cases, consistency with the
trace's chain costs, meta validation, and what the producers and importers record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _frugal import write_frugal_folder

from ttamer.errors import FieldError
from ttamer.model.skip_costs import (
    GROUP_FIELD,
    HEAD_FIELD,
    SkipStructure,
    independent_meta,
    path_cost,
    run_set_cost,
    skip_cost_matrix,
    skip_meta,
    skip_structure,
    tree_edge_costs,
)
from ttamer.traces.csv_trace import export_csv, import_csv
from ttamer.traces.frugalml import import_frugalml
from ttamer.traces.trace import Trace, TraceError, load_trace, save_trace
from ttamer.workloads.latency import LatencyConfig
from ttamer.workloads.multi_exit import MultiExitNet
from ttamer.workloads.trace_from_model import model_trace

NAN = np.nan


def make_trace(cost: list[float], meta: dict[str, str] | None = None, n_samples: int = 5) -> Trace:
    n = len(cost)
    rng = np.random.default_rng(0)
    return Trace.build(
        labels=rng.integers(0, 2, n_samples),
        pred=rng.integers(0, 2, (n_samples, n)),
        conf=rng.random((n_samples, n)),
        cost=cost,
        cost_unit="ms",
        meta=meta,
    )


def with_skips(cost: list[float], head: list[Any], groups: list[Any]) -> Trace:
    return make_trace(cost, {HEAD_FIELD: json.dumps(head), GROUP_FIELD: json.dumps(groups)})


# ------------------------------------------------------------------------------ closed forms


def test_one_backbone_closed_form() -> None:
    # segments 0.5, 1.5, 2.0; heads 0.5, 0.5, 1.0
    c = skip_cost_matrix(with_skips([1.0, 2.0, 3.0], [0.5, 0.5, 1.0], [0, 0, 0]))
    expected = [
        [1.0, 2.5, 5.0],  # from the root: segments 1..v, head v
        [NAN, 2.0, 4.5],  # after exit 1: segment 2, head 2 | segments 2-3, head 3
        [NAN, NAN, 3.0],  # after exit 2
        [NAN, NAN, NAN],
    ]
    np.testing.assert_allclose(c, expected, rtol=0, atol=1e-12)


def test_separate_model_then_a_backbone_closed_form() -> None:
    # sst2-like: a lexicon model (group 0), then three layers of one network (group 1)
    cost, head = [0.1, 5.0, 2.0, 2.0], [0.0, 0.2, 0.2, 0.3]
    c = skip_cost_matrix(with_skips(cost, head, [0, 1, 1, 1]))
    expected = [
        [0.1, 5.0, 6.8, 8.6],
        [NAN, 5.0, 6.8, 8.6],  # after the lexicon, the network starts from its first layer
        [NAN, NAN, 2.0, 3.8],
        [NAN, NAN, NAN, 2.0],
        [NAN, NAN, NAN, NAN],
    ]
    np.testing.assert_allclose(c, expected, rtol=0, atol=1e-12)


def test_independent_stages_cost_their_own_cost_from_anywhere() -> None:
    cost = [3.0, 1.0, 7.0]
    trace = make_trace(cost)
    c = skip_cost_matrix(trace, assume="independent")
    for v in range(3):
        np.testing.assert_array_equal(c[: v + 1, v], cost[v])
        assert np.isnan(c[v + 1 :, v]).all()
    # the same from the meta an importer writes
    np.testing.assert_array_equal(skip_cost_matrix(make_trace(cost, independent_meta(3))), c)


def test_two_backbones_jump_across() -> None:
    # groups [0, 0, 1, 1]: from exit 1 (group 0) to exit 4 runs group 1 from its start
    cost, head = [1.0, 1.0, 4.0, 4.0], [0.25, 0.25, 1.0, 1.0]
    c = skip_cost_matrix(with_skips(cost, head, [0, 0, 1, 1]))
    assert c[0, 1] == pytest.approx(1.75)
    assert c[1, 3] == pytest.approx(4.0 + 3.0) == c[0, 3] == c[2, 3]
    assert c[3, 3] == 4.0


# ------------------------------------------------------------------------------ consistency


def random_skip_trace(seed: int) -> Trace:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 9))
    cost = rng.random(n) * 10
    head = cost * rng.random(n)
    groups = np.cumsum(rng.random(n) < 0.3).tolist()
    return make_trace(cost.tolist(), skip_meta(head, cost, groups))


@pytest.mark.parametrize("seed", range(12))
def test_walking_every_stage_gives_the_trace_costs_exactly(seed: int) -> None:
    trace = random_skip_trace(seed)
    c = skip_cost_matrix(trace)
    n = trace.n_stages
    assert c.shape == (n + 1, n)
    steps = np.array([c[0, 0]] + [c[u + 1, u + 1] for u in range(n - 1)])
    np.testing.assert_array_equal(steps, trace.cost)  # exactly, not approximately
    assert path_cost(c, list(range(n))) == pytest.approx(float(trace.cost.sum()))
    lower = np.tril_indices(n)
    assert np.isnan(c[1:][lower]).all() and not np.isnan(c[0]).any()
    assert not np.isnan(c[1:][np.triu_indices(n, 1)]).any()


def simulated_cost(s: SkipStructure, stages: list[int]) -> float:
    """Run ``stages`` in turn, tracking how far each backbone group has been computed."""
    done: dict[int, int] = {}  # group -> last stage whose segment has been computed
    total = 0.0
    for v in stages:
        g = int(s.group[v])
        first = int(np.flatnonzero(s.group == g)[0])
        start = done.get(g, first - 1) + 1
        total += float(s.head[v] + s.segment[start : v + 1].sum())
        done[g] = v
    return total


@pytest.mark.parametrize("seed", range(12))
def test_any_path_costs_its_segments_once_and_only_its_own_heads(seed: int) -> None:
    trace = random_skip_trace(seed)
    s = skip_structure(trace)
    c = skip_cost_matrix(trace)
    n = trace.n_stages
    rng = np.random.default_rng(seed + 100)
    for _ in range(20):
        stages = sorted(set(rng.integers(0, n, size=int(rng.integers(1, n + 1))).tolist()))
        assert path_cost(c, stages) == pytest.approx(simulated_cost(s, stages), abs=1e-9)
    with pytest.raises(ValueError, match="increase"):
        path_cost(c, [0, 0])


def test_skip_meta_clips_and_treats_unmeasured_heads_as_free() -> None:
    meta = skip_meta([0.5, 9.0, NAN, -1.0], [1.0, 2.0, 3.0, 4.0], [0, 1, 1, 1])
    assert json.loads(meta[HEAD_FIELD]) == [0.5, 2.0, 0.0, 0.0]
    assert json.loads(meta[GROUP_FIELD]) == [0, 1, 1, 1]
    with pytest.raises(ValueError, match="per stage"):
        skip_meta([0.5], [1.0, 2.0], [0, 0])


def test_meta_survives_a_save_and_load(tmp_path: Path) -> None:
    trace = random_skip_trace(3)
    save_trace(trace, tmp_path / "t.npz")
    np.testing.assert_array_equal(skip_cost_matrix(load_trace(tmp_path / "t.npz")), skip_cost_matrix(trace))


# ------------------------------------------------------------------------------ errors


def test_missing_meta_names_the_field_and_says_how_to_get_it() -> None:
    trace = make_trace([1.0, 2.0])
    with pytest.raises(TraceError, match="Re-produce the trace") as info:
        skip_cost_matrix(trace)
    assert info.value.field == "meta.exit_head_cost"
    assert "assume='independent'" in str(info.value)
    only_head = make_trace([1.0, 2.0], {HEAD_FIELD: "[0, 0]"})
    with pytest.raises(TraceError) as info:
        skip_cost_matrix(only_head)
    assert info.value.field == "meta.backbone_group"
    with pytest.raises(TraceError):  # half the meta is not repaired by an assumption
        skip_cost_matrix(only_head, assume="independent")
    with pytest.raises(FieldError, match="assume"):
        skip_cost_matrix(trace, assume="shared")


@pytest.mark.parametrize(
    ("head", "groups", "field", "match"),
    [
        ("not json", "[0, 0]", HEAD_FIELD, "not valid JSON"),
        ('{"a": 1}', "[0, 0]", HEAD_FIELD, "JSON list"),
        ("[0.1]", "[0, 0]", HEAD_FIELD, "1 entries for 2 stages"),
        ("[0.1, -0.2]", "[0, 0]", HEAD_FIELD, "stage 2.*>= 0"),
        ('[0.1, "x"]', "[0, 0]", HEAD_FIELD, "numbers"),
        ("[0.1, 2.5]", "[0, 0]", HEAD_FIELD, "stage 2.*exceeds"),
        ("[0.1, 0.1]", "[0, 0, 0]", GROUP_FIELD, "3 entries for 2 stages"),
        ("[0.1, 0.1]", "[0, 1.5]", GROUP_FIELD, "integer"),
        ("[0.1, 0.1]", "[0, true]", GROUP_FIELD, "integer"),
    ],
)
def test_bad_meta_names_the_field(head: str, groups: str, field: str, match: str) -> None:
    trace = make_trace([1.0, 2.0], {HEAD_FIELD: head, GROUP_FIELD: groups})
    with pytest.raises(TraceError, match=match) as info:
        skip_cost_matrix(trace)
    assert info.value.field == f"meta.{field}"


def test_groups_must_be_contiguous_and_heads_get_a_tiny_tolerance() -> None:
    trace = with_skips([1.0, 1.0, 1.0], [0, 0, 0], [0, 1, 0])
    with pytest.raises(TraceError, match="stage 3 returns to group 0") as info:
        skip_cost_matrix(trace)
    assert info.value.field == "meta.backbone_group"
    skip_cost_matrix(with_skips([1.0, 1.0, 1.0], [0, 0, 0], [5, 5, 2]))  # any ids, in blocks
    s = skip_structure(with_skips([1.0, 2.0], [1.0 + 1e-12, 2.0], [0, 0]))
    np.testing.assert_array_equal(s.head, [1.0, 2.0])  # clipped to the stage's cost
    np.testing.assert_array_equal(s.segment, [0.0, 0.0])


# ------------------------------------------------------------------------------ producers


def test_model_trace_records_measured_heads_on_one_backbone() -> None:
    torch.manual_seed(0)
    segments = [torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU()) for _ in range(3)]
    net = MultiExitNet(segments, [torch.nn.Linear(64, 3) for _ in range(3)])
    x, y = torch.randn(20, 64), torch.randint(0, 3, (20,))
    trace, table = model_trace(net, x, y, LatencyConfig(batch_sizes=(2, 4), warmup=1, repeats=3))
    s = skip_structure(trace)
    assert s.group.tolist() == [0, 0, 0]
    b0 = table[table["batch_size"] == 2].sort_values("stage")
    np.testing.assert_allclose(s.head, np.minimum(b0["head_median_ms"].to_numpy() / 2, trace.cost))
    assert (s.head > 0).all() and (s.head <= trace.cost).all()
    np.testing.assert_array_equal(skip_cost_matrix(trace)[[0, 1, 2], [0, 1, 2]], trace.cost)


def test_importers_record_separate_models(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    write_frugal_folder(folder)
    frugal = import_frugalml(folder)
    s = skip_structure(frugal)
    assert s.group.tolist() == [0, 1, 2] and s.head.tolist() == [0.0, 0.0, 0.0]
    path = tmp_path / "t.csv"
    export_csv(frugal, path)
    imported = skip_structure(import_csv(path))
    assert imported.group.tolist() == [0, 1, 2] and imported.head.tolist() == [0.0, 0.0, 0.0]


# ------------------------------------------------------------------------------ run sets, trees


@pytest.mark.parametrize("seed", range(12))
def test_run_set_cost_equals_the_simulated_cost_of_any_increasing_path(seed: int) -> None:
    trace = random_skip_trace(seed)
    s = skip_structure(trace)
    c = skip_cost_matrix(trace)
    rng = np.random.default_rng(seed + 200)
    n = trace.n_stages
    sets = rng.random((30, n)) < 0.5
    sets[:, int(rng.integers(n))] = True
    costs = run_set_cost(s, sets)
    assert costs.shape == (30,)
    for row, cost in zip(sets, costs, strict=True):
        stages = np.flatnonzero(row).tolist()
        assert cost == pytest.approx(simulated_cost(s, stages), abs=1e-9)
        assert cost == pytest.approx(path_cost(c, stages), abs=1e-9)
    np.testing.assert_allclose(run_set_cost(s, sets.reshape(5, 6, n)), costs.reshape(5, 6))


def test_tree_edge_costs_closed_form() -> None:
    # one backbone of 3 exits (segments 0.5, 1.5, 2.0; heads 0.5, 0.5, 1.0) and a separate model
    trace = with_skips([1.0, 2.0, 3.0, 7.0], [0.5, 0.5, 1.0, 0.0], [0, 0, 0, 1])
    s = skip_structure(trace)
    # exit 3 from the root, exits 1 and 2 hang from it (backbone done: heads only), model 4 from 1
    costs = tree_edge_costs(s, [2, 2, None, 0])
    np.testing.assert_allclose(costs, [0.5, 0.5, 5.0, 7.0])
    # separate models: each costs its own cost wherever it hangs
    independent = skip_structure(make_trace([3.0, 1.0, 2.0]), assume="independent")
    np.testing.assert_allclose(tree_edge_costs(independent, [None, 0, 0]), [3.0, 1.0, 2.0])
    with pytest.raises(FieldError, match="parents"):
        tree_edge_costs(independent, [None, 0])
