"""Exact evaluation of policies on graphs (trees and closures): expected loss, expected cost,
and per node the probability of being returned and of being run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ttamer.model.chain import ChainError
from ttamer.model.graph import Graph
from ttamer.solvers.closure import ClosureRecallPolicy, ForwardNoRecallPolicy
from ttamer.solvers.tree import (
    MAX_EVALUATION_STATES,
    Outcome,
    TreeRecallPolicy,
    better_node,
    enumerate_tree_recall,
    propagate_forward_walk,
)

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class GraphEvaluation:
    """Exact performance of one policy at trade-off weight ``lam``: ``expected_loss`` (loss
    units), ``expected_cost`` (the graph's cost units), ``objective`` = lam*loss +
    (1-lam)*cost; ``returned`` (n,): probability each node is the one returned; ``ran`` (n,):
    probability each node is run."""

    lam: float
    expected_loss: float
    expected_cost: float
    objective: float
    returned: FloatArray
    ran: FloatArray

    def row(self) -> dict[str, Any]:
        return {
            "lam": self.lam,
            "objective": self.objective,
            "expected_loss": self.expected_loss,
            "expected_cost": self.expected_cost,
            "returned": self.returned.tolist(),
            "ran": self.ran.tolist(),
        }


def enumerate_closure_recall(graph: Graph, policy: ClosureRecallPolicy) -> Outcome:
    """Exact outcome of a closure recall policy, walking (last node, state, best node)."""
    edges = graph.edge_map()
    n = graph.n_nodes
    memo: dict[tuple[int, int, tuple[int, int] | None], Outcome] = {}

    def run(v: int, row: FloatArray, best: tuple[int, int] | None, cost: float) -> Outcome:
        out = Outcome(0.0, cost, np.zeros(n), np.zeros(n))
        out.ran[v] = 1.0
        for s, p in enumerate(row):
            if p > 0:
                out.add(after(v, s, better_node(graph, best, v, s)), float(p))
        return out

    def after(u: int, s: int, best: tuple[int, int]) -> Outcome:
        key = (u, s, best)
        if key not in memo:
            if len(memo) >= MAX_EVALUATION_STATES:
                raise ChainError("edges", f"more than {MAX_EVALUATION_STATES} states to evaluate exactly")
            best_loss = float(graph.nodes[best[0]][best[1]])
            v = policy.decide(u, best_loss, s)
            if v == -1:
                memo[key] = Outcome(best_loss, 0.0, np.zeros(n), np.zeros(n))
                memo[key].returned[best[0]] = 1.0
            else:
                e = edges[(u, v)]
                memo[key] = run(v, e.transition[s], best, e.cost)
        return memo[key]

    first = edges[(None, policy.first_node())]
    return run(first.target, first.transition[0], None, first.cost)


def evaluate_graph_policy(
    graph: Graph, policy: TreeRecallPolicy | ClosureRecallPolicy | ForwardNoRecallPolicy, lam: float
) -> GraphEvaluation:
    """Evaluate ``policy`` on ``graph`` exactly; ``lam`` weighs the objective."""
    if isinstance(policy, TreeRecallPolicy):
        out = enumerate_tree_recall(graph, policy)
    elif isinstance(policy, ClosureRecallPolicy):
        out = enumerate_closure_recall(graph, policy)
    else:
        out = propagate_forward_walk(graph, policy)
    objective = lam * out.loss + (1.0 - lam) * out.cost
    return GraphEvaluation(lam, out.loss, out.cost, objective, out.returned, out.ran)
