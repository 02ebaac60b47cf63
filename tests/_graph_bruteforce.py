"""Backward induction over information states for graph instances, written from the problem
statement only (no index, no contraction, no Markov reduction): exponential, for tiny graphs.

An information state is everything observed: the nodes run with their states (and, for
closures and recall-free rules, the order they ran in)."""

from __future__ import annotations

import functools
import itertools

import numpy as np

from tests._chains import random_distribution, random_losses
from ttamer.model.graph import Edge, Graph

History = tuple[tuple[int, int], ...]  # ((node, state), ...) in the order run


def _into(graph: Graph) -> dict[int, Edge]:
    return {e.target: e for e in graph.edges}


def _terminal(graph: Graph, history: History, lam: float, recall: bool) -> float:
    if recall:
        return lam * min(float(graph.nodes[v][s]) for v, s in history)
    v, s = history[-1]
    return lam * float(graph.nodes[v][s])


def closure_value(graph: Graph, lam: float, recall: bool) -> float:
    """Optimal J on a closure: from the history, stop or run any later node than the last."""
    edges = graph.edge_map()

    @functools.cache
    def value(history: History) -> float:
        options = [_terminal(graph, history, lam, recall)] if history else []
        last = history[-1] if history else None
        for v in range(0 if last is None else last[0] + 1, graph.n_nodes):
            e = edges[(None if last is None else last[0], v)]
            row = e.transition[0 if last is None else last[1]]
            options.append(
                (1 - lam) * e.cost + sum(p * value((*history, (v, s))) for s, p in enumerate(row) if p > 0)
            )
        return min(options)

    return value(())


def tree_value(graph: Graph, lam: float, recall: bool, descending: bool = False) -> float:
    """Optimal J on a tree. Recall: the state is the set of nodes run with their states.
    Without recall, the history's order matters (the last node is returned); ``descending``
    restricts the next node to a child of the last one."""
    into = _into(graph)

    @functools.cache
    def value(history: History) -> float:
        seen = dict(history)
        options = [_terminal(graph, history, lam, recall)] if history else []
        for v in range(graph.n_nodes):
            e = into[v]
            if v in seen or (e.source is not None and e.source not in seen):
                continue
            if descending and history and e.source != history[-1][0]:
                continue
            row = e.transition[0 if e.source is None else seen[e.source]]
            nxt = [(p, (*history, (v, s))) for s, p in enumerate(row) if p > 0]
            key = (lambda h: tuple(sorted(h))) if recall else (lambda h: h)
            options.append((1 - lam) * e.cost + sum(p * value(key(h)) for p, h in nxt))
        return min(options)

    return value(())


def descending_policies_min(graph: Graph, lam: float) -> float:
    """Minimum over every deterministic descending recall-free policy (first node, and for
    each (node, state) stop or one child), each evaluated by propagating mass."""
    into = _into(graph)
    kids = {
        u: [v for v in range(graph.n_nodes) if into[v].source == u] for u in [None, *range(graph.n_nodes)]
    }
    slots = [(u, s) for u in range(graph.n_nodes) for s in range(graph.n_states[u])]
    choices = [[-1, *kids[u]] for u, _ in slots]
    best = np.inf
    for first in kids[None]:
        for pick in itertools.product(*choices):
            rule = dict(zip(slots, pick, strict=True))
            best = min(best, _walk_value(graph, lam, first, rule))
    return float(best)


def _walk_value(graph: Graph, lam: float, first: int, rule: dict[tuple[int, int], int]) -> float:
    into = _into(graph)
    total = (1 - lam) * into[first].cost
    frontier = [(first, into[first].transition[0])]
    while frontier:
        v, mass = frontier.pop()
        for s, p in enumerate(mass):
            nxt = rule[(v, s)]
            if nxt == -1:
                total += p * lam * float(graph.nodes[v][s])
            elif p > 0:
                total += p * (1 - lam) * into[nxt].cost
                frontier.append((nxt, p * into[nxt].transition[s]))
    return total


def policy_outcome(graph: Graph, policy: object) -> tuple[float, float]:
    """(expected loss, expected cost) of a policy object, walking every outcome: tree recall
    policies (``next_node(run, best)``) and forward walks (``first_node``, ``decide``)."""
    into, edges = _into(graph), graph.edge_map()

    def walk(history: History, prob: float) -> tuple[float, float]:
        seen = dict(history)
        best = min(float(graph.nodes[v][s]) for v, s in history) if history else float("inf")
        if hasattr(policy, "next_node"):
            v = policy.next_node(seen, best) if history else policy.first_node()
        else:
            v = policy.decide(history[-1][0], best, history[-1][1]) if history else policy.first_node()
        if v == -1:
            loss = (
                best
                if getattr(policy, "recall", False)
                else float(graph.nodes[history[-1][0]][history[-1][1]])
            )
            return prob * loss, 0.0
        e = into[v] if hasattr(policy, "next_node") else edges[(history[-1][0] if history else None, v)]
        row = e.transition[0 if e.source is None else seen[e.source]]
        loss, cost = 0.0, prob * e.cost
        for s, p in enumerate(row):
            if p > 0:
                dl, dc = walk((*history, (v, s)), prob * p)
                loss, cost = loss + dl, cost + dc
        return loss, cost

    return walk((), 1.0)


# ---------------------------------------------------------------------------- instances


def random_tree(rng: np.random.Generator, n: int, max_states: int = 3) -> Graph:
    """A random tree (a forest under the root) with node ids shuffled, so parents may have
    larger ids than their children."""
    ks = rng.integers(1, max_states + 1, size=n)
    label = rng.permutation(n)
    tie = bool(rng.random() < 0.4)
    parents = [None if v == 0 or rng.random() < 0.25 else int(rng.integers(v)) for v in range(n)]
    nodes: list[np.ndarray] = [np.empty(0)] * n
    edges = []
    for v in range(n):
        nodes[label[v]] = random_losses(rng, int(ks[v]), tie)
        p = parents[v]
        rows = 1 if p is None else int(ks[p])
        trans = np.stack([random_distribution(rng, int(ks[v])) for _ in range(rows)])
        cost = 0.0 if rng.random() < 0.25 else float(rng.random() * rng.choice([0.1, 0.5]))
        edges.append(Edge(None if p is None else int(label[p]), int(label[v]), cost, trans))
    return Graph.build(nodes, edges)


def random_closure(rng: np.random.Generator, n: int, max_states: int = 3) -> Graph:
    ks = rng.integers(1, max_states + 1, size=n)
    tie = bool(rng.random() < 0.4)
    nodes = [random_losses(rng, int(k), tie) for k in ks]
    edges = []
    for v in range(n):
        for u in [None, *range(v)]:
            rows = 1 if u is None else int(ks[u])
            trans = np.stack([random_distribution(rng, int(ks[v])) for _ in range(rows)])
            cost = 0.0 if rng.random() < 0.25 else float(rng.random() * rng.choice([0.1, 0.5]))
            edges.append(Edge(u, v, cost, trans))
    return Graph.build(nodes, edges)
