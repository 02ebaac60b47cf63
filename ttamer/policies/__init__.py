"""Trace policies (README: traces): each sweeps a knob over a grid and decides, for every test sample,
the stage after which it stops and the stage whose answer it returns (0-based).

:data:`POLICIES` maps each policy name to its constructor (a frozen dataclass whose fields are
the policy's parameters, all with defaults); :func:`make_policy` builds one by name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ttamer.errors import FieldError
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
from ttamer.policies.static import StaticPolicy
from ttamer.policies.threshold_with_recall import ThresholdWithRecallPolicy

POLICIES: dict[str, Callable[..., TracePolicy]] = {
    "recall": RecallPolicy,
    "no_recall": NoRecallPolicy,
    "posterior_recall": PosteriorRecallPolicy,
    "posterior_no_recall": PosteriorNoRecallPolicy,
    "max_softmax": MaxSoftmaxPolicy,
    "entropy": EntropyPolicy,
    "patience": PatiencePolicy,
    "per_stage_threshold": PerStageThresholdPolicy,
    "threshold_with_recall": ThresholdWithRecallPolicy,
    "static": StaticPolicy,
    "oracle": OraclePolicy,
    "auto": AutoPolicy,
}


def make_policy(name: str, **params: Any) -> TracePolicy:
    """The policy ``name`` with ``params`` overriding its defaults (FieldError on bad input)."""
    if name not in POLICIES:
        raise FieldError("policies", f"unknown policy {name!r}; valid: {', '.join(POLICIES)}")
    try:
        return POLICIES[name](**params)
    except TypeError as exc:  # an unknown parameter name
        raise FieldError("policies", f"{name}: {exc}") from None


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
    "PosteriorNoRecallPolicy",
    "PosteriorRecallPolicy",
    "RecallPolicy",
    "Scores",
    "ScoringContext",
    "StaticPolicy",
    "ThresholdWithRecallPolicy",
    "TracePolicy",
    "first_true",
    "make_policy",
    "score_decisions",
]
