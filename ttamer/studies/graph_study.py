"""Graph studies on a trace (README: graphs): stage skipping (the transitive closure of the trace's
stages) and routing (a tree over its stages), scored like the chain policies on repeated random
fit/test splits, in the same tidy points table (:data:`ttamer.evaluation.scoring.COLUMNS`).

Policies (knob ``lam`` unless said):

=========================== ==================================================================
``skip_recall``             closure index policy: any later exit next, or stop; best exit seen
``skip_no_recall``          closure optimal stopping without recall: returns the last exit run
``single_exit``             one exit alone, reached directly (its backbone, its head only);
                            knob: the 1-based stage
``tree_recall``             tree index policy (Theorem 5.1): any node whose parent ran
``tree_no_recall``          the best descending recall-free policy: stop, or run a child
``chain_recall_best_order`` the chain recall policy on the order of the stages (all
                            permutations) whose in-sample hull area on the fit split is largest
(chain policies)            ``recall``, ``no_recall``, ``static`` ... on the trace's own order
=========================== ==================================================================

Costs are the true costs of what each policy runs (:func:`ttamer.model.skip_costs.run_set_cost`, in
the trace's unit): a request pays the heads of the exits it runs and each backbone segment once.
Besides the points, ``usage`` records, per policy, knob, split and stage, the fraction of test
requests that ran the stage, got its answer, and skipped it (did not run it but ran a later
stage): where skipping happens. ``orders`` lists the chain orders tried on each fit split.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ttamer.errors import FieldError
from ttamer.evaluation.graph_replay import (
    GraphWalks,
    replay_closure_recall,
    replay_forward_no_recall,
    replay_tree_recall,
)
from ttamer.evaluation.pareto import DEFAULT_DELTAS, area_under_hull, hull_table, summarise, upper_hull
from ttamer.evaluation.results import ORDER_COLUMNS, USAGE_COLUMNS
from ttamer.evaluation.scoring import COLUMNS, ScoringConfig, points_block, score_policies
from ttamer.fitting.chain import FitConfig, fit_chain
from ttamer.fitting.graph import FittedGraph, check_parents, fit_closure, fit_tree
from ttamer.model.skip_costs import independent_meta, run_set_cost, skip_cost_matrix, skip_structure
from ttamer.policies.base import Scores, mean_at, score_decisions
from ttamer.policies.grids import LambdaGrid
from ttamer.policies.recall import recall_decisions
from ttamer.solvers import (
    solve_closure_no_recall,
    solve_closure_recall,
    solve_tree_no_recall,
    solve_tree_recall,
)
from ttamer.traces.trace import Trace, repeated_splits

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

STRUCTURES = ("skip", "tree")
MAX_ORDER_STAGES = 7  # 5,040 orders


@dataclass(frozen=True)
class GraphStudyConfig:
    """``structure``: ``skip`` (closure) or ``tree`` (with ``parents``: each stage's parent,
    ``None`` for the root). ``chain_policies``: chain policies scored alongside (registry
    names; ``static`` is the single-stage reference of the summary). ``chain_orders``: also score
    the best chain order chosen on each fit split (tree studies of separate models).
    ``lambdas``: the graph policies' ``lam`` grid. The rest as in
    :class:`ttamer.evaluation.scoring.ScoringConfig` and
    :class:`ttamer.studies.trace_study.TraceStudyConfig`."""

    structure: str = "skip"
    parents: tuple[int | None, ...] | None = None
    chain_policies: tuple[str, ...] = ("recall", "no_recall", "static")
    chain_orders: bool = False
    lambdas: LambdaGrid = field(default_factory=LambdaGrid)
    n_splits: int = 5
    fit_fraction: float = 0.5
    seed: int = 0
    fit_config: FitConfig = field(default_factory=FitConfig)
    reference: Literal["best_stage", "last_stage"] = "best_stage"
    deltas: tuple[float, ...] = DEFAULT_DELTAS
    progress: bool = True

    def __post_init__(self) -> None:
        if self.structure not in STRUCTURES:
            raise FieldError("structure", f"must be one of {' | '.join(STRUCTURES)}, got {self.structure!r}")
        if self.structure == "tree" and self.parents is None:
            raise FieldError("parents", "a tree study needs each stage's parent (null for the root)")
        if "static" not in self.chain_policies:
            raise FieldError("chain_policies", "must include static (the single-stage reference)")
        ScoringConfig(self.chain_policies, self.n_splits, self.fit_fraction)  # same checks


@dataclass(frozen=True)
class GraphStudyResult:
    """``points``, ``summary``, ``hulls`` as in a trace study; ``usage`` and ``orders`` (empty
    unless ``chain_orders``): see the module docstring."""

    points: pd.DataFrame
    summary: pd.DataFrame
    hulls: pd.DataFrame
    usage: pd.DataFrame
    orders: pd.DataFrame


@dataclass(frozen=True)
class Scored:
    """One policy on one split: the points block and the usage block."""

    points: dict[str, NDArray[np.generic]]
    usage: pd.DataFrame


def score_walks(name: str, walks: GraphWalks, fitted: FittedGraph, test: Trace, split: int) -> Scored:
    """Accuracy of the returned stages and true cost of the stages run, per ``lam``."""
    rows = np.arange(test.n_samples)[None, :]
    accuracy = test.correct[rows, walks.returned].mean(axis=1)
    cost = run_set_cost(fitted.skips, walks.ran).mean(axis=1)
    returned = np.stack([(walks.returned == v).mean(axis=1) for v in range(test.n_stages)], axis=1)
    estimate = mean_at(fitted.estimated_loss(test), walks.returned)
    return Scored(
        points_block(name, "lam", _scores(walks.lam, accuracy, cost, test), split, test, estimate),
        _usage(name, walks.lam, split, walks.ran, returned, test.stage_names),
    )


def skipped(ran: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """(..., n): the stage did not run but a later one did."""
    later = np.zeros_like(ran)
    later[..., :-1] = np.logical_or.accumulate(ran[..., :0:-1], axis=-1)[..., ::-1]
    return np.asarray(~ran & later)


def _scores(knobs: FloatArray, accuracy: FloatArray, mean_cost: FloatArray, test: Trace) -> Scores:
    """Per knob: accuracy and mean cost (trace units), with the cost over the full chain's."""
    total = float(test.cost.sum())
    normalized = mean_cost / total if total > 0 else np.zeros(knobs.size)  # free cascade: 0
    return Scores(np.asarray(knobs, dtype=np.float64), accuracy, mean_cost, normalized)


