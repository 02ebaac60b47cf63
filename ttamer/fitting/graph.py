"""Fitting graphs from a trace (README: graphs): the transitive closure of the trace's stages (stage
skipping) and trees over its stages (routing), with the same states and losses as
:func:`ttamer.fitting.chain.fit_chain`.

States and losses per stage are the chain fit's (quantile bins of a score, smoothed per-bin error
rates; the agreement feature needs the previous stage, which a skipping or routing policy may not
have run, so it is refused). Transitions are smoothed co-occurrence counts between the two stages
an edge joins, whatever lies between them: for a closure every pair ``u < v`` (and the root's
marginal of each stage), for a tree every parent and child.

Costs come from the trace's skip structure (:mod:`ttamer.model.skip_costs`), divided by the full
chain's cost as in the chain fit, so ``lam`` means the same for chains and graphs of one trace:
a closure edge ``u -> v`` costs the backbone segments after ``u`` and exit ``v``'s head, a tree
edge what running the child adds to its ancestors' run set.

The fitted models assume what the solvers assume (README: graphs): a closure's next state depends
on the last stage run only, and a tree's children are independent given their parent. Real
exits are correlated beyond that; the replay (:mod:`ttamer.evaluation.graph_replay`) scores the policies
on held-out samples, where any misfit shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ttamer.errors import FieldError
from ttamer.fitting.chain import (
    FitConfig,
    StageStates,
    assign_states,
    fit_stage_states,
    normalise_rows,
    transition_counts,
)
from ttamer.model.graph import Edge, Graph, Structure
from ttamer.model.skip_costs import SkipStructure, skip_cost_matrix, skip_structure, tree_edge_costs
from ttamer.traces.trace import Trace, TraceError

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class FittedGraph:
    """A graph fitted on a trace, with what maps new samples to its states.

    ``graph``: nodes are the trace's stages (same order and names). ``edges[i]``: interior bin
    edges of stage ``i``'s score. ``skips``: the trace's head costs and backbone groups (for the
    true cost of what a policy runs). ``parents``: each stage's parent for a tree, else None."""

    graph: Graph
    structure: Structure
    edges: tuple[FloatArray, ...]
    config: FitConfig
    skips: SkipStructure
    parents: tuple[int | None, ...] | None = None

    def states(self, trace: Trace) -> IntArray:
        """Each sample's state at each stage, shape (N, n)."""
        if trace.n_stages != self.graph.n_nodes:
            raise TraceError("pred", f"trace has {trace.n_stages} stages, the graph {self.graph.n_nodes}")
        return assign_states(trace, self.edges, self.config)

    def estimated_loss(self, trace: Trace) -> FloatArray:
        """The fitted loss of each sample at each stage: (N, n)."""
        return self.graph.state_losses(self.states(trace))


def _stage_fit(trace: Trace, config: FitConfig) -> StageStates:
    if config.agreement:
        raise FieldError(
            "agreement",
            "is a chain feature (agreement with the previous stage, which a skipping or routing "
            "policy may not run): set fit.agreement=false for graphs",
        )
    return fit_stage_states(trace, config)


def _root_edge(fit: StageStates, v: int, cost: float, prior: float) -> Edge:
    row = np.bincount(fit.states[:, v], minlength=fit.n_states[v]) + prior
    return Edge(None, v, cost, normalise_rows(row)[None, :])


def _edge(fit: StageStates, u: int, v: int, cost: float, prior: float) -> Edge:
    return Edge(u, v, cost, normalise_rows(transition_counts(fit.states, u, v, fit.n_states) + prior))


def _cost_scale(trace: Trace) -> float:
    total = float(trace.cost.sum())
    return total if total > 0 else 1.0


def fit_closure(trace: Trace, config: FitConfig, assume: str | None = None) -> FittedGraph:
    """The transitive closure of ``trace``'s stages fitted on it (the fit split). ``assume``:
    see :func:`ttamer.model.skip_costs.skip_structure` (traces without skip meta)."""
    fit = _stage_fit(trace, config)
    costs = skip_cost_matrix(trace, assume) / _cost_scale(trace)
    a, n = config.transition_prior, trace.n_stages
    edges = [_root_edge(fit, v, float(costs[0, v]), a) for v in range(n)]
    edges += [_edge(fit, u, v, float(costs[u + 1, v]), a) for u in range(n) for v in range(u + 1, n)]
    graph = Graph.build(list(fit.losses), edges, trace.stage_names, name="fitted closure")
    return FittedGraph(graph, "closure", fit.edges, config, skip_structure(trace, assume))


def check_parents(parents: Sequence[int | None], n: int) -> tuple[int | None, ...]:
    """Validate a tree given by each stage's parent (``None``: hangs from the root); a
    :class:`FieldError` on ``parents`` names the problem."""
    out = tuple(None if p is None else int(p) for p in parents)
    if len(out) != n:
        raise FieldError("parents", f"has {len(out)} entries for {n} stages")
    for v, p in enumerate(out):
        if p is not None and not 0 <= p < n:
            raise FieldError("parents", f"stage {v}: parent {p} is not a stage (0..{n - 1})")
        seen, q = {v}, p
        while q is not None:
            if q in seen:
                raise FieldError("parents", f"stage {v} lies on a cycle: a tree hangs from the root")
            seen.add(q)
            q = out[q]
    if all(p is not None for p in out):
        raise FieldError("parents", "no stage hangs from the root (None)")
    return out


def fit_tree(
    trace: Trace, parents: Sequence[int | None], config: FitConfig, assume: str | None = None
) -> FittedGraph:
    """The tree ``parents`` (0-based stage of each stage's parent, ``None`` for the root's
    children) over ``trace``'s stages, fitted on it."""
    tree = check_parents(parents, trace.n_stages)
    fit = _stage_fit(trace, config)
    skips = skip_structure(trace, assume)
    costs = tree_edge_costs(skips, tree) / _cost_scale(trace)
    a = config.transition_prior
    edges = [
        _root_edge(fit, v, float(costs[v]), a) if p is None else _edge(fit, p, v, float(costs[v]), a)
        for v, p in enumerate(tree)
    ]
    graph = Graph.build(list(fit.losses), edges, trace.stage_names, name="fitted tree")
    return FittedGraph(graph, "tree", fit.edges, config, skips, tree)
