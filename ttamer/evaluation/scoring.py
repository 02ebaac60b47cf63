"""Score trace policies on fit/test splits of a trace (README: traces): the tidy results table.

Each policy is tuned (and the chain fitted) on a fit split and scored on the disjoint test split.
Either a separate fit trace is given (the policies are fitted on all of it and scored on all of
the scored trace: ``split = 0``), or ``n_splits`` random splits of the one trace give error bars
(split ``r`` is the ``r``-th of :func:`ttamer.traces.trace.repeated_splits`).

One row per (split, policy, knob value):

================== ===========================================================================
``policy``         the policy's name
``knob``           the knob value (lam, threshold, K, stage, budget, ... per policy)
``knob_name``      what the knob is
``accuracy``       accuracy of the returned predictions on the test split
``error_rate``     1 - accuracy
``mean_cost``      mean cost per test sample, in ``cost_unit``
``normalized_cost`` ``mean_cost`` over the full chain's cost
``split``          the split index (0 with a fit trace)
``n_test``         test samples
``cost_unit``      the trace's cost unit
``predicted_accuracy`` for a policy with a fitted model (recall, no_recall, the posterior
                   policies), 1 - the model's mean estimated error of the answers it returned
                   on the test split; empty (NaN) for the others
``selected``       what cross-validation on the fit split chose (hyper-parameters, or for
                   ``auto`` the policy); empty when nothing was chosen
``target``         what accuracy is measured against: ``label`` (the ground truth) or
                   ``last_stage`` (agreement with the last stage's prediction)
================== ===========================================================================

With ``target="last_stage"`` the trace's labels are replaced by its last stage's predictions
before anything is fitted or scored: accuracy is then agreement with the full backbone, as
early-exit serving papers (Apparate, most likely T-Tamer) measure it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from ttamer.errors import FieldError
from ttamer.fitting.chain import FitConfig
from ttamer.policies.base import Decisions, Scores, ScoringContext, TracePolicy, score_decisions
from ttamer.policies.registry import default_trace_policies, make_policy
from ttamer.traces.trace import Trace, TraceError, repeated_splits

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = (
    "policy",
    "knob",
    "knob_name",
    "accuracy",
    "error_rate",
    "mean_cost",
    "normalized_cost",
    "split",
    "n_test",
    "cost_unit",
    "predicted_accuracy",
    "selected",
    "target",
)

TARGETS = ("label", "last_stage")


@dataclass(frozen=True)
class ScoringConfig:
    """Which policies to score on a trace, and how.

    ``policies``: registry names (:data:`ttamer.policies.POLICIES`) or policy objects; default
    :func:`ttamer.policies.default_trace_policies`.
    ``n_splits``: random fit/test splits (ignored when a fit trace is given).
    ``fit_fraction``: share of the samples in each fit split. ``seed``: the splits' seed.
    ``fit_config``: how the chain is fitted. ``progress``: show a progress bar (only on a TTY).
    ``target``: ``label`` or ``last_stage`` (accuracy as agreement with the last stage).
    ``reference``: the accuracy savings are read at (``best_stage`` or ``last_stage``), which
    policies that cross-validate on the fit split aim at too. ``skip_unsupported``: leave out
    (with a note, see :func:`unsupported`) the policies the trace cannot support instead of
    failing; meant for the default policy set."""

    policies: tuple[str | TracePolicy, ...] = field(default_factory=default_trace_policies)
    n_splits: int = 5
    fit_fraction: float = 0.5
    seed: int = 0
    fit_config: FitConfig = field(default_factory=FitConfig)
    progress: bool = True
    target: str = "label"
    reference: str = "best_stage"
    skip_unsupported: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or int(self.seed) != self.seed or self.seed < 0:
            raise FieldError("seed", f"must be an integer >= 0, got {self.seed}")
        if self.reference not in ("best_stage", "last_stage"):
            raise FieldError("reference", f"must be best_stage or last_stage, got {self.reference!r}")
        if self.target not in TARGETS:
            raise FieldError("target", f"must be one of {TARGETS}, got {self.target!r}")
        if isinstance(self.policies, str):
            raise FieldError("policies", "must be a sequence of policy names, not one string")
        object.__setattr__(self, "policies", tuple(self.policies))
        if not self.policies:
            raise FieldError("policies", "no policy given")
        if int(self.n_splits) != self.n_splits or self.n_splits < 1:
            raise FieldError("n_splits", f"must be a positive integer, got {self.n_splits}")
        if not 0.0 < self.fit_fraction < 1.0:
            raise FieldError("fit_fraction", f"must lie strictly between 0 and 1, got {self.fit_fraction}")


def resolve_policies(policies: tuple[str | TracePolicy, ...]) -> list[TracePolicy]:
    """Policy objects for registry names (objects pass through); unknown or repeated names are
    refused with a :class:`FieldError` on ``policies``."""
    out = [make_policy(p) if isinstance(p, str) else p for p in policies]
    names = [p.name for p in out]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise FieldError("policies", f"policy named more than once: {', '.join(dups)}")
    return out


def score_policies(
    trace: Trace,
    config: ScoringConfig,
    fit_trace: Trace | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> pd.DataFrame:
    """Score every policy of ``config`` on ``trace``; one tidy row per (split, policy, knob).

    With ``fit_trace``, every policy is fitted on it and scored on all of ``trace`` (split 0);
    otherwise on ``config.n_splits`` random fit/test splits of ``trace``. ``on_result`` (if
    given) receives each (split, policy) block as a dict of columns, e.g. for logging."""
    import pandas as pd
    from tqdm import tqdm

    policies = _runnable_policies(config, trace)
    trace = retarget(trace, config.target)
    fit_trace = None if fit_trace is None else retarget(fit_trace, config.target)
    splits = fit_test_splits(trace, config, fit_trace)
    show = config.progress and sys.stderr.isatty()
    blocks: list[dict[str, Any]] = []
    with tqdm(total=len(splits) * len(policies), desc="scoring", unit="policy", disable=not show) as bar:
        for r, split in enumerate(splits):
            fit, test = split()
            ctx = ScoringContext(fit, test, config.fit_config, reference=config.reference)
            for policy in policies:
                bar.set_postfix_str(f"split {r} {policy.name}", refresh=False)
                block = score_policy(policy, ctx, r)
                blocks.append(block)
                if on_result is not None:
                    on_result(block)
                bar.update(1)
    columns = {c: np.concatenate([b[c] for b in blocks]) for c in COLUMNS}
    return pd.DataFrame(columns, columns=list(COLUMNS))


def score_policy(policy: TracePolicy, ctx: ScoringContext, split: int) -> dict[str, NDArray[np.generic]]:
    """One policy's rows of the points table on the fit/test split ``ctx`` (split index ``split``)."""
    decisions = policy.decide(ctx)
    _check_decisions(decisions, policy, ctx.test)
    scores = score_decisions(decisions, ctx.test)
    est, chosen = decisions.estimated_error, decisions.selected
    return points_block(policy.name, policy.knob_name, scores, split, ctx.test, est, chosen)


