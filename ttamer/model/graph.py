"""Graph instances beyond chains (README: graphs): trees and the transitive closure of a chain.

A graph has nodes ``0 .. n-1`` (0-based everywhere, as in the JSON arrays). Node ``v`` has
``K_v`` observable states and a loss table ``nodes[v]`` of shape ``(K_v,)``. An edge
``Edge(source, target, cost, transition)`` says how node ``target`` may be run: from the
virtual root (``source is None``; ``transition`` has one row, shape ``(1, K_target)``: the
distribution of the target's state) or after node ``source`` (shape ``(K_source, K_target)``,
row-stochastic: the target's state given the source's observed state). Running a node pays the
cost of the edge used. A policy must run at least one node.

Two structures are supported (:func:`structure`):

- ``"tree"``: every node has exactly one incoming edge and the edges hang from the root (no
  cycle); the policy may run any node whose parent has run, or stop;
- ``"closure"``: the transitive closure of a chain, nodes numbered in chain order: edges
  root→v for every v and u→v for every u < v, and nothing else; the policy walks forward.

A one-node graph is both and counts as ``"closure"``. Anything else is refused.

Files: JSON ``{"nodes": [{"losses": [...], "name": "..."}], "edges": [{"from": null | u,
"to": v, "cost": c, "transition": rows}], "name": "..."}`` or ``.npz`` with arrays
``node_<v>_losses``, ``edge_<e>_from`` (-1 for the root), ``edge_<e>_to``, ``edge_<e>_cost``,
``edge_<e>_transition`` and optional ``names`` (one string per node) and ``name``.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from ttamer.fileio import atomic_write_bytes, open_npz
from ttamer.loading import existing_file, load_json, refuse_booleans, scalar
from ttamer.model.chain import (
    Chain,
    ChainError,
    FloatArray,
    _as_float_array,
    _check_distribution,
    _check_finite_nonnegative,
    _frozen_copy,
    chain_from_json_dict,
    load_chain,
)

Structure = Literal["tree", "closure"]

DAG_REFUSAL = (
    "general DAGs are not supported (open in the paper): use a tree (every node has exactly one "
    "incoming edge) or the transitive closure of a chain (root->v for every v, u->v for every u < v)"
)


@dataclass(frozen=True)
class Edge:
    """Run ``target`` after ``source`` (``None``: from the virtual root) at ``cost``."""

    source: int | None
    target: int
    cost: float
    transition: FloatArray


@dataclass(frozen=True)
class Graph:
    """A validated graph instance. Build it with :meth:`Graph.build` (which validates)."""

    nodes: tuple[FloatArray, ...]
    names: tuple[str, ...]
    edges: tuple[Edge, ...]
    name: str = ""

    @classmethod
    def build(
        cls,
        nodes: Sequence[ArrayLike],
        edges: Sequence[Edge | tuple[int | None, int, float, ArrayLike]],
        names: Sequence[str] | None = None,
        name: str = "",
    ) -> Graph:
        """Validate and freeze; every error is a ChainError naming its field (0-based), e.g.
        ``nodes[2].losses`` or ``edges[3].transition``. ``edges`` holds :class:`Edge` objects
        or ``(source, target, cost, transition)`` tuples."""
        losses = _node_losses(nodes)
        n = len(losses)
        if names is None:
            name_list = [""] * n
        else:
            if len(names) != n:
                raise ChainError("names", f"has {len(names)} entries for {n} nodes")
            name_list = [str(x) for x in names]
        if edges is None or len(edges) == 0:
            raise ChainError("edges", "no edges: at least one edge from the root (from: null) is needed")
        out: list[Edge] = []
        seen: dict[tuple[int | None, int], int] = {}
        for e, raw_edge in enumerate(edges):
            out.append(_checked_edge(e, raw_edge, losses, seen))
        return cls(tuple(losses), tuple(name_list), tuple(out), str(name))

    @property
    def n_nodes(self) -> int:
        return len(self.nodes)

    @property
    def n_states(self) -> tuple[int, ...]:
        return tuple(int(x.size) for x in self.nodes)

    def support(self) -> FloatArray:
        """Sorted distinct loss values of all nodes, with 0 prepended: shape (G,)."""
        return np.unique(np.concatenate([np.zeros(1), *self.nodes]))

    def state_losses(self, states: ArrayLike) -> FloatArray:
        """The loss of each sample's state at each node: states (N, n) -> (N, n)."""
        st = np.asarray(states, dtype=np.int64)
        return np.stack([self.nodes[v][st[:, v]] for v in range(self.n_nodes)], axis=1)

    def edge(self, source: int | None, target: int) -> Edge:
        """The edge ``source -> target`` (``None``: the root); KeyError if there is none."""
        for e in self.edges:
            if e.source == source and e.target == target:
                return e
        raise KeyError((source, target))

    def edge_map(self) -> dict[tuple[int | None, int], Edge]:
        return {(e.source, e.target): e for e in self.edges}

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "nodes": [
                {"losses": x.tolist(), "name": nm} for x, nm in zip(self.nodes, self.names, strict=True)
            ],
            "edges": [
                {"from": e.source, "to": e.target, "cost": e.cost, "transition": e.transition.tolist()}
                for e in self.edges
            ],
            "name": self.name,
        }

