"""Exact solvers and evaluators for chains, trees and transitive closures: pure numpy, no I/O."""

from ttamer.solvers.aggregation import (
    AggregatedSolution,
    aggregate_chain,
    evaluate_aggregated_solution,
    solve_recall_aggregated,
)
from ttamer.solvers.closure import (
    ClosureNoRecallSolution,
    ClosureRecallPolicy,
    ClosureRecallSolution,
    ForwardNoRecallPolicy,
    solve_closure_no_recall,
    solve_closure_recall,
)
from ttamer.solvers.evaluate import (
    PolicyEvaluation,
    evaluate_no_recall_solution,
    evaluate_policy,
    evaluate_recall_solution,
    evaluate_stop_sets,
)
from ttamer.solvers.graph_eval import GraphEvaluation, evaluate_graph_policy
from ttamer.solvers.monte_carlo import MonteCarloResult, simulate
from ttamer.solvers.no_recall import NoRecallSolution, solve_no_recall
from ttamer.solvers.policy import ChainPolicy, StopSetPolicy, static_policy, threshold_policy
from ttamer.solvers.prophet import solve_prophet
from ttamer.solvers.recall import RecallIndexPolicy, RecallSolution, solve_recall
from ttamer.solvers.threshold import best_threshold, evaluate_thresholds, threshold_candidates
from ttamer.solvers.tree import (
    TreeNoRecallSolution,
    TreeRecallPolicy,
    TreeRecallSolution,
    solve_tree_no_recall,
    solve_tree_recall,
    tree_parents,
)

__all__ = [
    "AggregatedSolution",
    "ChainPolicy",
    "ClosureNoRecallSolution",
    "ClosureRecallPolicy",
    "ClosureRecallSolution",
    "ForwardNoRecallPolicy",
    "GraphEvaluation",
    "MonteCarloResult",
    "NoRecallSolution",
    "PolicyEvaluation",
    "RecallIndexPolicy",
    "RecallSolution",
    "StopSetPolicy",
    "TreeNoRecallSolution",
    "TreeRecallPolicy",
    "TreeRecallSolution",
    "aggregate_chain",
    "best_threshold",
    "evaluate_aggregated_solution",
    "evaluate_graph_policy",
    "evaluate_no_recall_solution",
    "evaluate_policy",
    "evaluate_recall_solution",
    "evaluate_stop_sets",
    "evaluate_thresholds",
    "simulate",
    "solve_closure_no_recall",
    "solve_closure_recall",
    "solve_no_recall",
    "solve_prophet",
    "solve_recall",
    "solve_recall_aggregated",
    "solve_tree_no_recall",
    "solve_tree_recall",
    "static_policy",
    "threshold_candidates",
    "threshold_policy",
    "tree_parents",
]