def _runnable_policies(config: ScoringConfig, trace: Trace) -> list[TracePolicy]:
    """The policies of ``config``; with ``skip_unsupported``, less those ``trace`` cannot support
    (with a note on stderr)."""
    policies = resolve_policies(config.policies)
    if not config.skip_unsupported:
        return policies
    skipped = unsupported(policies, trace, config.fit_config)
    if skipped:
        notes = "; ".join(f"{name} ({why})" for name, why in skipped.items())
        print(f"note: skipped the policies this trace cannot support: {notes}", file=sys.stderr)
    return [p for p in policies if p.name not in skipped]


def fit_test_splits(
    trace: Trace, config: ScoringConfig, fit_trace: Trace | None = None
) -> list[Callable[[], tuple[Trace, Trace]]]:
    """The (fit, test) traces of every split, each built when called: with ``fit_trace`` the one
    split (``fit_trace``, ``trace``); otherwise ``config.n_splits`` random splits of ``trace``
    (:func:`ttamer.traces.trace.repeated_splits`)."""
    if fit_trace is not None:
        if fit_trace.n_stages != trace.n_stages:
            raise TraceError(
                "pred",
                f"the fit trace has {fit_trace.n_stages} stages but the scored trace has {trace.n_stages}",
            )
        fixed = fit_trace, trace
        return [lambda: fixed]
    index_splits = repeated_splits(trace.n_samples, config.n_splits, config.fit_fraction, config.seed)

    def split(r: int) -> tuple[Trace, Trace]:
        fit_idx, test_idx = index_splits[r]
        return trace.subset(fit_idx), trace.subset(test_idx)

    return [partial(split, r) for r in range(len(index_splits))]


