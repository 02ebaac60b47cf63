"""One job of ``ttamer-run``: the composed config as library objects, the study it asks for,
and its outputs (README: experiments)."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

from ttamer.app import outputs
from ttamer.app.configs import Run
from ttamer.app.studies import graph_study_config, synthetic_study_config, trace_study_config
from ttamer.app.wandb_logger import ExperimentLogger
from ttamer.errors import FieldError
from ttamer.evaluation.fitted_models import chain_models, graph_models
from ttamer.evaluation.scoring import ScoringConfig
from ttamer.studies.graph_study import run_graph_study
from ttamer.studies.synthetic_study import run_synthetic_study
from ttamer.studies.synthetic_workload import SyntheticWorkload
from ttamer.studies.trace_study import run_trace_study
from ttamer.traces.cache import cache_path, cached_trace, config_key
from ttamer.traces.trace import Trace
from ttamer.workloads.base import WorkloadConfig, resolve_path, workload

log = logging.getLogger(__name__)


def study_kind(run: Run) -> str:
    """What the job studies, its W&B job type: ``synthetic_study``, ``trace_study`` (chain
    policies on a trace) or ``graph_study`` (``structure`` skip or tree)."""
    if isinstance(run.workload, SyntheticWorkload):
        return "synthetic_study"
    return "trace_study" if run.config.structure.name == "chain" else "graph_study"


def run_job(run: Run, out: Path, tracker: ExperimentLogger) -> dict[str, float]:
    """Run the job's study and write its results into ``out``; returns its headline metrics."""
    if isinstance(run.workload, SyntheticWorkload):
        config = synthetic_study_config(run)
        return outputs.write_synthetic(run_synthetic_study(config), config, out, tracker)
    w = run.workload
    trace = workload_trace(w, run.config.seed, out)
    source, about = trace_source(w, run.config.seed)
    outputs.log_trace_artifact(trace, w.tag(), source, about, tracker)
    outputs.write_latency(trace, w.name, out)
    tag = f"{w.tag()}_agreement" if w.target == "last_stage" else w.tag()  # agreement: its own files
    structure = run.config.structure.name
    if structure == "chain":
        study = trace_study_config(run)
        result = run_trace_study(trace, study)
        models = chain_models(trace, study.scoring, result.points)
        outputs.write_fitted_models(models, tag, out, tracker, _about(study.scoring))
        return outputs.write_trace_study(result, trace, tag, out, tracker)
    tag = f"{tag}_{structure}"
    gconfig = graph_study_config(run)
    try:
        graph = run_graph_study(trace, gconfig)
    except FieldError as exc:  # name the config key
        ours = exc.field in ("parents", "chain_orders", "chain_policies")
        raise FieldError(f"structure.{exc.field}" if ours else exc.field, exc.message) from None
    about = {
        "seed": gconfig.seed,
        "fit_fraction": gconfig.fit_fraction,
        "fit_config": asdict(gconfig.fit_config),
    }
    outputs.write_fitted_models(graph_models(trace, gconfig, graph.points), tag, out, tracker, about)
    return outputs.write_graph_study(graph, trace, tag, out, tracker)


def _about(scoring: ScoringConfig) -> dict[str, object]:
    """What the fitted models' artifact records of the splits and the fit."""
    return {
        "seed": scoring.seed,
        "fit_fraction": scoring.fit_fraction,
        "target": scoring.target,
        "fit_config": asdict(scoring.fit_config),
    }


def trace_source(config: WorkloadConfig, seed: int) -> tuple[Path | None, dict[str, object]]:
    """Where the workload's trace lives, for the dataset artifact: the cached trace file (with its
    cache key), else the folder the workload reads (its ``folder`` field), else ``None``."""
    spec = workload(config.name)
    if spec.cache:
        key = config.trace_key(seed)
        return cache_path(resolve_path(config.cache_dir), spec.name, key), {"cache_key": config_key(key)}
    folder = getattr(config, "folder", None)
    return (resolve_path(folder) if folder else None), {"source": "folder"}


def workload_trace(config: WorkloadConfig, seed: int, out: Path) -> Trace:
    """The workload's trace: from the trace cache when the same trace config and seed made it
    before (``recompute`` forces a rebuild), else produced (and cached, for workloads that run a
    model)."""
    spec = workload(config.name)
    if not spec.cache:
        return spec.produce(config, seed, out)
    trace, reused = cached_trace(
        spec.name, config.trace_key(seed), lambda: spec.produce(config, seed, out),
        resolve_path(config.cache_dir), config.recompute,
    )  # fmt: skip
    log.info("%s trace: %d samples, %d stages (%s)", spec.name, trace.n_samples, trace.n_stages,
             "reused from cache" if reused else "computed")  # fmt: skip
    return trace
