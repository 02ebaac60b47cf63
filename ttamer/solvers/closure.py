"""Exact solvers for the transitive closure of a chain (the paper's Theorem 5.2): stages may be
skipped. Nodes ``0 .. n-1`` in chain order; from the root any node may be run first, after node
``u`` any node ``v > u`` may be run next through edge ``u -> v``, or the policy stops.

**With recall.** The decision after running node ``u`` in state ``s`` depends only on
``(u, s, X)`` with ``X`` = ``lam`` times the best loss so far (the Markov property of the edge
used to reach the next node: its state depends only on ``s``). ``X`` lives on the graph's loss
support grid (0 included), so with ``V_{n-1}(X, s) = X``::

    V_u(X, s) = min( X, min_{v>u} [ (1-lam) c_uv + sum_s' T_uv[s, s'] V_v(min(X, lam l_v(s')), s') ] )
    J* = min_v [ (1-lam) c_rv + sum_s mu_v(s) V_v(lam l_v(s), s) ]

Backward over ``u = n-1 .. 0``; per pair ``u < v`` one gather and one matrix product of shape
``(L*G, K_v) @ (K_v, K_u)``: ``O(n^2)`` products, one factor ``n`` over the chain. Each
continuation ``C_u = min_v C_uv`` has slope at most 1 in ``X``, so ``X - C_u(X)`` is
non-decreasing and the stopping set is ``{X <= index_u(s)}``, as for chains.

**Without recall.** ``W_{n-1}(s) = lam l_{n-1}(s)``,
``W_u(s) = min(lam l_u(s), min_{v>u} (1-lam) c_uv + T_uv W_v)``.

Ties between next nodes go to the smallest ``v``; ties between stopping and continuing stop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ttamer.model.chain import check_lambda
from ttamer.model.graph import Graph, require_closure
from ttamer.solvers.grid import gather_after_min
from ttamer.solvers.recall import TIE_TOLERANCE

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]


# ----------------------------------------------------------------------------------- recall


@dataclass(frozen=True)
class ClosureRecallPolicy:
    """Run ``first_node()``; after running node ``u`` in state ``s`` with best loss ``b`` (loss
    units), ``decide(u, b, s)`` is -1 (stop, return the best node run) or the next node."""

    lam: float
    grid: FloatArray
    index: tuple[FloatArray, ...]
    next_nodes: tuple[IntArray, ...]
    first: int
    recall: bool = True

    def first_node(self) -> int:
        return self.first

    def decide(self, u: int, best_loss: float, state: int) -> int:
        if self.lam * best_loss <= self.index[u][state]:
            return -1
        # the grid row of b: the largest grid value <= b (b is a loss of the graph, so exact)
        row = max(int(np.searchsorted(self.grid, best_loss, side="right")) - 1, 0)
        return int(self.next_nodes[u][row, state])


@dataclass(frozen=True)
class ClosureRecallSolution:
    """``value`` (L,): optimal J. ``index[u]`` (L, K_u): the largest grid ``X`` (= ``lam`` times
    a loss) at which stopping after ``u`` is optimal (last node ``+inf``). ``next_node[u]``
    (L, G, K_u): the node to run next from grid row ``g`` of ``grid`` (best loss) and state
    ``s``, -1 where stopping. ``first_node`` (L,): the root's choice."""

    lam: FloatArray
    value: FloatArray
    index: tuple[FloatArray, ...]
    next_node: tuple[IntArray, ...]
    first_node: IntArray
    grid: FloatArray

    def policy(self, j: int = 0) -> ClosureRecallPolicy:
        return ClosureRecallPolicy(
            float(self.lam[j]),
            self.grid,
            tuple(x[j] for x in self.index),
            tuple(x[j] for x in self.next_node),
            int(self.first_node[j]),
        )


def _positions(graph: Graph, grid: FloatArray) -> list[NDArray[np.intp]]:
    return [np.searchsorted(grid, x).astype(np.intp) for x in graph.nodes]


