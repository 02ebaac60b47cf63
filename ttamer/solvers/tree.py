"""Exact solvers for trees (the paper's Theorem 5.1): a policy may run any node whose parent has
run (the root's children included), or stop. Children of one node draw their states
independently given the parent's observed state.

**With recall: contracting subtrees into equivalent boxes.** Write ``a_v(s) = lam l_v(s)``
(loss weight) and ``k_v = (1 - lam) c_v`` (cost of the edge into ``v``). A Pandora box of cost
``k`` and random loss ``M`` has the reservation value ``sigma`` solving ``E[(sigma - M)^+] = k``
and the capped value ``kappa = max(sigma, M)``; with an outside option ``X`` the box alone is
worth ``E[min(X, kappa)]`` (open it iff ``X > sigma``). The subtree hanging from ``v``, seen
from its parent in state ``s``, is equivalent to the box of cost ``k_v`` and loss

    M_v = min(a_v(s_v), min over children c of v of kappa_c(s_v)),   s_v ~ T_pv[s, :],

because after running ``v`` its children are independent boxes, and a set of independent boxes
with outside option ``X'`` is worth ``E[min(X', min_c kappa_c)]`` (Weitzman). Working bottom-up
gives every ``sigma_v(s)`` and the optimum ``J* = E[min over root children r of kappa_r]``. The
optimal policy runs, among the nodes it may run, the one with the smallest ``sigma_v(state of
v's parent)``, and stops as soon as ``lam * best loss <= `` that smallest index. The
equivalence is checked against backward induction over information states (tests).

Distributions are exact step functions: ``P(M > x)`` on sorted breakpoints (loss values and the
indices of the subtree), never rounded to a grid, because indices of different subtrees are
compared with each other. Indices are real numbers in units of ``lam * loss``, like ``X``.

**Without recall** the optimal policy over all frontier orders is a free-order stopping problem
with commitment (NP-hard in general for independent boxes), so the solver covers the
*descending* class: after node ``u`` either stop and return ``u`` or run one child of ``u``::

    W_v(s) = min( a_v(s), min_c k_c + T_vc[s] . W_c ),   J = min_r k_r + mu_r . W_r.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ttamer.model.chain import ChainError, check_lambda
from ttamer.model.graph import Graph, structure
from ttamer.solvers.closure import ForwardNoRecallPolicy, ForwardNoRecallSolution

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]


# -------------------------------------------------------------------------------- structure


def tree_parents(graph: Graph) -> tuple[int | None, ...]:
    """The parent of every node (``None``: a child of the root); ChainError unless a tree."""
    if graph.n_nodes > 1 and structure(graph) != "tree":
        raise ChainError(
            "edges", "the graph is the transitive closure of a chain, not a tree: use the closure solver"
        )
    parent: list[int | None] = [None] * graph.n_nodes
    for e in graph.edges:
        parent[e.target] = e.source
    return tuple(parent)


def tree_children(parents: tuple[int | None, ...]) -> dict[int | None, list[int]]:
    """Children lists in increasing node order; key ``None`` is the root."""
    children: dict[int | None, list[int]] = {None: []}
    for v in range(len(parents)):
        children.setdefault(v, [])
    for v, p in enumerate(parents):
        children[p].append(v)
    return children


def bottom_up(parents: tuple[int | None, ...]) -> list[int]:
    """Nodes ordered so that every node comes after all of its descendants."""
    children = tree_children(parents)
    order: list[int] = []
    stack = list(children[None])
    while stack:
        v = stack.pop()
        order.append(v)
        stack.extend(children[v])
    return order[::-1]


# ---------------------------------------------------------------------- step-function survival


@dataclass(frozen=True)
class Survival:
    """``P(Y > x)`` for rows of random variables ``Y >= 0``: ``values[r, b]`` holds on
    ``[z[b], z[b+1])`` (the last column from ``z[-1]`` on, and it is 0). ``z`` (B,) sorted,
    ``z[0] = 0``; ``values`` (R, B)."""

    z: FloatArray
    values: FloatArray

    def at(self, x: FloatArray) -> FloatArray:
        """Survival at the points ``x`` (B',): shape (R, B')."""
        idx = np.searchsorted(self.z, x, side="right") - 1
        return self.values[:, np.maximum(idx, 0)]

    def integral(self) -> FloatArray:
        """``E[Y] = integral of P(Y > x) dx`` per row: (R,)."""
        return self.values[:, :-1] @ np.diff(self.z)


def reservation_values(m: Survival, k: float) -> FloatArray:
    """``sigma = sup{x : E[(x - M)^+] <= k}`` per row of ``m`` (the index of a box of cost
    ``k`` and loss ``M``; ties stop): shape (R,)."""
    cdf = 1.0 - m.values
    g = np.concatenate([np.zeros((cdf.shape[0], 1)), np.cumsum(cdf[:, :-1] * np.diff(m.z), axis=1)], axis=1)
    i = (g <= k).sum(axis=1) - 1  # g is non-decreasing and g[:, 0] = 0 <= k
    rows = np.arange(cdf.shape[0])
    slope = cdf[rows, i]
    step = np.where(slope > 0, (k - g[rows, i]) / np.where(slope > 0, slope, 1.0), 0.0)
    return np.asarray(m.z[i] + step, dtype=np.float64)


def capped(m: Survival, sigma: FloatArray) -> Survival:
    """The survival of ``kappa = max(sigma, M)`` row by row."""
    z = np.union1d(m.z, sigma)
    values = np.where(z[None, :] < sigma[:, None], 1.0, m.at(z))
    return Survival(z, values)


def min_of_independent(parts: list[Survival]) -> Survival:
    """The survival of the minimum of independent variables (rows broadcast): product."""
    z = np.zeros(1)
    for c in parts:
        z = np.union1d(z, c.z)
    values = np.ones((1, z.size))
    for c in parts:
        values = values * c.at(z)
    return Survival(z, values)


def subtree_loss(losses: FloatArray, kids: list[Survival]) -> Survival:
    """``P(min(a(s), min_c kappa_c(s)) > x)`` for each state ``s`` of a node: rows = states."""
    own = Survival(np.union1d(np.zeros(1), losses), np.empty((losses.size, 0)))
    own = Survival(own.z, (losses[:, None] > own.z[None, :]).astype(np.float64))
    return min_of_independent([own, *kids])


# ----------------------------------------------------------------------------------- recall


@dataclass(frozen=True)
class TreeRecallPolicy:
    """The index policy at one ``lam``. ``index[v]`` (K_parent(v),): ``sigma_v`` given the
    parent's state (one entry for the root's children), in units of ``lam * loss``."""

    lam: float
    parent: tuple[int | None, ...]
    index: tuple[FloatArray, ...]
    recall: bool = True

    def node_index(self, v: int, run: Mapping[int, int]) -> float:
        p = self.parent[v]
        return float(self.index[v][0 if p is None else run[p]])

    def frontier(self, run: Mapping[int, int]) -> list[int]:
        """The nodes that may run next: not run yet, parent run (or the root)."""
        return [v for v, p in enumerate(self.parent) if v not in run and (p is None or p in run)]

    def first_node(self) -> int:
        return self.next_node({}, float("inf"))

    def next_node(self, run: Mapping[int, int], best_loss: float) -> int:
        """-1 (stop, return the best node run) or the node to run; ``run`` maps each node run
        to its observed state, ``best_loss`` is the smallest loss among them (loss units)."""
        options = self.frontier(run)
        if not options:
            return -1
        v = min(options, key=lambda u: (self.node_index(u, run), u))
        if run and self.lam * best_loss <= self.node_index(v, run):
            return -1
        return v


@dataclass(frozen=True)
class TreeRecallSolution:
    """``value`` (L,): optimal J per ``lam``. ``index[v]`` (L, K_parent(v)): reservation values
    in units of ``lam * loss``. ``parent``: each node's parent (``None``: the root)."""

    lam: FloatArray
    value: FloatArray
    index: tuple[FloatArray, ...]
    parent: tuple[int | None, ...]

    def policy(self, j: int = 0) -> TreeRecallPolicy:
        return TreeRecallPolicy(float(self.lam[j]), self.parent, tuple(x[j] for x in self.index))