def points_block(
    policy: str,
    knob_name: str,
    scores: Scores,
    split: int,
    test: Trace,
    estimated_error: NDArray[np.float64] | None = None,
    selected: str = "",
) -> dict[str, NDArray[np.generic]]:
    """One policy's rows of the points table (:data:`COLUMNS`), one per knob value;
    ``estimated_error`` (M,) gives ``predicted_accuracy`` (NaN without it)."""
    m = scores.knobs.size
    est = np.full(m, np.nan) if estimated_error is None else np.asarray(estimated_error, dtype=np.float64)
    return {
        "policy": np.full(m, policy, dtype=object),
        "knob": np.asarray(scores.knobs, dtype=np.float64),
        "knob_name": np.full(m, knob_name, dtype=object),
        "accuracy": scores.accuracy,
        "error_rate": 1.0 - scores.accuracy,
        "mean_cost": scores.mean_cost,
        "normalized_cost": scores.normalized_cost,
        "split": np.full(m, split, dtype=np.int64),
        "n_test": np.full(m, test.n_samples, dtype=np.int64),
        "cost_unit": np.full(m, test.cost_unit, dtype=object),
        "predicted_accuracy": 1.0 - est,
        "selected": np.full(m, selected, dtype=object),
        "target": np.full(m, test.meta.get("target", "label"), dtype=object),
    }


def unsupported(policies: list[TracePolicy], trace: Trace, fit_config: FitConfig) -> dict[str, str]:
    """Policy name -> why the trace cannot support it: a score (entropy, margin) that needs
    class probabilities the trace lacks. ``auto`` leaves such candidates out by itself."""
    from ttamer.traces.trace import stage_scores

    probe = trace.subset(np.arange(1))
    out = {}
    for policy in policies:
        score = "entropy" if policy.name == "entropy" else getattr(policy, "score", None)
        if policy.name in ("recall", "no_recall"):
            score = fit_config.score
        if score is None:
            continue
        try:
            stage_scores(probe, str(score))
        except TraceError as exc:
            out[policy.name] = exc.message
    return out


def retarget(trace: Trace, target: str) -> Trace:
    """``trace`` with labels replaced by the last stage's predictions for ``last_stage``."""
    if target == "label":
        return trace
    return replace(trace, labels=trace.pred[:, -1].copy(), meta={**trace.meta, "target": target})


def _check_decisions(d: Decisions, policy: TracePolicy, test: Trace) -> None:
    """A policy must return (M, N) stage indices with 0 <= returned <= stop < n."""
    m = np.asarray(d.knobs).reshape(-1).size
    shape = (m, test.n_samples)
    if d.stop.shape != shape or d.returned.shape != shape:
        got = f"stop {d.stop.shape} / returned {d.returned.shape}"
        raise ValueError(f"policy {policy.name!r} returned {got}, expected {shape}")
    if (d.stop < 0).any() or (d.stop >= test.n_stages).any():
        raise ValueError(f"policy {policy.name!r} stops at a stage outside 0..{test.n_stages - 1}")
    if (d.returned < 0).any() or (d.returned > d.stop).any():
        raise ValueError(f"policy {policy.name!r} returns a stage it did not run")