def _usage(
    name: str,
    knobs: FloatArray,
    split: int,
    ran: NDArray[np.bool_],
    returned: FloatArray,
    names: tuple[str, ...],
) -> pd.DataFrame:
    """Long table from the stages run (M, N, n) and the returned fractions (M, n)."""
    m, _, n = ran.shape
    skip = skipped(ran).mean(axis=1)
    ran = ran.mean(axis=1)
    return pd.DataFrame(
        {
            "policy": name,
            "knob": np.repeat(knobs, n),
            "split": split,
            "stage": np.tile(np.arange(1, n + 1), m),
            "stage_name": np.tile(np.asarray(names, dtype=object), m),
            "run_fraction": ran.reshape(-1),
            "returned_fraction": returned.reshape(-1),
            "skipped_fraction": skip.reshape(-1),
        },
        columns=list(USAGE_COLUMNS),
    )


def single_exits(fitted: FittedGraph, test: Trace, split: int) -> Scored:
    """Each exit run alone from the root: accuracy of the stage, cost of reaching it directly."""
    n = test.n_stages
    alone = np.eye(n, dtype=bool)
    cost = run_set_cost(fitted.skips, alone)
    knobs = np.arange(1, n + 1, dtype=np.float64)
    block = points_block(
        "single_exit", "stage", _scores(knobs, test.correct.mean(axis=0), cost, test), split, test
    )
    usage = _usage("single_exit", knobs, split, alone[:, None, :], alone.astype(float), test.stage_names)
    return Scored(block, usage)


def graph_policies(fitted: FittedGraph, lams: FloatArray, states: IntArray) -> dict[str, GraphWalks]:
    """Replayed walks of the structure's recall and recall-free policies."""
    g = fitted.graph
    if fitted.structure == "closure":
        return {
            "skip_recall": replay_closure_recall(g, solve_closure_recall(g, lams), states),
            "skip_no_recall": replay_forward_no_recall(g, solve_closure_no_recall(g, lams), states),
        }
    return {
        "tree_recall": replay_tree_recall(g, solve_tree_recall(g, lams), states),
        "tree_no_recall": replay_forward_no_recall(g, solve_tree_no_recall(g, lams), states),
    }


# ------------------------------------------------------------------------------ chain orders


def reorder_stages(trace: Trace, order: tuple[int, ...]) -> Trace:
    """The trace with its stages in ``order`` (separate models only: a shared backbone has one
    order)."""
    s = skip_structure(trace, "independent")
    if np.unique(s.group).size != trace.n_stages or (s.head > 0).any():
        raise FieldError("chain_orders", "reordering needs separate models (one backbone group per stage)")
    idx = np.asarray(order)
    return Trace.build(
        trace.labels,
        trace.pred[:, idx],
        trace.conf[:, idx],
        trace.cost[idx],
        [trace.stage_names[i] for i in idx],
        trace.cost_unit,
        None if trace.probs is None else trace.probs[:, idx],
        {**trace.meta, **independent_meta(trace.n_stages)},
    )