def _solve_tree_recall_one(
    graph: Graph, parents: tuple[int | None, ...], lam: float
) -> tuple[float, list[FloatArray]]:
    edges = graph.edge_map()
    children = tree_children(parents)
    kappa: dict[int, Survival] = {}
    index: list[FloatArray] = [np.empty(0)] * graph.n_nodes
    for v in bottom_up(parents):
        e = edges[(parents[v], v)]
        own = subtree_loss(lam * graph.nodes[v], [kappa[c] for c in children[v]])
        seen = Survival(own.z, e.transition @ own.values)  # rows: the parent's states
        index[v] = reservation_values(seen, (1.0 - lam) * e.cost)
        kappa[v] = capped(seen, index[v])
    root = min_of_independent([kappa[r] for r in children[None]])
    return float(root.integral()[0]), index


def solve_tree_recall(graph: Graph, lam: ArrayLike) -> TreeRecallSolution:
    """Solve the recall problem on a tree exactly for every ``lam`` (one pass per ``lam``)."""
    parents = tree_parents(graph)
    lams = check_lambda(lam)
    values = np.empty(lams.size)
    per_lam = []
    for j, lam_j in enumerate(lams):
        values[j], idx = _solve_tree_recall_one(graph, parents, float(lam_j))
        per_lam.append(idx)
    index = tuple(np.stack([idx[v] for idx in per_lam]) for v in range(graph.n_nodes))
    return TreeRecallSolution(lams, values, index, parents)