def _node_losses(nodes: Sequence[ArrayLike]) -> list[FloatArray]:
    """Every node's losses, checked (non-empty, finite, >= 0) and frozen."""
    if nodes is None or len(nodes) == 0:
        raise ChainError("nodes", "the graph is empty: at least one node is needed")
    losses = []
    for v, raw in enumerate(nodes):
        field = f"nodes[{v}].losses"
        arr = _as_float_array(raw, field, 1)
        if arr.size == 0:
            raise ChainError(field, "node has no states")
        _check_finite_nonnegative(arr, field)
        losses.append(_frozen_copy(arr))
    return losses


def _checked_edge(
    e: int, raw_edge: Any, losses: list[FloatArray], seen: dict[tuple[int | None, int], int]
) -> Edge:
    """Edge ``e`` (an :class:`Edge` or a (source, target, cost, transition) tuple), checked
    against the nodes' state counts: no self-loop, not a duplicate of an edge in ``seen``
    ((source, target) -> edge number; ``e`` is added), a cost >= 0, a stochastic transition of
    shape (states of the source, or 1 from the root) x (states of the target)."""
    src: Any
    tgt: Any
    cost: Any
    trans: Any
    if isinstance(raw_edge, Edge):
        src, tgt, cost, trans = raw_edge.source, raw_edge.target, raw_edge.cost, raw_edge.transition
    else:
        try:
            src, tgt, cost, trans = raw_edge
        except (TypeError, ValueError):
            raise ChainError(
                f"edges[{e}]", "must be an Edge or a (source, target, cost, transition) tuple"
            ) from None
    n = len(losses)
    source = None if src is None else _node_index(src, n, f"edges[{e}].from")
    target = _node_index(tgt, n, f"edges[{e}].to")
    if source == target:
        raise ChainError(f"edges[{e}].to", f"is a self-loop on node {target}")
    key = (source, target)
    if key in seen:
        raise ChainError(f"edges[{e}]", f"duplicates edges[{seen[key]}] ({_fmt_edge(key)})")
    seen[key] = e
    c = _as_float_array(cost, f"edges[{e}].cost", 0) if _is_scalar(cost) else None
    if c is None:
        raise ChainError(f"edges[{e}].cost", f"must be a number, got {cost!r}")
    _check_finite_nonnegative(c.reshape(1), f"edges[{e}].cost")
    field = f"edges[{e}].transition"
    t = _as_float_array(trans, field, 2)
    rows = 1 if source is None else losses[source].size
    want = (rows, losses[target].size)
    if t.shape != want:
        what = "1 row (from the root)" if source is None else f"states of node {source}"
        raise ChainError(field, f"has shape {t.shape}, expected {want} ({what} x states of node {target})")
    _check_distribution(t, field)
    return Edge(source, target, float(c), _frozen_copy(t))



def _fmt_edge(key: tuple[int | None, int]) -> str:
    return f"{'root' if key[0] is None else key[0]}->{key[1]}"


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, (bool, str)) and np.ndim(value) == 0


