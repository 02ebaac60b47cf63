"""Graph replay (``ttamer.evaluation.graph_replay``): the vectorised walks against the policy objects
stepped sample by sample, and against the solvers' exact values by Monte Carlo on samples drawn
from the graph's own model."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from _chains import random_distribution, random_losses
from _graph_bruteforce import random_closure, random_tree

from ttamer.evaluation.graph_replay import (
    GraphWalks,
    replay_closure_recall,
    replay_forward_no_recall,
    replay_tree_recall,
)
from ttamer.model.graph import Edge, Graph
from ttamer.solvers import (
    solve_closure_no_recall,
    solve_closure_recall,
    solve_tree_no_recall,
    solve_tree_recall,
)
from ttamer.solvers.tree import tree_parents

LAMS = np.array([0.05, 0.3, 0.6, 0.9, 1.0])
Walk = tuple[int, list[int], float]  # returned node, nodes run (in order), summed edge costs


def _costs(graph: Graph) -> dict[tuple[int | None, int], float]:
    return {(e.source, e.target): e.cost for e in graph.edges}


def loop_forward(graph: Graph, policy: object, row: np.ndarray) -> Walk:
    """One sample through a forward-walking policy (closure recall or any no-recall walk)."""
    cost = _costs(graph)
    u = policy.first_node()  # type: ignore[attr-defined]
    run, total = [u], cost[(None, u)]
    best, best_loss = u, graph.nodes[u][row[u]]
    while True:
        v = policy.decide(u, best_loss, int(row[u]))  # type: ignore[attr-defined]
        if v == -1:
            return (best if policy.recall else u), run, total  # type: ignore[attr-defined]
        total += cost[(u, v)]
        run.append(v)
        if graph.nodes[v][row[v]] < best_loss:
            best, best_loss = v, graph.nodes[v][row[v]]
        u = v


def loop_tree_recall(graph: Graph, policy: object, row: np.ndarray) -> Walk:
    cost = _costs(graph)
    parents = policy.parent  # type: ignore[attr-defined]
    run: dict[int, int] = {}
    order: list[int] = []
    best, best_loss, total = -1, float("inf"), 0.0
    while True:
        v = policy.next_node(run, best_loss)  # type: ignore[attr-defined]
        if v == -1:
            return best, order, total
        total += cost[(parents[v], v)]
        run[v] = int(row[v])
        order.append(v)
        if graph.nodes[v][row[v]] < best_loss:
            best, best_loss = v, graph.nodes[v][row[v]]


def check_against_loop(
    graph: Graph, walks: GraphWalks, policy_of: Callable[[int], object], states: np.ndarray, loop: Callable
) -> None:
    for j in range(walks.lam.size):
        policy = policy_of(j)
        for k, row in enumerate(states):
            returned, order, total = loop(graph, policy, row)
            assert walks.returned[j, k] == returned
            assert np.flatnonzero(walks.ran[j, k]).tolist() == sorted(order)
            assert walks.cost[j, k] == pytest.approx(total, abs=1e-12)


def random_states(rng: np.random.Generator, graph: Graph, n_samples: int) -> np.ndarray:
    return np.stack([rng.integers(0, k, n_samples) for k in graph.n_states], axis=1)


@pytest.mark.parametrize("seed", range(15))
def test_closure_replays_equal_the_policies_step_by_step(seed: int) -> None:
    rng = np.random.default_rng(seed)
    graph = random_closure(rng, int(rng.integers(1, 6)), max_states=4)
    states = random_states(rng, graph, 40)
    sol = solve_closure_recall(graph, LAMS)
    check_against_loop(graph, replay_closure_recall(graph, sol, states), sol.policy, states, loop_forward)
    nr = solve_closure_no_recall(graph, LAMS)
    check_against_loop(graph, replay_forward_no_recall(graph, nr, states), nr.policy, states, loop_forward)


@pytest.mark.parametrize("seed", range(15))
def test_tree_replays_equal_the_policies_step_by_step(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    graph = random_tree(rng, int(rng.integers(2, 7)), max_states=3)
    states = random_states(rng, graph, 40)
    sol = solve_tree_recall(graph, LAMS)
    check_against_loop(graph, replay_tree_recall(graph, sol, states), sol.policy, states, loop_tree_recall)
    nr = solve_tree_no_recall(graph, LAMS)
    check_against_loop(graph, replay_forward_no_recall(graph, nr, states), nr.policy, states, loop_forward)


# ------------------------------------------------------------------------------ Monte Carlo


def sample_tree(rng: np.random.Generator, graph: Graph, n_samples: int) -> np.ndarray:
    """Every node's state, parents before children (children independent given the parent)."""
    parents = tree_parents(graph)
    into = {e.target: e for e in graph.edges}
    states = np.full((n_samples, graph.n_nodes), -1)
    todo = list(range(graph.n_nodes))
    while todo:
        for v in list(todo):
            p = parents[v]
            if p is not None and p in todo:
                continue
            rows = into[v].transition[np.zeros(n_samples, dtype=int) if p is None else states[:, p]]
            states[:, v] = (rng.random((n_samples, 1)) > rows.cumsum(axis=1)).sum(axis=1)
            todo.remove(v)
    return np.minimum(states, np.array(graph.n_states) - 1)