# -------------------------------------------------------------------------------- no recall


@dataclass(frozen=True)
class TreeNoRecallSolution(ForwardNoRecallSolution):
    """The optimal descending recall-free policy (``next_node[v]``: the child to run)."""


def _best_child(
    graph: Graph, kids: list[int], source: int | None, w: dict[int, FloatArray], kappa: FloatArray, rows: int
) -> tuple[FloatArray, IntArray]:
    """min over children c of ``k_c + T[s] . W_c``: values and argmin, (L, rows) each."""
    edges = graph.edge_map()
    best = np.full((kappa.size, rows), np.inf)
    arg = np.full(best.shape, -1, dtype=np.int64)
    for c in kids:  # increasing ids: ties go to the smallest
        e = edges[(source, c)]
        cont = w[c] @ e.transition.T + (kappa * e.cost)[:, None]
        better = cont < best
        best = np.where(better, cont, best)
        arg = np.where(better, c, arg)
    return best, arg


def solve_tree_no_recall(graph: Graph, lam: ArrayLike) -> TreeNoRecallSolution:
    """Solve the descending recall-free problem on a tree exactly for every ``lam``."""
    parents = tree_parents(graph)
    lams = check_lambda(lam)
    children = tree_children(parents)
    kappa = 1.0 - lams
    n = graph.n_nodes
    w: dict[int, FloatArray] = {}
    stop: list[BoolArray] = [np.empty(0, dtype=bool)] * n
    nxt: list[IntArray] = [np.empty(0, dtype=np.int64)] * n
    for v in bottom_up(parents):
        now = lams[:, None] * graph.nodes[v][None, :]
        best, arg = _best_child(graph, children[v], v, w, kappa, graph.nodes[v].size)
        stop[v] = now <= best
        nxt[v] = np.where(stop[v], -1, arg)
        w[v] = np.minimum(now, best)
    total, first = _best_child(graph, children[None], None, w, kappa, 1)
    return TreeNoRecallSolution(lams, total[:, 0], tuple(stop), tuple(nxt), first[:, 0])


# ------------------------------------------------------------------------------- evaluation

