"""Replaying graph policies on samples whose state at every node is known (a trace's test
split mapped to a fitted graph's states, or Monte Carlo draws), vectorised over samples and
``lam`` values; the only Python loops are over the at most ``n`` steps of a walk.

Every replay returns a :class:`GraphWalks`: for each of ``L`` ``lam`` values and ``N`` samples,
the node whose answer is returned, the nodes run, and the sum of the costs of the edges used
(graph units). The rules are the policy objects' (:class:`ttamer.solvers.ClosureRecallPolicy`,
:class:`ttamer.solvers.TreeRecallPolicy`, :class:`ttamer.solvers.ForwardNoRecallPolicy`),
sample by sample: the same stopping test and next node, ties as there (the returned node is the
first run among those of smallest loss).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from ttamer.model.graph import Graph
from ttamer.solvers.closure import ClosureRecallSolution, ForwardNoRecallSolution
from ttamer.solvers.tree import TreeRecallSolution

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

G = TypeVar("G", bound=np.generic)


@dataclass(frozen=True)
class GraphWalks:
    """``lam`` (L,); ``returned`` (L, N) node indices; ``ran`` (L, N, n) bool; ``cost`` (L, N):
    the summed costs of the edges used (graph units)."""

    lam: FloatArray
    returned: IntArray
    ran: BoolArray
    cost: FloatArray

    def objective(self, loss: FloatArray) -> FloatArray:
        """Mean ``lam * loss + (1 - lam) * cost`` per ``lam`` (L,), ``loss`` (N, n) per node."""
        rows = np.arange(loss.shape[0])[None, :]
        chosen = loss[rows, self.returned]
        return np.asarray(self.lam * chosen.mean(axis=1) + (1.0 - self.lam) * self.cost.mean(axis=1))


def _padded(tables: tuple[NDArray[G], ...], fill: float | int | bool) -> NDArray[G]:
    """Per-node tables (L, ..., K_v) stacked into (L, n, ..., K_max), padded with ``fill``."""
    k_max = max(t.shape[-1] for t in tables)
    out = np.full(
        (tables[0].shape[0], len(tables), *tables[0].shape[1:-1], k_max), fill, dtype=tables[0].dtype
    )
    for v, t in enumerate(tables):
        out[:, v, ..., : t.shape[-1]] = t
    return out


def _edge_costs(graph: Graph) -> FloatArray:
    """(n + 1, n): the cost of edge ``u -> v`` at ``[u + 1, v]`` (root at row 0), NaN if none."""
    out = np.full((graph.n_nodes + 1, graph.n_nodes), np.nan)
    for e in graph.edges:
        out[0 if e.source is None else e.source + 1, e.target] = e.cost
    return out


class _Walk:
    """The state of ``L x N`` walks: current node, best node and loss, nodes run, cost."""

    def __init__(self, graph: Graph, lam: FloatArray, states: IntArray) -> None:
        self.states = np.asarray(states, dtype=np.int64)
        self.loss = graph.state_losses(self.states)
        self.lam = lam
        self.costs = _edge_costs(graph)
        n_lam, n_samples = lam.size, self.states.shape[0]
        self.rows = np.arange(n_samples)[None, :].repeat(n_lam, axis=0)  # (L, N)
        self.lams = np.arange(n_lam)[:, None].repeat(n_samples, axis=1)  # (L, N)
        self.ran = np.zeros((n_lam, n_samples, graph.n_nodes), dtype=bool)
        self.cur = np.zeros((n_lam, n_samples), dtype=np.int64)
        self.best = np.full((n_lam, n_samples), np.inf)
        self.returned = np.zeros((n_lam, n_samples), dtype=np.int64)
        self.cost = np.zeros((n_lam, n_samples))
        self.active = np.ones((n_lam, n_samples), dtype=bool)

    def start(self, first: IntArray) -> None:
        """Run each ``lam``'s first node (L,) from the root."""
        self.visit(self.active, np.full(self.cur.shape, -1), np.broadcast_to(first[:, None], self.cur.shape))

    def state(self) -> IntArray:
        """The observed state of the current node (L, N)."""
        return self.states[self.rows, self.cur]

    def visit(self, go: BoolArray, source: IntArray, target: IntArray) -> None:
        """Run ``target`` through edge ``source -> target`` where ``go``."""
        self.cost += np.where(go, self.costs[source + 1, target], 0.0)
        self.ran[self.lams[go], self.rows[go], target[go]] = True
        new_loss = self.loss[self.rows, target]
        better = go & (new_loss < self.best)
        self.best = np.where(better, new_loss, self.best)
        self.returned = np.where(better, target, self.returned)
        self.cur = np.where(go, target, self.cur)

    def result(self) -> GraphWalks:
        return GraphWalks(self.lam, self.returned, self.ran, self.cost)