def markov_closure(rng: np.random.Generator, n: int, k: int) -> tuple[Graph, list[np.ndarray], np.ndarray]:
    """A closure whose edges are exact for a Markov chain (so a joint distribution exists):
    edge u -> v carries the product of the chain's transitions u..v, root -> v the marginal.
    Costs are random (skipping may save or not)."""
    initial = random_distribution(rng, k)
    trans = [np.stack([random_distribution(rng, k) for _ in range(k)]) for _ in range(n - 1)]
    nodes = [random_losses(rng, k, False) for _ in range(n)]
    edges = []
    for v in range(n):
        for u in [None, *range(v)]:
            t = initial[None, :] if u is None else np.eye(k)
            for w in range(0 if u is None else u, v):
                t = t @ trans[w]
            edges.append(Edge(u, v, float(rng.random() * 0.3), t))
    return Graph.build(nodes, edges), trans, initial


def sample_chain(
    rng: np.random.Generator, initial: np.ndarray, trans: list[np.ndarray], size: int
) -> np.ndarray:
    cols = [(rng.random((size, 1)) > initial.cumsum()[None, :]).sum(axis=1)]
    for t in trans:
        cols.append((rng.random((size, 1)) > t[cols[-1]].cumsum(axis=1)).sum(axis=1))
    return np.minimum(np.stack(cols, axis=1), len(initial) - 1)


def assert_mc_equals(walks: GraphWalks, graph: Graph, states: np.ndarray, exact: np.ndarray) -> None:
    loss = graph.state_losses(states)
    chosen = loss[np.arange(states.shape[0])[None, :], walks.returned]
    per_sample = walks.lam[:, None] * chosen + (1 - walks.lam[:, None]) * walks.cost
    se = per_sample.std(axis=1) / np.sqrt(states.shape[0])
    np.testing.assert_allclose(walks.objective(loss), per_sample.mean(axis=1))
    assert (np.abs(per_sample.mean(axis=1) - exact) <= 4.5 * se + 1e-12).all(), (
        per_sample.mean(1),
        exact,
        se,
    )


@pytest.mark.parametrize("seed", range(4))
def test_tree_replay_attains_the_exact_value_by_monte_carlo(seed: int) -> None:
    rng = np.random.default_rng(200 + seed)
    graph = random_tree(rng, 5, max_states=3)
    states = sample_tree(rng, graph, 100_000)
    sol = solve_tree_recall(graph, LAMS)
    assert_mc_equals(replay_tree_recall(graph, sol, states), graph, states, sol.value)
    nr = solve_tree_no_recall(graph, LAMS)
    assert_mc_equals(replay_forward_no_recall(graph, nr, states), graph, states, nr.value)


@pytest.mark.parametrize("seed", range(4))
def test_closure_replay_attains_the_exact_value_by_monte_carlo(seed: int) -> None:
    rng = np.random.default_rng(300 + seed)
    graph, trans, initial = markov_closure(rng, 5, 3)
    states = sample_chain(rng, initial, trans, 100_000)
    sol = solve_closure_recall(graph, LAMS)
    assert_mc_equals(replay_closure_recall(graph, sol, states), graph, states, sol.value)
    nr = solve_closure_no_recall(graph, LAMS)
    assert_mc_equals(replay_forward_no_recall(graph, nr, states), graph, states, nr.value)