def _node_index(value: Any, n: int, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ChainError(field, f"must be a node index (an integer), got {value!r}")
    v = int(value)
    if not 0 <= v < n:
        raise ChainError(field, f"node {v} does not exist (nodes are 0..{n - 1})")
    return v


# ------------------------------------------------------------------------------ structure


def structure(graph: Graph) -> Structure:
    """``"closure"`` or ``"tree"``; a ChainError on the field ``edges`` for anything else."""
    n = graph.n_nodes
    keys = {(e.source, e.target) for e in graph.edges}
    closure = {(None, v) for v in range(n)} | {(u, v) for v in range(n) for u in range(v)}
    if keys == closure:
        return "closure"
    incoming = [0] * n
    parent: list[int | None] = [None] * n
    for e in graph.edges:
        incoming[e.target] += 1
        parent[e.target] = e.source
    bad = [v for v in range(n) if incoming[v] != 1]
    if bad:
        v = bad[0]
        raise ChainError(
            "edges",
            f"node {v} has {incoming[v]} incoming edges and the edges are not the transitive closure "
            f"of a chain in node order; {DAG_REFUSAL}",
        )
    for v in range(n):  # every parent chain must reach the root within n steps
        u: int | None = v
        for _ in range(n + 1):
            if u is None:
                break
            u = parent[u]
        else:
            raise ChainError("edges", f"node {v} lies on a cycle (it never reaches the root); {DAG_REFUSAL}")
    return "tree"


def require_closure(graph: Graph) -> None:
    """Raise ChainError("edges", ...) unless ``graph`` is the transitive closure of a chain."""
    if structure(graph) != "closure":
        raise ChainError(
            "edges",
            "the graph is a tree, not the transitive closure of a chain "
            "(root->v for every v and u->v for every u < v)",
        )


def chain_to_graph(chain: Chain) -> Graph:
    """``chain`` as a path tree: root->0 (cost c_1, row = initial), i->i+1 (cost c_{i+2}, T)."""
    edges = [Edge(None, 0, float(chain.costs[0]), chain.initial[None, :])]
    edges += [Edge(i, i + 1, float(chain.costs[i + 1]), t) for i, t in enumerate(chain.transitions)]
    return Graph.build(chain.losses, edges, name=chain.name)


def tree_as_chain(graph: Graph) -> Chain | None:
    """The chain of a path tree (root->a->b->...; a one-node graph included) in path order,
    else ``None`` (a branching tree, or a closure of more than one node)."""
    n = graph.n_nodes
    children: dict[int | None, list[Edge]] = {}
    for e in graph.edges:
        children.setdefault(e.source, []).append(e)
    if len(graph.edges) != n or any(len(c) != 1 for c in children.values()):
        return None
    order: list[Edge] = []
    u: int | None = None
    while u in children and len(order) <= n:
        e = children[u][0]
        order.append(e)
        u = e.target
    if len(order) != n or len({e.target for e in order}) != n:
        return None
    return Chain.build(
        [graph.nodes[e.target] for e in order],
        order[0].transition[0],
        [e.transition for e in order[1:]],
        [e.cost for e in order],
        name=graph.name,
    )


# ---------------------------------------------------------------------------------- files


def graph_from_json_dict(data: Any) -> Graph:
    if not isinstance(data, dict):
        raise ChainError("file", "a graph file holds one JSON object")
    for key in ("nodes", "edges"):
        if key not in data:
            raise ChainError(key, "is missing")
        if not isinstance(data[key], list):
            raise ChainError(key, "must be a list of objects")
    losses, names = [], []
    for v, node in enumerate(data["nodes"]):
        if not isinstance(node, dict):
            raise ChainError(f"nodes[{v}]", 'must be an object {"losses": [...], "name": ...}')
        if "losses" not in node:
            raise ChainError(f"nodes[{v}].losses", "is missing")
        refuse_booleans(node["losses"], f"nodes[{v}].losses", ChainError)
        losses.append(node["losses"])
        names.append(str(node.get("name", "")))
    edges: list[tuple[Any, Any, Any, Any]] = []
    for e, edge in enumerate(data["edges"]):
        if not isinstance(edge, dict):
            raise ChainError(f"edges[{e}]", 'must be an object {"from", "to", "cost", "transition"}')
        for key in ("from", "to", "cost", "transition"):
            if key not in edge:
                raise ChainError(f"edges[{e}].{key}", "is missing")
        for key in ("cost", "transition"):
            refuse_booleans(edge[key], f"edges[{e}].{key}", ChainError)
        edges.append((edge["from"], edge["to"], edge["cost"], edge["transition"]))
    return Graph.build(losses, edges, names, str(data.get("name", "")))


GRAPH_KEY = re.compile(r"(node)_(\d+)_(losses)|(edge)_(\d+)_(from|to|cost|transition)")


def _graph_npz_ids(keys: set[str]) -> tuple[list[int], list[int]]:
    """Node and edge ids of a graph ``.npz``; any other ``node_``/``edge_`` key is refused."""
    nodes, edges = set(), set()
    for key in sorted(keys):
        m = GRAPH_KEY.fullmatch(key)
        if m is None:
            if key.startswith(("node_", "edge_")):
                raise ChainError(
                    key, "is not a graph array (node_<v>_losses, edge_<e>_{from,to,cost,transition})"
                )
            continue
        if m.group(1):
            nodes.add(int(m.group(2)))
        else:
            edges.add(int(m.group(5)))
    return sorted(nodes), sorted(edges)


def _read_graph_npz(path: Path) -> Graph:
    with open_npz(path, ChainError) as npz:
        keys = set(npz.files)
        nodes, ids = _graph_npz_ids(keys)
        if nodes != list(range(len(nodes))) or not nodes:
            raise ChainError("node_0_losses", f"nodes must be numbered 0..n-1, found {nodes}")
        if ids != list(range(len(ids))):
            raise ChainError("edge_0_to", f"edges must be numbered 0..m-1, found {ids}")
        edges = []
        for e in ids:
            for part in ("from", "to", "cost", "transition"):
                if f"edge_{e}_{part}" not in keys:
                    raise ChainError(f"edge_{e}_{part}", "is missing")
            src = scalar(npz, f"edge_{e}_from", "integer")
            edges.append(
                (
                    None if src == -1 else src,
                    scalar(npz, f"edge_{e}_to", "integer"),
                    scalar(npz, f"edge_{e}_cost"),
                    npz[f"edge_{e}_transition"],
                )
            )
        names = [str(x) for x in np.atleast_1d(npz["names"]).tolist()] if "names" in keys else None
        name = scalar(npz, "name", "text") if "name" in keys else ""
        return Graph.build([npz[f"node_{v}_losses"] for v in nodes], edges, names, name)


def load_graph(path: str | os.PathLike[str]) -> Graph:
    """Read a graph from ``.json`` or ``.npz`` (see the module docstring)."""
    p = existing_file(path, ChainError)
    if p.suffix == ".npz":
        return _read_graph_npz(p)
    return graph_from_json_dict(load_json(p, ChainError))


def save_graph(graph: Graph, path: str | os.PathLike[str]) -> None:
    """Write ``graph`` atomically as ``.json`` or ``.npz`` (chosen by the suffix)."""
    p = Path(path)
    if p.suffix == ".npz":
        arrays: dict[str, Any] = {f"node_{v}_losses": x for v, x in enumerate(graph.nodes)}
        for i, e in enumerate(graph.edges):
            arrays[f"edge_{i}_from"] = np.array(-1 if e.source is None else e.source)
            arrays[f"edge_{i}_to"] = np.array(e.target)
            arrays[f"edge_{i}_cost"] = np.array(e.cost)
            arrays[f"edge_{i}_transition"] = e.transition
        arrays["names"] = np.array(graph.names, dtype=str)
        arrays["name"] = np.array(graph.name)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(p, buf.getvalue())
    else:
        atomic_write_bytes(p, (json.dumps(graph.to_json_dict()) + "\n").encode())


def load_instance(path: str | os.PathLike[str]) -> Chain | Graph:
    """A chain or a graph file, told apart by content: a JSON object with ``nodes`` or
    ``edges``, or an ``.npz`` holding ``node_0_losses``, is a graph."""
    p = existing_file(path, ChainError)
    if p.suffix == ".npz":
        with open_npz(p, ChainError) as npz:
            is_graph = any(k.startswith(("node_", "edge_")) for k in npz.files)
        return _read_graph_npz(p) if is_graph else load_chain(p)
    data = load_json(p, ChainError)
    if isinstance(data, dict) and ("nodes" in data or "edges" in data):
        return graph_from_json_dict(data)
    return chain_from_json_dict(data)