def replay_closure_recall(graph: Graph, sol: ClosureRecallSolution, states: IntArray) -> GraphWalks:
    """The closure index policy of every ``lam`` of ``sol`` on samples ``states`` (N, n)."""
    index = _padded(sol.index, np.inf)  # (L, n, K)
    nxt = _padded(sol.next_node, -1)  # (L, n, G, K)
    walk = _Walk(graph, sol.lam, states)
    walk.start(sol.first_node)
    for _ in range(graph.n_nodes):
        s = walk.state()
        stop = sol.lam[:, None] * walk.best <= index[walk.lams, walk.cur, s]
        walk.active &= ~stop
        if not walk.active.any():
            break
        row = np.maximum(np.searchsorted(sol.grid, walk.best, side="right") - 1, 0)
        target = nxt[walk.lams, walk.cur, row, s]
        walk.visit(walk.active, walk.cur, np.where(walk.active, target, walk.cur))
    return walk.result()


def replay_forward_no_recall(graph: Graph, sol: ForwardNoRecallSolution, states: IntArray) -> GraphWalks:
    """A recall-free forward walk (closure or descending tree policy) of every ``lam`` of
    ``sol`` on samples ``states`` (N, n); the node returned is the last one run."""
    stop_at = _padded(sol.stop, True)  # (L, n, K)
    nxt = _padded(sol.next_node, -1)
    walk = _Walk(graph, sol.lam, states)
    walk.start(sol.first_node)
    for _ in range(graph.n_nodes):
        s = walk.state()
        walk.active &= ~stop_at[walk.lams, walk.cur, s]
        if not walk.active.any():
            break
        target = nxt[walk.lams, walk.cur, s]
        walk.visit(walk.active, walk.cur, np.where(walk.active, target, walk.cur))
    return GraphWalks(sol.lam, walk.cur, walk.ran, walk.cost)


def replay_tree_recall(graph: Graph, sol: TreeRecallSolution, states: IntArray) -> GraphWalks:
    """The tree index policy of every ``lam`` of ``sol`` on samples ``states`` (N, n): run the
    frontier node of smallest index, stop once ``lam * best loss <=`` that index."""
    n = graph.n_nodes
    states = np.asarray(states, dtype=np.int64)
    # sigma[l, k, v]: node v's index given its parent's observed state in sample k
    sigma = np.stack(
        [
            sol.index[v][:, np.zeros(states.shape[0], dtype=np.int64) if p is None else states[:, p]]
            for v, p in enumerate(sol.parent)
        ],
        axis=-1,
    )
    is_root_child = np.array([p is None for p in sol.parent])
    parent = np.array([0 if p is None else p for p in sol.parent])
    walk = _Walk(graph, sol.lam, states)
    for step in range(n):
        frontier = ~walk.ran & (is_root_child | walk.ran[..., parent])
        masked = np.where(frontier, sigma, np.inf)
        v = np.argmin(masked, axis=-1)  # smallest index, then smallest node
        value = np.take_along_axis(masked, v[..., None], axis=-1)[..., 0]
        stop = ~frontier.any(axis=-1)
        if step > 0:  # a policy runs at least one node
            stop |= sol.lam[:, None] * walk.best <= value
        walk.active &= ~stop
        if not walk.active.any():
            break
        source = np.where(is_root_child[v], -1, parent[v])
        walk.visit(walk.active, source, v)
    return walk.result()