MAX_EVALUATION_STATES = 500_000


@dataclass
class Outcome:
    """Expected loss, expected cost (graph units), and per node the probability of being
    returned and of being run, from some information state on."""

    loss: float
    cost: float
    returned: FloatArray
    ran: FloatArray

    def add(self, other: Outcome, weight: float) -> None:
        self.loss += weight * other.loss
        self.cost += weight * other.cost
        self.returned += weight * other.returned
        self.ran += weight * other.ran


def better_node(graph: Graph, best: tuple[int, int] | None, v: int, s: int) -> tuple[int, int]:
    """The best (node, state) after seeing ``v`` in state ``s``; ties keep the earlier one."""
    if best is not None and graph.nodes[best[0]][best[1]] <= graph.nodes[v][s]:
        return best
    return (v, s)


def enumerate_tree_recall(graph: Graph, policy: TreeRecallPolicy) -> Outcome:
    """Exact outcome of a tree index policy by walking every reachable information state (the
    frontier with its parents' states, and the best node so far); exponential in the worst
    case, so it refuses more than :data:`MAX_EVALUATION_STATES` states."""
    into = {e.target: e for e in graph.edges}
    n = graph.n_nodes
    memo: dict[tuple[frozenset[tuple[int, int]], tuple[int, int] | None], Outcome] = {}

    def walk(run: dict[int, int], best: tuple[int, int] | None) -> Outcome:
        key = (frozenset((v, policy_state(v, run)) for v in policy.frontier(run)), best)
        if key in memo:
            return memo[key]
        if len(memo) >= MAX_EVALUATION_STATES:
            raise ChainError(
                "edges",
                f"the tree has more than {MAX_EVALUATION_STATES} reachable states to evaluate exactly",
            )
        best_loss = float("inf") if best is None else float(graph.nodes[best[0]][best[1]])
        v = policy.next_node(run, best_loss)
        if v == -1:
            assert best is not None
            out = Outcome(best_loss, 0.0, np.zeros(n), np.zeros(n))
            out.returned[best[0]] = 1.0
        else:
            e = into[v]
            out = Outcome(0.0, e.cost, np.zeros(n), np.zeros(n))
            out.ran[v] = 1.0
            for s, p in enumerate(e.transition[policy_state(v, run)]):
                if p > 0:
                    out.add(walk({**run, v: s}, better_node(graph, best, v, s)), float(p))
        memo[key] = out
        return out

    def policy_state(v: int, run: Mapping[int, int]) -> int:
        p = policy.parent[v]
        return 0 if p is None else run[p]

    return walk({}, None)


def propagate_forward_walk(graph: Graph, policy: ForwardNoRecallPolicy) -> Outcome:
    """Exact outcome of a recall-free forward walk (a descending tree policy, or a closure
    policy): probability mass flows from node to node along the edges the policy takes."""
    n = graph.n_nodes
    edges = graph.edge_map()
    first = edges[(None, policy.first)]
    mass = {policy.first: first.transition[0].copy()}
    out = Outcome(0.0, first.cost, np.zeros(n), np.zeros(n))
    for u in _walk_order(graph):
        if u not in mass:
            continue
        m = mass.pop(u)
        out.ran[u] = m.sum()
        stop = policy.stop[u]
        out.returned[u] = m[stop].sum()
        out.loss += float(m[stop] @ graph.nodes[u][stop])
        for v in np.unique(policy.next_nodes[u][~stop]):
            e = edges[(u, int(v))]
            moved = np.where(policy.next_nodes[u] == v, m, 0.0)
            out.cost += e.cost * moved.sum()
            mass[int(v)] = mass.get(int(v), 0.0) + moved @ e.transition
    return out


def _walk_order(graph: Graph) -> list[int]:
    """Nodes so that every edge goes forward: node order for closures, top-down for trees."""
    if graph.n_nodes == 1 or structure(graph) == "closure":
        return list(range(graph.n_nodes))
    return bottom_up(tree_parents(graph))[::-1]
