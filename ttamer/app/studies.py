"""The library's study configs from a composed job (:class:`~ttamer.app.configs.Run`)."""

from __future__ import annotations

from typing import Literal, cast

from ttamer.app.configs import Run
from ttamer.evaluation.scoring import ScoringConfig
from ttamer.policies import default_trace_policies
from ttamer.studies.graph_study import GraphStudyConfig
from ttamer.studies.synthetic_study import SyntheticStudyConfig
from ttamer.studies.synthetic_workload import SyntheticWorkload
from ttamer.studies.trace_study import TraceStudyConfig
from ttamer.workloads.base import WorkloadConfig

StudyConfig = SyntheticStudyConfig | TraceStudyConfig | GraphStudyConfig


def study_config(run: Run) -> StudyConfig:
    """The config of the study the job runs: synthetic, trace (``structure=chain``) or graph."""
    if isinstance(run.workload, SyntheticWorkload):
        return synthetic_study_config(run)
    if run.config.structure.name == "chain":
        return trace_study_config(run)
    return graph_study_config(run)


def synthetic_study_config(run: Run) -> SyntheticStudyConfig:
    """The synthetic study of the job's chains, weights (``sweep``) and ``policy.compare``."""
    c = run.config
    assert isinstance(run.workload, SyntheticWorkload)
    weights = c.sweep
    return run.workload.study(weights.lower_bound_lam, weights.ratio_lams, weights.lam_grid, c.policy.compare,
                              c.seed, c.progress)  # fmt: skip


def _trace_workload(run: Run) -> WorkloadConfig:
    assert isinstance(run.workload, WorkloadConfig)
    return run.workload


def trace_study_config(run: Run) -> TraceStudyConfig:
    """The trace study: ``policy.trace`` scored on the workload's splits (a default policy set
    skips the policies a trace cannot support, with a note)."""
    w, c = _trace_workload(run), run.config
    scoring = ScoringConfig(
        policies=tuple(c.policy.trace),
        n_splits=w.n_splits,
        fit_fraction=w.fit_fraction,
        seed=c.seed,
        fit_config=w.fit,
        progress=c.progress,
        target=w.target,
        reference=w.reference,
        skip_unsupported=tuple(c.policy.trace) == default_trace_policies(),
    )
    reference = cast(Literal["best_stage", "last_stage"], w.reference)
    return TraceStudyConfig(scoring, reference, tuple(w.deltas))


def graph_study_config(run: Run) -> GraphStudyConfig:
    """The graph study of ``structure`` (skip, tree) beside its chain policies."""
    w, c, st = _trace_workload(run), run.config, run.config.structure
    return GraphStudyConfig(
        structure=st.name,
        parents=tuple(st.parents) if st.name == "tree" else None,
        chain_policies=tuple(st.chain_policies),
        chain_orders=st.chain_orders,
        n_splits=w.n_splits,
        fit_fraction=w.fit_fraction,
        seed=c.seed,
        fit_config=w.fit,
        reference=cast(Literal["best_stage", "last_stage"], w.reference),
        deltas=tuple(w.deltas),
        progress=c.progress,
    )