def _recall_scores(fit: Trace, test: Trace, config: FitConfig, lams: FloatArray) -> Scores:
    """Chain recall fitted on ``fit``, scored on ``test``, per ``lam``."""
    fitted = fit_chain(fit, config)
    return score_decisions(recall_decisions(fitted.chain, fitted.states(test), lams), test)


def best_chain_order(
    fit: Trace, test: Trace, config: GraphStudyConfig, split: int
) -> tuple[Scored, pd.DataFrame]:
    """Every order of the stages: chain recall fitted and scored in-sample on ``fit``; the order
    of largest hull area (normalised cost from the cheapest stage to 1) is scored on ``test``."""
    n = fit.n_stages
    if n > MAX_ORDER_STAGES:
        raise FieldError(
            "chain_orders", f"{n} stages have too many orders (at most {MAX_ORDER_STAGES} stages)"
        )
    lams = config.lambdas.lambdas()
    lo = float(fit.cost.min() / fit.cost.sum())
    rows = []
    for order in itertools.permutations(range(n)):
        reordered = reorder_stages(fit, order)
        s = _recall_scores(reordered, reordered, config.fit_config, lams)
        area = area_under_hull(upper_hull(s.normalized_cost, s.accuracy), lo, 1.0)
        rows.append((split, ">".join(fit.stage_names[i] for i in order), area, order))
    best = max(range(len(rows)), key=lambda i: (rows[i][2], -i))
    order = rows[best][3]
    chosen = _recall_scores(reorder_stages(fit, order), reorder_stages(test, order), config.fit_config, lams)
    block = points_block("chain_recall_best_order", "lam", chosen, split, test)
    table = pd.DataFrame([(*r[:3], i == best) for i, r in enumerate(rows)], columns=list(ORDER_COLUMNS))
    return Scored(block, pd.DataFrame(columns=list(USAGE_COLUMNS))), table


# ------------------------------------------------------------------------------------ study


def _fit(trace: Trace, config: GraphStudyConfig) -> FittedGraph:
    if config.structure == "skip":
        return fit_closure(trace, config.fit_config)
    assert config.parents is not None
    return fit_tree(trace, config.parents, config.fit_config)


def run_graph_split(
    fit: Trace, test: Trace, config: GraphStudyConfig, split: int
) -> tuple[list[Scored], pd.DataFrame]:
    """Every graph policy (and the best chain order) fitted on ``fit`` and scored on ``test``."""
    fitted = _fit(fit, config)
    states = fitted.states(test)
    walks = graph_policies(fitted, config.lambdas.lambdas(), states)
    scored = [score_walks(name, w, fitted, test, split) for name, w in walks.items()]
    if config.structure == "skip":
        scored.append(single_exits(fitted, test, split))
    orders = pd.DataFrame(columns=list(ORDER_COLUMNS))
    if config.chain_orders:
        best, orders = best_chain_order(fit, test, config, split)
        scored.append(best)
    return scored, orders


def run_graph_study(
    trace: Trace, config: GraphStudyConfig, on_result: Callable[[dict[str, Any]], None] | None = None
) -> GraphStudyResult:
    """Score the graph policies and the chain policies on the same random splits of ``trace``."""
    from tqdm import tqdm

    if config.structure == "tree":
        check_parents(config.parents or (), trace.n_stages)
    skip_cost_matrix(trace)  # the trace must record its skip structure (clear error otherwise)
    if config.chain_orders:  # refused before any work when the stages share a backbone
        reorder_stages(trace, tuple(range(trace.n_stages)))
    scoring = ScoringConfig(
        config.chain_policies,
        config.n_splits,
        config.fit_fraction,
        config.seed,
        config.fit_config,
        progress=config.progress,
    )
    chain_points = score_policies(trace, scoring, on_result=on_result)
    splits = repeated_splits(trace.n_samples, config.n_splits, config.fit_fraction, config.seed)
    blocks, usage, orders = [], [], []
    show = config.progress and sys.stderr.isatty()
    for r, (fit_idx, test_idx) in enumerate(
        tqdm(splits, desc=f"{config.structure} study", unit="split", disable=not show)
    ):
        scored, table = run_graph_split(trace.subset(fit_idx), trace.subset(test_idx), config, r)
        for s in scored:
            blocks.append(s.points)
            usage.append(s.usage)
            if on_result is not None:
                on_result(s.points)
        orders.append(table)
    graph_points = pd.DataFrame(
        {c: np.concatenate([b[c] for b in blocks]) for c in COLUMNS}, columns=list(COLUMNS)
    )
    points = pd.concat([chain_points, graph_points], ignore_index=True)
    summary = summarise(points, reference=config.reference, deltas=config.deltas)
    return GraphStudyResult(
        points,
        summary,
        hull_table(points),
        pd.concat(usage, ignore_index=True),
        pd.concat(orders, ignore_index=True),
    )
