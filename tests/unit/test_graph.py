"""Graph instances (README: graphs): validation, files, structure detection, and the exact solvers for
the transitive closure of a chain, checked against the chain solvers and a plain recursion."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from _chains import random_chain, random_costs, random_distribution

from ttamer.cli import main
from ttamer.model.chain import Chain, ChainError
from ttamer.model.graph import (
    Edge,
    Graph,
    chain_to_graph,
    graph_from_json_dict,
    load_graph,
    load_instance,
    save_graph,
    structure,
    tree_as_chain,
)
from ttamer.solvers import (
    solve_closure_no_recall,
    solve_closure_recall,
    solve_no_recall,
    solve_recall,
)

LAMS = np.linspace(0.0, 0.9, 7)  # (1 - lam) * 1e6 stays huge: skip edges stay useless


def valid_json() -> dict:
    """A valid 3-node closure with 2, 3 and 1 states."""
    return {
        "nodes": [{"losses": [0.1, 0.5], "name": "a"}, {"losses": [0.2, 0.3, 0.0]}, {"losses": [1.0]}],
        "edges": [
            {"from": None, "to": 0, "cost": 1.0, "transition": [[0.4, 0.6]]},
            {"from": None, "to": 1, "cost": 2.0, "transition": [[0.2, 0.3, 0.5]]},
            {"from": None, "to": 2, "cost": 3.0, "transition": [[1.0]]},
            {"from": 0, "to": 1, "cost": 0.5, "transition": [[0.5, 0.25, 0.25], [0.0, 1.0, 0.0]]},
            {"from": 0, "to": 2, "cost": 2.5, "transition": [[1.0], [1.0]]},
            {"from": 1, "to": 2, "cost": 2.0, "transition": [[1.0], [1.0], [1.0]]},
        ],
        "name": "tiny",
    }


def modified(path: tuple, value: object) -> dict:
    data = copy.deepcopy(valid_json())
    target = data
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


BAD = {
    "negative_loss": (("nodes", 1, "losses", 2), -1.0, "nodes[1].losses"),
    "nan_loss": (("nodes", 0, "losses", 0), float("nan"), "nodes[0].losses"),
    "empty_node": (("nodes", 2, "losses"), [], "nodes[2].losses"),
    "matrix_loss": (("nodes", 2, "losses"), [[1.0]], "nodes[2].losses"),
    "missing_losses": (("nodes", 0, "losses"), KeyError, "nodes[0].losses"),
    "row_sum": (("edges", 3, "transition", 1), [0.0, 1.0 - 2e-9, 0.0], "edges[3].transition"),
    "root_row_sum": (("edges", 0, "transition"), [[0.4, 0.5]], "edges[0].transition"),
    "root_two_rows": (("edges", 2, "transition"), [[1.0], [1.0]], "edges[2].transition"),
    "wrong_shape": (("edges", 5, "transition"), [[1.0], [1.0]], "edges[5].transition"),
    "negative_prob": (("edges", 4, "transition"), [[1.0], [-0.0 - 1.0]], "edges[4].transition"),
    "negative_cost": (("edges", 1, "cost"), -0.5, "edges[1].cost"),
    "inf_cost": (("edges", 1, "cost"), float("inf"), "edges[1].cost"),
    "list_cost": (("edges", 1, "cost"), [1.0], "edges[1].cost"),
    "string_cost": (("edges", 1, "cost"), "1", "edges[1].cost"),
    "bad_to": (("edges", 3, "to"), 7, "edges[3].to"),
    "float_to": (("edges", 3, "to"), 1.0, "edges[3].to"),
    "bad_from": (("edges", 3, "from"), -1, "edges[3].from"),
    "self_loop": (("edges", 3, "to"), 0, "edges[3].to"),
    "duplicate": (
        ("edges", 4),
        {"from": 0, "to": 1, "cost": 0.0, "transition": [[1, 0, 0], [1, 0, 0]]},
        "edges[4]",
    ),
    "missing_cost": (("edges", 2, "cost"), KeyError, "edges[2].cost"),
    "missing_from": (("edges", 2, "from"), KeyError, "edges[2].from"),
    "no_nodes": (("nodes",), [], "nodes"),
    "no_edges": (("edges",), [], "edges"),
    "missing_edges": (("edges",), KeyError, "edges"),
    "node_not_object": (("nodes", 1), [0.1], "nodes[1]"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_validation_names_the_field(name: str) -> None:
    path, value, field = BAD[name]
    with pytest.raises(ChainError) as info:
        graph_from_json_dict(modified(path, value))
    assert info.value.field == field, str(info.value)
    assert str(info.value).startswith(f"{field}: ")


def test_build_from_edges_and_freezing() -> None:
    g = Graph.build([[0.5, 0.0]], [Edge(None, 0, 1.0, np.array([[0.5, 0.5]]))], names=["only"])
    assert g.names == ("only",) and g.n_states == (2,)
    assert not g.nodes[0].flags.writeable and not g.edges[0].transition.flags.writeable
    with pytest.raises(ChainError, match="names"):
        Graph.build([[0.5]], [(None, 0, 0.0, [[1.0]])], names=["a", "b"])
    with pytest.raises(ChainError) as info:
        Graph.build([[0.5]], [(None, 0)])  # type: ignore[list-item]
    assert info.value.field == "edges[0]"


@pytest.mark.parametrize("suffix", [".json", ".npz"])
def test_round_trip(tmp_path: Path, suffix: str) -> None:
    g = graph_from_json_dict(valid_json())
    path = tmp_path / f"g{suffix}"
    save_graph(g, path)
    assert not list(tmp_path.glob(".*.tmp"))
    for h in (load_graph(path), load_instance(path)):
        assert isinstance(h, Graph)
        assert h.names == ("a", "", "") and h.name == "tiny"
        assert all(np.array_equal(x, y) for x, y in zip(g.nodes, h.nodes, strict=True))
        for e, f in zip(g.edges, h.edges, strict=True):
            assert (e.source, e.target, e.cost) == (f.source, f.target, f.cost)
            assert np.array_equal(e.transition, f.transition)


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(ChainError, match="does not exist"):
        load_graph(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ChainError) as info:
        load_instance(bad)
    assert info.value.field == "file"
    npz = tmp_path / "g.npz"
    np.savez(npz, node_0_losses=np.array([1.0]), edge_0_from=np.array(-1), edge_0_to=np.array(0))
    with pytest.raises(ChainError) as info:
        load_graph(npz)
    assert info.value.field == "edge_0_cost"


# ------------------------------------------------------------------------------ structure


def _graph(n: int, pairs: list[tuple[int | None, int]]) -> Graph:
    return Graph.build([[float(v)] for v in range(n)], [(u, v, 0.0, [[1.0]]) for u, v in pairs])


def test_structure_detection() -> None:
    closure3 = [(None, 0), (None, 1), (None, 2), (0, 1), (0, 2), (1, 2)]
    assert structure(_graph(3, closure3)) == "closure"
    assert structure(_graph(1, [(None, 0)])) == "closure"  # one node: both, counts as closure
    assert structure(_graph(3, [(None, 0), (0, 1), (1, 2)])) == "tree"  # a path
    assert structure(_graph(4, [(None, 0), (None, 3), (0, 1), (0, 2)])) == "tree"  # branching, forest
    assert structure(_graph(2, [(None, 1), (1, 0)])) == "tree"  # a path in another node order
    refused = {
        "two_parents": _graph(3, [(None, 0), (0, 1), (0, 2), (1, 2)]),
        "closure_missing_root_edge": _graph(3, closure3[:1] + closure3[2:]),
        "closure_wrong_order": _graph(2, [(None, 0), (None, 1), (1, 0)]),
        "cycle": _graph(3, [(None, 0), (1, 2), (2, 1)]),
        "unreachable": _graph(2, [(None, 0)]),
    }
    for name, g in refused.items():
        with pytest.raises(ChainError, match="general DAGs are not supported") as info:
            structure(g)
        assert info.value.field == "edges", name
    with pytest.raises(ChainError) as info2:
        solve_closure_recall(_graph(3, [(None, 0), (0, 1), (1, 2)]), 0.5)
    assert info2.value.field == "edges"
    with pytest.raises(ChainError):
        solve_closure_no_recall(refused["two_parents"], 0.5)


def test_chain_as_path_tree_round_trips() -> None:
    rng = np.random.default_rng(1)
    chain = random_chain(rng, 4, [2, 1, 3, 2])
    g = chain_to_graph(chain)
    assert structure(g) == "tree" and len(g.edges) == 4
    back = tree_as_chain(g)
    assert back is not None
    assert back.to_json_dict() == chain.to_json_dict()
    assert tree_as_chain(_graph(4, [(None, 0), (0, 1), (0, 2), (2, 3)])) is None  # branching
    assert tree_as_chain(_graph(2, [(None, 0), (None, 1), (0, 1)])) is None  # closure, n = 2


# ------------------------------------------------------------------------------- closures


def closure_of(chain: Chain, rng: np.random.Generator, skip_cost: float | None) -> Graph:
    """``chain``'s edges plus every skip edge (root->v, v > 0; u->v, v > u+1) with random
    transitions; skip edges cost ``skip_cost`` (or random costs when None)."""
    ks = chain.n_states
    n = chain.n_stages
    edges = list(chain_to_graph(chain).edges)

    def cost() -> float:
        return float(random_costs(rng, 1)[0]) if skip_cost is None else skip_cost

    for v in range(1, n):
        edges.append(Edge(None, v, cost(), random_distribution(rng, ks[v])[None, :]))
    for u in range(n):
        for v in range(u + 2, n):
            edges.append(
                Edge(u, v, cost(), np.stack([random_distribution(rng, ks[v]) for _ in range(ks[u])]))
            )
    rng.shuffle(edges)  # type: ignore[arg-type]
    return Graph.build(chain.losses, edges, name=chain.name)


def _random_chain(rng: np.random.Generator, n_max: int = 5, k_max: int = 4) -> Chain:
    n = int(rng.integers(1, n_max + 1))
    return random_chain(rng, n, rng.integers(1, k_max + 1, size=n))


def test_closure_with_useless_skips_equals_chain() -> None:
    rng = np.random.default_rng(2)
    for _ in range(60):
        chain = _random_chain(rng)
        g = closure_of(chain, rng, skip_cost=1e6)
        assert structure(g) == "closure"
        rc, rg = solve_recall(chain, LAMS), solve_closure_recall(g, LAMS)
        np.testing.assert_allclose(rg.value, rc.value, rtol=0, atol=1e-12)
        for a, b in zip(rg.index, rc.index, strict=True):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
        assert (rg.first_node == 0).all()
        for u, nxt in enumerate(rg.next_node[:-1]):
            assert set(np.unique(nxt)) <= {-1, u + 1}
        nc, ng = solve_no_recall(chain, LAMS), solve_closure_no_recall(g, LAMS)
        np.testing.assert_allclose(ng.value, nc.value, rtol=0, atol=1e-12)
        for a, b in zip(ng.stop, nc.stop, strict=True):
            assert np.array_equal(a, b)


def test_closure_never_worse_than_chain() -> None:
    rng = np.random.default_rng(3)
    lams = np.linspace(0.0, 1.0, 11)
    for _ in range(60):
        chain = _random_chain(rng)
        g = closure_of(chain, rng, skip_cost=None)
        rg, ng = solve_closure_recall(g, lams), solve_closure_no_recall(g, lams)
        assert (rg.value <= solve_recall(chain, lams).value + 1e-12).all()
        assert (ng.value <= solve_no_recall(chain, lams).value + 1e-12).all()
        assert (rg.value <= ng.value + 1e-12).all()


def _recursive_value(g: Graph, lam: float, recall: bool) -> float:
    """Plain recursion over (last node, its state, best loss): no grid, no matrix products."""
    edges = g.edge_map()
    n, kappa = g.n_nodes, 1.0 - lam

    @cache
    def value(u: int, s: int, best: float) -> float:
        stop = lam * (best if recall else float(g.nodes[u][s]))
        options = [stop]
        for v in range(u + 1, n):
            e = edges[(u, v)]
            options.append(kappa * e.cost + run(v, e.transition[s], best))
        return min(options)

    def run(v: int, row: np.ndarray, best: float) -> float:
        return sum(
            float(p) * value(v, t, min(best, float(g.nodes[v][t]))) for t, p in enumerate(row) if p > 0
        )

    return min(
        kappa * edges[(None, v)].cost + run(v, edges[(None, v)].transition[0], np.inf) for v in range(n)
    )


def _policy_value(g: Graph, lam: float, policy: object, recall: bool) -> float:
    """The exact objective of following ``policy.first_node()`` / ``policy.decide``."""
    edges = g.edge_map()
    kappa = 1.0 - lam

    def from_node(u: int, s: int, best: float) -> float:
        nxt = policy.decide(u, best, s)  # type: ignore[attr-defined]
        if nxt == -1:
            return lam * (best if recall else float(g.nodes[u][s]))
        assert nxt > u
        e = edges[(u, nxt)]
        return kappa * e.cost + run(nxt, e.transition[s], best)

    def run(v: int, row: np.ndarray, best: float) -> float:
        return sum(
            float(p) * from_node(v, t, min(best, float(g.nodes[v][t]))) for t, p in enumerate(row) if p > 0
        )

    v0 = policy.first_node()  # type: ignore[attr-defined]
    return kappa * edges[(None, v0)].cost + run(v0, edges[(None, v0)].transition[0], np.inf)


def test_closure_matches_recursion_and_policies_attain_it() -> None:
    rng = np.random.default_rng(4)
    lams = np.array([0.0, 0.3, 0.7, 1.0])
    for _ in range(40):
        chain = _random_chain(rng, n_max=4, k_max=3)
        g = closure_of(chain, rng, skip_cost=None)
        rg, ng = solve_closure_recall(g, lams), solve_closure_no_recall(g, lams)
        for j, lam in enumerate(lams):
            assert rg.value[j] == pytest.approx(_recursive_value(g, lam, True), abs=1e-12)
            assert ng.value[j] == pytest.approx(_recursive_value(g, lam, False), abs=1e-12)
            pol = rg.policy(j)
            assert pol.recall
            assert _policy_value(g, lam, pol, True) == pytest.approx(rg.value[j], abs=1e-9)
            npol = ng.policy(j)
            assert not npol.recall
            assert _policy_value(g, lam, npol, False) == pytest.approx(ng.value[j], abs=1e-9)


# ------------------------------------------------------------------------------------ CLI


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_closure_and_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    g = graph_from_json_dict(valid_json())
    for suffix in (".json", ".npz"):
        path = tmp_path / f"closure{suffix}"
        save_graph(g, path)
        rc, out, _ = _run(["solve", str(path), "--lam", "0.4"], capsys)
        assert rc == 0
        res = json.loads(out)
        assert res["structure"] == "closure" and res["policy"] == "recall"
        assert res["objective"] == pytest.approx(float(solve_closure_recall(g, 0.4).value[0]))
        assert res["index"][-1] == [None]
        rc, out, _ = _run(["solve", str(path), "--lam", "0.4", "--policy", "no_recall"], capsys)
        assert rc == 0
        assert json.loads(out)["objective"] == pytest.approx(float(solve_closure_no_recall(g, 0.4).value[0]))
    # a chain written as a graph gives exactly the chain's answer
    chain = random_chain(np.random.default_rng(5), 3, [2, 2, 3])
    from ttamer.model.chain import save_chain

    save_chain(chain, tmp_path / "chain.json")
    save_graph(chain_to_graph(chain), tmp_path / "path.json")
    for policy in ("recall", "no_recall", "prophet"):
        outs = []
        for name in ("chain.json", "path.json"):
            rc, out, _ = _run(["solve", str(tmp_path / name), "--lam", "0.3", "--policy", policy], capsys)
            assert rc == 0
            res = json.loads(out)
            res.pop("file"), res.pop("structure", None)
            outs.append(res)
        assert outs[0] == outs[1]


def test_cli_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = {
        "dag": (_graph(3, [(None, 0), (0, 1), (0, 2), (1, 2)]), "recall", "general DAGs"),
        "tree_prophet": (_graph(3, [(None, 0), (0, 1), (0, 2)]), "prophet", "prophet"),
        "prophet": (graph_from_json_dict(valid_json()), "prophet", "prophet"),
    }
    for name, (g, policy, needle) in cases.items():
        path = tmp_path / f"{name}.json"
        save_graph(g, path)
        rc, out, err = _run(["solve", str(path), "--lam", "0.5", "--policy", policy], capsys)
        assert rc == 2, name
        assert out == ""
        assert err.count("\n") == 1 and needle in err and str(path) in err, err
    # one vocabulary: the hyphenated spelling of a policy name is refused, naming the valid ones
    rc, out, err = _run(["solve", str(path), "--lam", "0.5", "--policy", "no-recall"], capsys)
    assert rc == 2 and out == "" and "invalid choice: 'no-recall'" in err and "no_recall" in err, err


def test_cli_tree(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A branching tree: the objective is the solver's, and the exact evaluation of the printed
    policy reproduces it (lam*loss + (1-lam)*cost)."""
    from ttamer.solvers import solve_tree_no_recall, solve_tree_recall

    g = _graph(4, [(None, 0), (0, 1), (0, 2), (None, 3)])
    path = tmp_path / "tree.json"
    save_graph(g, path)
    for policy, solve in (("recall", solve_tree_recall), ("no_recall", solve_tree_no_recall)):
        rc, out, _ = _run(["solve", str(path), "--lam", "0.4", "--policy", policy], capsys)
        assert rc == 0
        res = json.loads(out)
        assert res["structure"] == "tree"
        assert res["objective"] == pytest.approx(float(solve(g, 0.4).value[0]), abs=1e-12)
        assert 0.4 * res["expected_loss"] + 0.6 * res["expected_cost"] == pytest.approx(res["objective"])
        assert sum(res["returned"]) == pytest.approx(1.0)
        assert res["ran"][res["first_node"]] == pytest.approx(1.0)
        if policy == "recall":
            assert [len(x) for x in res["index"]] == [1, g.n_states[0], g.n_states[0], 1]
