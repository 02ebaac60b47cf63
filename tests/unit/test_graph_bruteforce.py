"""Graph solvers against backward induction over information states (tests/_graph_bruteforce.py)
on tiny random trees and closures, and a chain written as a graph against the chain solvers."""

from __future__ import annotations

import numpy as np
import pytest

from tests._chains import random_chain
from tests._graph_bruteforce import (
    closure_value,
    descending_policies_min,
    policy_outcome,
    random_closure,
    random_tree,
    tree_value,
)
from ttamer.model.graph import chain_to_graph
from ttamer.solvers import (
    evaluate_graph_policy,
    solve_closure_no_recall,
    solve_closure_recall,
    solve_no_recall,
    solve_recall,
    solve_tree_no_recall,
    solve_tree_recall,
)

LAMS = (0.0, 0.3, 0.7, 1.0)
TOL = 1e-9


def _lams(rng: np.random.Generator) -> list[float]:
    return [*LAMS, float(rng.random())]


@pytest.mark.parametrize("seed", range(6))
def test_tree_recall_equals_backward_induction(seed: int) -> None:
    """The contraction's value equals the optimum over information states, and the index
    policy, evaluated by walking every outcome (two independent walks), attains it."""
    rng = np.random.default_rng(seed)
    for _ in range(25):
        g = random_tree(rng, int(rng.integers(1, 6)))
        lams = _lams(rng)
        sol = solve_tree_recall(g, lams)
        for j, lam in enumerate(lams):
            want = tree_value(g, lam, recall=True)
            assert sol.value[j] == pytest.approx(want, abs=TOL)
            loss, cost = policy_outcome(g, sol.policy(j))
            assert lam * loss + (1 - lam) * cost == pytest.approx(want, abs=TOL)
            ev = evaluate_graph_policy(g, sol.policy(j), lam)
            assert (ev.expected_loss, ev.expected_cost) == pytest.approx((loss, cost), abs=TOL)
            assert ev.returned.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(4))
def test_tree_no_recall_descending(seed: int) -> None:
    """The descending recall-free solver equals (a) backward induction restricted to descending
    walks and (b) the best of every deterministic descending policy; and the order
    recall <= general recall-free <= descending holds."""
    rng = np.random.default_rng(100 + seed)
    for _ in range(20):
        g = random_tree(rng, int(rng.integers(1, 5)), max_states=2)
        lams = _lams(rng)
        sol = solve_tree_no_recall(g, lams)
        for j, lam in enumerate(lams):
            descending = tree_value(g, lam, recall=False, descending=True)
            assert sol.value[j] == pytest.approx(descending, abs=TOL)
            assert sol.value[j] == pytest.approx(descending_policies_min(g, lam), abs=TOL)
            loss, cost = policy_outcome(g, sol.policy(j))
            assert lam * loss + (1 - lam) * cost == pytest.approx(descending, abs=TOL)
            ev = evaluate_graph_policy(g, sol.policy(j), lam)
            assert ev.objective == pytest.approx(descending, abs=TOL)
            general = tree_value(g, lam, recall=False)
            assert tree_value(g, lam, recall=True) <= general + TOL <= descending + 2 * TOL


def test_backtracking_without_recall_can_beat_descending() -> None:
    """Without recall, going back to a sibling (the general class) is sometimes strictly better
    than any descending walk: the reason the recall-free tree solver is restricted to
    descending walks (the general class is a free-order stopping problem with commitment)."""
    rng = np.random.default_rng(7)
    gaps = []
    for _ in range(200):
        g = random_tree(rng, 3, max_states=2)
        lam = float(rng.uniform(0.3, 1.0))
        gaps.append(tree_value(g, lam, recall=False, descending=True) - tree_value(g, lam, recall=False))
    assert min(gaps) >= -TOL
    assert max(gaps) > 1e-3


@pytest.mark.parametrize("seed", range(5))
def test_closure_equals_backward_induction(seed: int) -> None:
    rng = np.random.default_rng(200 + seed)
    for _ in range(20):
        g = random_closure(rng, int(rng.integers(1, 5)))
        lams = _lams(rng)
        rec, nrec = solve_closure_recall(g, lams), solve_closure_no_recall(g, lams)
        for j, lam in enumerate(lams):
            want = closure_value(g, lam, recall=True)
            assert rec.value[j] == pytest.approx(want, abs=TOL)
            assert nrec.value[j] == pytest.approx(closure_value(g, lam, recall=False), abs=TOL)
            for sol in (rec, nrec):
                loss, cost = policy_outcome(g, sol.policy(j))
                assert lam * loss + (1 - lam) * cost == pytest.approx(sol.value[j], abs=TOL)
                ev = evaluate_graph_policy(g, sol.policy(j), lam)
                assert (ev.expected_loss, ev.expected_cost) == pytest.approx((loss, cost), abs=TOL)


@pytest.mark.parametrize("seed", range(3))
def test_chain_as_graph_equals_chain(seed: int) -> None:
    """A chain written as a path tree gives the chain solvers' values; as a closure whose skip
    edges cost the sum of the skipped stages' costs (and jump with the product of the skipped
    transitions), skipping cannot help, so the closure equals the chain too."""
    rng = np.random.default_rng(300 + seed)
    for _ in range(15):
        n = int(rng.integers(1, 5))
        chain = random_chain(rng, n, [int(k) for k in rng.integers(1, 4, size=n)])
        lams = _lams(rng)
        path = chain_to_graph(chain)
        np.testing.assert_allclose(
            solve_tree_recall(path, lams).value, solve_recall(chain, lams).value, atol=TOL
        )
        np.testing.assert_allclose(
            solve_tree_no_recall(path, lams).value, solve_no_recall(chain, lams).value, atol=TOL
        )
        np.testing.assert_allclose(solve_closure_recall(path if n == 1 else _closure_of(chain), lams).value,
                                   solve_recall(chain, lams).value, atol=TOL)  # fmt: skip


def _closure_of(chain):  # type: ignore[no-untyped-def]
    from ttamer.model.graph import Edge, Graph

    n = chain.n_stages
    trans = [np.eye(chain.n_states[0]), *chain.transitions]
    edges = []
    for v in range(n):
        for u in [None, *range(v)]:
            t = chain.initial[None, :] if u is None else np.eye(chain.n_states[u])
            first = 0 if u is None else u + 1
            for w in range(first, v + 1):
                t = t @ trans[w] if w > 0 else t
            edges.append(Edge(u, v, float(chain.costs[first : v + 1].sum()), t))
    return Graph.build(chain.losses, edges)