def solve_closure_recall(graph: Graph, lam: ArrayLike) -> ClosureRecallSolution:
    """Solve the recall problem on a transitive closure exactly for every ``lam``."""
    require_closure(graph)
    lams = check_lambda(lam)
    edges = graph.edge_map()
    grid = graph.support()
    pos = _positions(graph, grid)
    n, ks, n_lam = graph.n_nodes, graph.n_states, lams.size
    kappa = 1.0 - lams
    x = lams[:, None, None] * grid[None, :, None]  # (L, G, 1)
    values: list[FloatArray] = [np.empty(0)] * n
    # after[v][l, g, s'] = V_v(min(X_g, lam l_v(s')), s'): what running v is worth, before costs
    after: list[FloatArray] = [np.empty(0)] * n
    index: list[FloatArray] = [np.empty(0)] * n
    next_node: list[IntArray] = [np.empty(0, dtype=np.int64)] * n
    values[n - 1] = np.repeat(x, ks[n - 1], axis=2)
    index[n - 1] = np.full((n_lam, ks[n - 1]), np.inf)
    next_node[n - 1] = np.full((n_lam, grid.size, ks[n - 1]), -1, dtype=np.int64)
    after[n - 1] = gather_after_min(values[n - 1], pos[n - 1])
    for u in range(n - 2, -1, -1):
        best = np.full((n_lam, grid.size, ks[u]), np.inf)
        arg = np.full(best.shape, -1, dtype=np.int64)
        for v in range(u + 1, n):
            e = edges[(u, v)]
            cont = (after[v].reshape(-1, ks[v]) @ e.transition.T).reshape(n_lam, grid.size, ks[u])
            cont += (kappa * e.cost)[:, None, None]
            better = cont < best
            best = np.where(better, cont, best)
            arg = np.where(better, v, arg)
        stops = x <= best * (1.0 + TIE_TOLERANCE) + TIE_TOLERANCE  # same rule as solve_recall
        k = np.maximum(stops.sum(axis=1) - 1, 0)  # stopping rows are a prefix
        index[u] = np.take_along_axis(np.broadcast_to(x, best.shape), k[:, None, :], axis=1)[:, 0]
        rows = np.arange(grid.size)[None, :, None]
        next_node[u] = np.where(rows <= k[:, None, :], -1, arg)
        values[u] = np.minimum(x, best)
        after[u] = gather_after_min(values[u], pos[u])
    total = np.full(n_lam, np.inf)
    first = np.full(n_lam, -1, dtype=np.int64)
    for v in range(n):
        e = edges[(None, v)]
        start = values[v][:, pos[v], np.arange(ks[v])]  # V_v(lam l_v(s), s): (L, K_v)
        j = kappa * e.cost + start @ e.transition[0]
        better = j < total
        total = np.where(better, j, total)
        first = np.where(better, v, first)
    return ClosureRecallSolution(lams, total, tuple(index), tuple(next_node), first, grid)


# -------------------------------------------------------------------------------- no recall


@dataclass(frozen=True)
class ForwardNoRecallPolicy:
    """A recall-free forward walk (closures, and trees walked from parent to child): run
    ``first_node()``; after node ``u`` in state ``s``, ``decide(u, best_loss, s)`` is -1 (stop,
    return node ``u``) or the next node. ``best_loss`` is ignored."""

    stop: tuple[BoolArray, ...]
    next_nodes: tuple[IntArray, ...]
    first: int
    recall: bool = False

    def first_node(self) -> int:
        return self.first

    def decide(self, u: int, best_loss: float, state: int) -> int:
        return -1 if self.stop[u][state] else int(self.next_nodes[u][state])


@dataclass(frozen=True)
class ForwardNoRecallSolution:
    """A recall-free forward walk per ``lam``: ``value`` (L,); ``stop[u]`` (L, K_u) bool;
    ``next_node[u]`` (L, K_u) (-1 where stopping); ``first_node`` (L,)."""

    lam: FloatArray
    value: FloatArray
    stop: tuple[BoolArray, ...]
    next_node: tuple[IntArray, ...]
    first_node: IntArray

    def policy(self, j: int = 0) -> ForwardNoRecallPolicy:
        return ForwardNoRecallPolicy(
            tuple(x[j] for x in self.stop), tuple(x[j] for x in self.next_node), int(self.first_node[j])
        )


@dataclass(frozen=True)
class ClosureNoRecallSolution(ForwardNoRecallSolution):
    """The optimal recall-free closure policy (last node: ``stop`` all True)."""


def solve_closure_no_recall(graph: Graph, lam: ArrayLike) -> ClosureNoRecallSolution:
    """Solve the recall-free problem on a transitive closure exactly for every ``lam``."""
    require_closure(graph)
    lams = check_lambda(lam)
    edges = graph.edge_map()
    n, ks, n_lam = graph.n_nodes, graph.n_states, lams.size
    kappa = 1.0 - lams
    w: list[FloatArray] = [np.empty(0)] * n
    stop: list[BoolArray] = [np.empty(0, dtype=bool)] * n
    next_node: list[IntArray] = [np.empty(0, dtype=np.int64)] * n
    w[n - 1] = lams[:, None] * graph.nodes[n - 1][None, :]
    stop[n - 1] = np.ones((n_lam, ks[n - 1]), dtype=bool)
    next_node[n - 1] = np.full((n_lam, ks[n - 1]), -1, dtype=np.int64)
    for u in range(n - 2, -1, -1):
        best = np.full((n_lam, ks[u]), np.inf)
        arg = np.full(best.shape, -1, dtype=np.int64)
        for v in range(u + 1, n):
            e = edges[(u, v)]
            cont = w[v] @ e.transition.T + (kappa * e.cost)[:, None]
            better = cont < best
            best = np.where(better, cont, best)
            arg = np.where(better, v, arg)
        now = lams[:, None] * graph.nodes[u][None, :]
        stop[u] = now <= best
        next_node[u] = np.where(stop[u], -1, arg)
        w[u] = np.minimum(now, best)
    total = np.full(n_lam, np.inf)
    first = np.full(n_lam, -1, dtype=np.int64)
    for v in range(n):
        e = edges[(None, v)]
        j = kappa * e.cost + w[v] @ e.transition[0]
        better = j < total
        total = np.where(better, j, total)
        first = np.where(better, v, first)
    return ClosureNoRecallSolution(lams, total, tuple(stop), tuple(next_node), first)
