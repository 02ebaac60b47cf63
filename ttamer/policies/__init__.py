"""Trace policies (README: traces): each sweeps a knob over a grid and decides, for every test sample,
the stage after which it stops and the stage whose answer it returns (0-based).

Each policy module registers its class (:func:`~ttamer.policies.registry.register_policy`);
importing this package imports them all. :data:`POLICIES` maps each policy name to its
constructor (a frozen dataclass whose fields are the policy's parameters, all with defaults), in
table order; :func:`make_policy` builds one by name; :func:`default_trace_policies` and
:func:`default_auto_candidates` are the default lists.
"""

from __future__ import annotations

from ttamer.policies.auto import AutoPolicy
from ttamer.policies.base import Decisions, Scores, ScoringContext, TracePolicy, first_true, score_decisions
from ttamer.policies.entropy import EntropyPolicy
from ttamer.policies.max_softmax import MaxSoftmaxPolicy
from ttamer.policies.no_recall import NoRecallPolicy
from ttamer.policies.oracle import OraclePolicy
from ttamer.policies.patience import PatiencePolicy
from ttamer.policies.per_stage_threshold import PerStageThresholdPolicy
from ttamer.policies.posterior import PosteriorNoRecallPolicy, PosteriorRecallPolicy
from ttamer.policies.recall import RecallPolicy
from ttamer.policies.registry import (
    PolicyEntry,
    default_auto_candidates,
    default_trace_policies,
    make_policy,
    policy_classes,
    policy_entries,
    register_policy,
)
from ttamer.policies.static import StaticPolicy
from ttamer.policies.threshold_with_recall import ThresholdWithRecallPolicy

POLICIES: dict[str, type[TracePolicy]] = policy_classes()
"""Every registered policy's class by name, in table order."""

__all__ = [
    "POLICIES",
    "AutoPolicy",
    "Decisions",
    "EntropyPolicy",
    "MaxSoftmaxPolicy",
    "NoRecallPolicy",
    "OraclePolicy",
    "PatiencePolicy",
    "PerStageThresholdPolicy",
    "PolicyEntry",
    "PosteriorNoRecallPolicy",
    "PosteriorRecallPolicy",
    "RecallPolicy",
    "Scores",
    "ScoringContext",
    "StaticPolicy",
    "ThresholdWithRecallPolicy",
    "TracePolicy",
    "default_auto_candidates",
    "default_trace_policies",
    "first_true",
    "make_policy",
    "policy_classes",
    "policy_entries",
    "register_policy",
    "score_decisions",
]
