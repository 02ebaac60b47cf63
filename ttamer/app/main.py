"""The Hydra entry point (``ttamer-run``): compose ``conf/``, run a study, write results.

This module is the only place that sees a Hydra config: it converts the composed config into
the library's typed dataclasses, calls the library, and writes tidy CSVs and figures into the
run folder (``hydra.run.dir``, next to Hydra's ``.hydra/config.yaml``), every file atomically.
Examples::

    ttamer-run                                   # defaults: synthetic study, W&B offline
    ttamer-run seed=3 workload.chains_per_family=50 logger=none
    ttamer-run -m seed=0,1,2                     # multirun, one folder per seed

The configs live in ``conf/`` at the repository root. Hydra resolves a relative
``config_path`` against the *package* when the app is started as a console script, so the
folder is passed as an absolute path computed from this file (right for editable installs and
source checkouts); ``TTAMER_CONF_DIR`` points elsewhere (e.g. after a non-editable install).
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pandas as pd
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from ttamer.app.provenance import _keep_identical_hydra_files
from ttamer.app.schema import register_configs, validate_config, validate_logger
from ttamer.app.wandb_logger import ExperimentLogger, LoggerConfig
from ttamer.errors import FieldError
from ttamer.evaluation.calibration import calibration_table
from ttamer.evaluation.scoring import DEFAULT_POLICIES, SweepConfig
from ttamer.fileio import atomic_write_bytes, portable_path
from ttamer.fitting.chain import FitConfig
from ttamer.loading import one_line
from ttamer.plots.graphs import plot_stage_usage
from ttamer.plots.synthetic import plot_lower_bound, plot_pareto, plot_ratio_distribution
from ttamer.plots.traces import plot_calibration, plot_trace_pareto
from ttamer.studies.graph_study import GraphStudyConfig, run_graph_study
from ttamer.studies.synthetic_study import (
    SyntheticStudyConfig,
    ratio_summary,
    run_synthetic_study,
    summary_metrics,
    write_lower_bound_instances,
    write_random_chains,
)
from ttamer.studies.trace_study import TraceStudyConfig, run_trace_study
from ttamer.traces.importers import import_frugalml
from ttamer.traces.trace import Trace

log = logging.getLogger(__name__)

CONF_DIR = os.environ.get("TTAMER_CONF_DIR") or str(Path(__file__).resolve().parents[2] / "conf")
register_configs()  # the typed schemas behind conf/ (base_config, workload/base_<name>, ...)
# also in launcher workers (joblib, submitit, Ray), which import this module to run a job: Hydra's
# .hydra/*.yaml are written portable and left alone when unchanged
_keep_identical_hydra_files()


def synthetic_study_config(cfg: DictConfig) -> SyntheticStudyConfig:
    """The typed study config from the composed ``workload``, ``policy``, ``sweep`` and ``seed``."""
    w, lb, sw = cfg.workload, cfg.workload.lower_bound, cfg.sweep
    return SyntheticStudyConfig(
        alpha_min=float(lb.alpha_min),
        alpha_max=float(lb.alpha_max),
        n_alphas=int(lb.n_alphas),
        lower_bound_n_stages=tuple(int(n) for n in lb.n_stages),
        lower_bound_cost_scales=tuple(float(c) for c in lb.cost_scales),
        lower_bound_lam=float(sw.lower_bound_lam),
        families=tuple(str(f) for f in w.families),
        chains_per_family=int(w.chains_per_family),
        n_stages=int(w.n_stages),
        n_states=int(w.n_states),
        ratio_lams=tuple(float(x) for x in sw.ratio_lams),
        pareto_family=str(w.pareto_family),
        lam_grid_min=float(sw.lam_grid.min),
        lam_grid_max=float(sw.lam_grid.max),
        n_lam_grid=int(sw.lam_grid.num),
        policies=tuple(str(p) for p in cfg.policy.compare),
        seed=int(cfg.seed),
        progress=bool(cfg.get("progress", True)),
    )


def logger_config(cfg: DictConfig) -> LoggerConfig:
    """The typed logger config from the composed ``logger`` group."""
    validate_logger(cfg)  # FieldError naming logger.backend / logger.mode
    return LoggerConfig(
        backend=str(cfg.backend),
        mode=str(cfg.mode),
        project=str(cfg.project),
        group=None if cfg.group is None else str(cfg.group),
        name=None if cfg.name is None else str(cfg.name),
        dir=None if cfg.dir is None else str(cfg.dir),
        tags=tuple(str(t) for t in cfg.tags),
    )


def write_csv(table: pd.DataFrame, path: Path, compact: bool = False) -> Path:
    """Write ``table`` as CSV atomically, floats at full precision; ``compact``: to 12
    significant digits (the large per-knob points tables: far below any reported figure's
    precision, and a quarter smaller)."""
    atomic_write_bytes(path, table.to_csv(index=False, float_format="%.12g" if compact else None).encode())
    return path


def run_synthetic(cfg: DictConfig, out: Path, tracker: ExperimentLogger) -> dict[str, float]:
    """The synthetic study: three CSVs, three figures, every lower-bound instance and random
    chain as a chain file under ``instances/lower_bound/`` and ``instances/random/`` (their
    paths in the tables' ``instance`` columns; also a W&B artifact of type ``instances``),
    metrics; returns the metrics."""
    result = run_synthetic_study(synthetic_study_config(cfg))
    folder = out / "instances" / "lower_bound"
    names = write_lower_bound_instances(result.lower_bound, folder)
    result.lower_bound.insert(0, "instance", [f"instances/lower_bound/{n}" for n in names])
    write_random_chains(synthetic_study_config(cfg), out / "instances" / "random")  # <family>_<chain>.json
    ratios = result.ratios
    ratios.insert(
        0, "instance", "instances/random/" + ratios["family"] + "_" + ratios["chain"].astype(str) + ".json"
    )
    how = "ttamer solve <file> --lam <lam> --policy recall (or no-recall)"
    tracker.log_artifact(
        "lower_bound_instances", "instances", out / "instances", {"count": len(names), "solve": how}
    )
    tables = {"lower_bound": result.lower_bound, "ratios": result.ratios, "pareto": result.pareto}
    for key, table in tables.items():
        write_csv(table, out / f"synthetic_{key}.csv")
        tracker.log_table(f"tables/{key}", table)
    summary = ratio_summary(result.ratios)
    tracker.log_table("tables/ratio_summary", summary)
    log.info("ratios J_policy / J_recall per family:\n%s", summary.to_string(index=False))
    figures = {
        "lower_bound": plot_lower_bound(result.lower_bound, out / "fig_lower_bound.png"),
        "ratio_distribution": plot_ratio_distribution(result.ratios, out / "fig_ratio_distribution.png"),
        "pareto": plot_pareto(result.pareto, out / "fig_pareto.png"),
    }
    for key, path in figures.items():
        tracker.log_image(f"figures/{key}", path)
    metrics = summary_metrics(result)
    tracker.log_metrics(metrics)
    return metrics


def resolve_data_path(path: str) -> Path:
    """A data path from the config; relative paths are taken from the launch folder."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else Path(hydra.utils.get_original_cwd()) / p


def trace_study_config(cfg: DictConfig) -> TraceStudyConfig:
    """The typed trace-study config from the composed ``workload``, ``policy`` and ``seed``."""
    w = cfg.workload
    fit = FitConfig(**OmegaConf.to_container(w.fit, resolve=True))  # type: ignore[arg-type]
    sweep = SweepConfig(
        policies=tuple(str(p) for p in cfg.policy.trace),
        n_splits=int(w.n_splits),
        fit_fraction=float(w.fit_fraction),
        seed=int(cfg.seed),
        fit_config=fit,
        progress=bool(cfg.get("progress", True)),
        target=str(w.target),
        reference=str(w.reference),
        skip_unsupported=tuple(str(p) for p in cfg.policy.trace) == DEFAULT_POLICIES,
    )
    reference = str(w.reference)
    if reference not in ("best_stage", "last_stage"):
        raise ValueError(f"workload.reference: must be best_stage or last_stage, got {reference!r}")
    return TraceStudyConfig(sweep, reference, tuple(float(d) for d in w.deltas))  # type: ignore[arg-type]


def run_trace_workload(
    trace: Trace, tag: str, cfg: DictConfig, out: Path, tracker: ExperimentLogger
) -> dict[str, float]:
    """Sweep every policy on ``trace``; write ``<tag>_points.csv``, ``<tag>_summary.csv``,
    ``<tag>_hulls.csv``, ``<tag>_calibration.csv``, ``fig_<tag>.png`` and
    ``fig_<tag>_calibration.png``; return headline metrics. With a graph
    ``structure`` (skip, tree), the graph study instead, tagged ``<tag>_<structure>``."""
    if str(cfg.workload.target) == "last_stage":  # agreement with the backbone: its own files
        tag = f"{tag}_agreement"
    if str(cfg.structure.name) != "chain":
        return run_graph_workload(trace, f"{tag}_{cfg.structure.name}", cfg, out, tracker)
    result = run_trace_study(trace, trace_study_config(cfg))
    for key in ("points", "summary", "hulls"):
        table = getattr(result, key)
        write_csv(table, out / f"{tag}_{key}.csv", compact=key == "points")
        tracker.log_table(f"tables/{key}", table)
    title = f"{tag}: {trace.n_samples} samples, {trace.n_stages} stages"
    fig = plot_trace_pareto(result.points, out / f"fig_{tag}.png", title, trace.cost_unit, trace.stage_names)
    tracker.log_image("figures/pareto", fig)
    _write_calibration(result.calibration, tag, out, tracker)
    return _log_summary(result.summary, tag, tracker)


def graph_study_config(cfg: DictConfig) -> GraphStudyConfig:
    """The typed graph-study config from the composed ``structure``, ``workload`` and ``seed``."""
    base = trace_study_config(cfg)
    st = cfg.structure
    parents = tuple(None if p is None else int(p) for p in st.parents)
    return GraphStudyConfig(
        structure=str(st.name),
        parents=parents if str(st.name) == "tree" else None,
        chain_policies=tuple(str(p) for p in st.chain_policies),
        chain_orders=bool(st.chain_orders),
        n_splits=base.sweep.n_splits,
        fit_fraction=base.sweep.fit_fraction,
        seed=base.sweep.seed,
        fit_config=base.sweep.fit_config,
        reference=base.reference,
        deltas=base.deltas,
        progress=base.sweep.progress,
    )


def run_graph_workload(
    trace: Trace, tag: str, cfg: DictConfig, out: Path, tracker: ExperimentLogger
) -> dict[str, float]:
    """Score the graph policies of ``structure`` beside the chain policies on ``trace``; write
    ``<tag>_{points,summary,hulls,usage,calibration}.csv`` (and ``<tag>_orders.csv`` for chain orders),
    ``fig_<tag>.png`` and ``fig_<tag>_usage.png``; return headline metrics."""
    try:
        result = run_graph_study(trace, graph_study_config(cfg))
    except FieldError as exc:  # name the Hydra field
        ours = exc.field in ("parents", "chain_orders", "chain_policies")
        raise FieldError(f"structure.{exc.field}" if ours else exc.field, exc.message) from None
    tables = {
        "points": result.points,
        "summary": result.summary,
        "hulls": result.hulls,
        "usage": result.usage,
    }
    if not result.orders.empty:
        tables["orders"] = result.orders
    for key, table in tables.items():
        write_csv(table, out / f"{tag}_{key}.csv", compact=key == "points")
        tracker.log_table(f"tables/{key}", table)
    title = f"{tag}: {trace.n_samples} samples, {trace.n_stages} stages"
    fig = plot_trace_pareto(result.points, out / f"fig_{tag}.png", title, trace.cost_unit, trace.stage_names)
    tracker.log_image("figures/pareto", fig)
    tracker.log_image(
        "figures/usage", plot_stage_usage(result.usage, result.points, out / f"fig_{tag}_usage.png", tag)
    )
    _write_calibration(calibration_table(result.points), tag, out, tracker)
    return _log_summary(result.summary, tag, tracker)


def _write_calibration(table: pd.DataFrame, tag: str, out: Path, tracker: ExperimentLogger) -> None:
    """``<tag>_calibration.csv`` and ``fig_<tag>_calibration.png`` (when a policy has a model)."""
    if table.empty:
        return
    write_csv(table, out / f"{tag}_calibration.csv")
    tracker.log_table("tables/calibration", table)
    fig = plot_calibration(table, out / f"fig_{tag}_calibration.png", f"{tag}: calibration")
    tracker.log_image("figures/calibration", fig)


def _log_summary(summary: pd.DataFrame, tag: str, tracker: ExperimentLogger) -> dict[str, float]:
    values = summary["mean"].to_numpy(dtype=np.float64)
    keys = (summary["policy"] + "/" + summary["metric"]).tolist()
    metrics = {k: float(v) for k, v in zip(keys, values, strict=True) if np.isfinite(v)}
    tracker.log_metrics(metrics)
    log.info("%s summary:\n%s", tag, summary.to_string(index=False))
    return metrics


def run_frugalml(cfg: DictConfig, out: Path, tracker: ExperimentLogger) -> dict[str, float]:
    """The FrugalML model cascade of one dataset (``workload.dataset``)."""
    trace = import_frugalml(resolve_data_path(str(cfg.workload.folder)))
    return run_trace_workload(trace, f"frugalml_{str(cfg.workload.dataset).lower()}", cfg, out, tracker)


# workload fields that do not change the trace (caching, and how the trace is then studied)
NOT_IN_TRACE_KEY = (
    "cache_dir",
    "recompute",
    "n_splits",
    "fit_fraction",
    "reference",
    "deltas",
    "target",
    "fit",
)


def run_model_workload(cfg: DictConfig, out: Path, tracker: ExperimentLogger) -> dict[str, float]:
    """A workload that produces its trace from a real model (``ttamer.workloads``): the trace
    comes from the cache when the same ``workload`` config made it before (``recompute=true``
    forces a rebuild), then every policy is swept on it."""
    from ttamer.traces.cache import cached_trace
    from ttamer.workloads.registry import producer

    name = str(cfg.workload.name)
    config: dict[str, Any] = OmegaConf.to_container(cfg.workload, resolve=True)  # type: ignore[assignment]
    config = {k: v for k, v in config.items() if k not in NOT_IN_TRACE_KEY}
    config["seed"] = int(cfg.seed)
    cache_dir = resolve_data_path(str(cfg.workload.get("cache_dir", ".cache/ttamer/traces/trace")))
    produce = producer(name)
    trace, reused = cached_trace(
        name, config, lambda: produce(config, out), cache_dir, bool(cfg.workload.get("recompute", False))
    )
    log.info("%s trace: %d samples, %d stages (%s)", name, trace.n_samples, trace.n_stages,
             "reused from cache" if reused else "computed")  # fmt: skip
    _write_latency(trace, name, out)
    return run_trace_workload(trace, name, cfg, out, tracker)


def _write_latency(trace: Trace, name: str, out: Path) -> None:
    """The trace's measured latency table as a CSV named like timm's benchmark files."""
    from ttamer.workloads.latency import benchmark_filename
    from ttamer.workloads.trace_from_model import latency_table_from_trace

    table = latency_table_from_trace(trace)
    if table.empty:
        return
    env = {k[4:]: v for k, v in sorted(trace.meta.items()) if k.startswith("env_")}  # same order if cached
    table.insert(1, "stage_name", [trace.stage_names[int(s) - 1] for s in table["stage"]])
    for key, value in env.items():
        table[key] = value
    precision = "amp" if trace.meta.get("amp", "").lower() in ("true", "1") else "fp32"
    write_csv(table, out / benchmark_filename(name, env, precision))


WORKLOADS: dict[str, Callable[[DictConfig, Path, ExperimentLogger], dict[str, float]]] = {
    "synthetic": run_synthetic,
    "frugalml": run_frugalml,
    **{
        name: run_model_workload
        for name in ("digits", "fashion_mnist", "sst2_minilm", "glue_hf", "imagenet_timm")
    },
}


def sweep_group(sweep_dir: str, origin: str) -> str:
    """The W&B group of a multirun: its sweep folder, relative to the launch folder when inside it
    (``multirun/2025-01-31/12-00-00``), else its last two path parts; at most 128 characters."""
    path = Path(sweep_dir)
    path = (path if path.is_absolute() else Path(origin) / path).resolve()
    try:
        group = path.relative_to(Path(origin).resolve()).as_posix()
    except ValueError:
        group = "/".join(path.parts[-2:])
    return group[-128:]


def job_logger_config(cfg: DictConfig, out: Path) -> LoggerConfig:
    """The logger config of this job: W&B files inside the job folder; in a multirun every job is
    one W&B run named after its job folder, grouped by the sweep (unless ``logger.group`` or
    ``logger.name`` is given on the command line)."""
    import dataclasses

    from hydra.types import RunMode

    lc = logger_config(cfg.logger)
    hc = HydraConfig.get()
    changes: dict[str, Any] = {"dir": lc.dir or str(out)}
    if hc.mode == RunMode.MULTIRUN:
        given = {str(o).split("=", 1)[0].lstrip("+~") for o in hc.overrides.task}
        if "logger.group" not in given:
            changes["group"] = sweep_group(str(hc.sweep.dir), hc.runtime.cwd)
        if "logger.name" not in given:
            changes["name"] = Path(hc.sweep.subdir).as_posix()[:128]
    return dataclasses.replace(lc, **changes)


def detach_job_log(out: Path) -> None:
    """Stop the logging handlers that write into ``out`` (Hydra's ``run.log``): a skipped job's
    folder must stay untouched, also by what a launcher logs after the job (submitit does)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        name = getattr(handler, "baseFilename", None)
        if name is not None and Path(name).parent.resolve() == out.resolve():
            root.removeHandler(handler)
            handler.close()


@hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
def hydra_main(cfg: DictConfig) -> str:
    """Run the composed workload and write its results into the Hydra run folder.

    A job whose folder holds a ``DONE`` marker for the same resolved config is skipped without
    touching any file (``force=true`` reruns it); otherwise ``provenance.json`` records the run and
    ``DONE`` is written last (see :mod:`ttamer.app.provenance`). In a multirun a failing job is
    recorded (status ``failed``) and the sweep goes on; a single run exits non-zero (a bad input,
    :class:`FieldError`: one line and status 2). Returns the job's status."""
    from hydra.types import RunMode

    from ttamer.app import provenance

    hc = HydraConfig.get()
    out = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    overrides = [str(o) for o in hc.overrides.task]
    try:
        container: Any = OmegaConf.to_container(cfg, resolve=True)
        key = provenance.config_hash(container)
    except Exception:  # an unresolvable config: record it like any other failure
        container, key = None, "unresolved"
    finished, why = provenance.completed(out, key)
    if not bool(cfg.get("force", False)) and finished:
        # printed, not logged: a skipped job leaves its folder (run.log included) untouched
        done = f"skipping: already done ({portable_path(out)}, config {key[:12]}); force=true reruns it"
        print(done, flush=True)
        detach_job_log(out)
        return "skipped"
    if provenance.done_hash(out) == key:  # marked done, but a result was deleted or changed
        log.warning("redoing %s: %s", portable_path(out), why)
    stale = provenance.remove_stale_temporaries(out)
    if stale:
        log.info("removed %d temporary files left by an interrupted run", len(stale))
    if provenance.remove_unfinished_wandb_runs(out):
        log.info("removed the W&B offline runs of an earlier, unfinished attempt")
    launcher = str(hc.launcher.get("_target_", "")).rsplit(".", 1)[-1]  # e.g. JoblibLauncher
    job = {"job": hc.job.name, "job_num": hc.job.num if multirun else None, "output_dir": portable_path(out),
           "launcher": launcher, "launcher_job_id": OmegaConf.select(hc.job, "id", default=None)}  # type: ignore[arg-type]  # fmt: skip
    record = provenance.JobRecord(out, key, overrides, job).begin()
    try:
        if container is None:
            OmegaConf.to_container(cfg, resolve=True)  # raises the resolution error
        validate_config(cfg)  # choices Hydra's types cannot express, before W&B starts
        name = str(cfg.workload.name)
        if name not in WORKLOADS:
            raise ValueError(f"workload.name: unknown workload {name!r}; choose from {sorted(WORKLOADS)}")
        with ExperimentLogger(job_logger_config(cfg, out)).start(container) as tracker:
            metrics = WORKLOADS[name](cfg, out, tracker)
    except Exception as exc:
        record.finish("failed", exc)
        if multirun:  # recorded; let Hydra go on with the other jobs
            log.exception("job failed (%s): %s: %s", out, type(exc).__name__, exc)
            return "failed"
        if isinstance(exc, FieldError):  # bad input: one clear line, no traceback
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        raise
    except BaseException as exc:  # KeyboardInterrupt, SystemExit: no DONE marker
        record.finish("interrupted", exc)
        raise
    record.finish("done", n_metrics=len(metrics))
    log.info("wrote results to %s (%d metrics)", portable_path(out), len(metrics))
    return "done"


# ---------------------------------------------------------------------- the command line

# Hydra flags after which the command runs no job (help, config printing, completion)
NO_RUN_FLAGS = ("-h", "--help", "--hydra-help", "--version", "-i", "--info", "-c", "--cfg", "--resolve",
                "-p", "--package", "-sc", "--shell-completion")  # fmt: skip
OWN_CONFIG_FLAGS = ("-cp", "--config-path", "-cn", "--config-name", "-cd", "--config-dir")
NOT_IN_SWEEP_NAME = ("logger", "progress", "force", "hydra")  # do not change what a sweep computes
MAX_CHECKED_JOBS = 64


def main() -> None:
    """``ttamer-run``: check the command line, then hand it to Hydra.

    Every job a command would run is composed and validated first (misspelt keys, wrong types,
    unknown choices, values out of range), so a bad command stops at once with one line naming
    the key and exit status 2, before any training. A multirun without ``hydra.sweep.dir`` goes
    to ``multirun/<name>-<hash of its overrides>``, so the same command run again finds the same
    sweep folder and skips the jobs already done."""
    argv = sys.argv[1:]
    try:
        argv = prepare_command(argv)
    except FieldError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        raise SystemExit(2) from None
    sys.argv = [sys.argv[0], *argv]
    hydra_main()


def prepare_command(argv: list[str]) -> list[str]:
    """Validate the jobs of ``argv`` (see :func:`main`); the arguments to give Hydra."""
    if any(a in NO_RUN_FLAGS or a.split("=", 1)[0] in OWN_CONFIG_FLAGS for a in argv):
        return argv
    from hydra.core.override_parser.overrides_parser import OverridesParser

    words = [a for a in argv if not a.startswith("-")]
    try:
        overrides = OverridesParser.create().parse_overrides(words)
    except Exception as exc:  # OverrideParseException
        raise FieldError("command line", one_line(exc).split(" See ")[0]) from None
    LoggerConfig().effective_mode()  # WANDB_MODE in the environment
    multirun = "-m" in argv or "--multirun" in argv
    sweeps = [o.input_line for o in overrides if o.is_sweep_override()]
    if sweeps and not multirun:
        raise FieldError("command line", f"{sweeps[0]} is a sweep: add -m to run one job per value")
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):  # once for every job
        for job in job_overrides(overrides):
            check_job(job)
    if multirun and not any(o.key_or_group.startswith("hydra.sweep.dir") for o in overrides):
        argv = [*argv, f"hydra.sweep.dir=multirun/{sweep_name(words)}"]
    launcher = next((str(o.value()) for o in overrides if o.key_or_group == "hydra/launcher"), "")
    if ("submitit" in launcher or "slurm" in launcher) and not any(
        "submitit_folder" in o.key_or_group for o in overrides
    ):
        # submitit's job files beside, not inside, the sweep folder: a rerun writes nothing there
        argv = [*argv, f"hydra.launcher.submitit_folder=multirun/.submitit/{sweep_name(words)}/%j"]
    return argv


def job_overrides(overrides: list[Any]) -> list[list[str]]:
    """The override lists of the jobs to check: every combination of the sweeps (choices and
    ranges; a ``glob`` is left to Hydra), at most :data:`MAX_CHECKED_JOBS`; ``hydra`` keys are
    Hydra's own."""
    from hydra.core.override_parser.types import Glob

    axes: list[list[str]] = []
    for o in overrides:
        key = o.get_key_element()
        if o.key_or_group.startswith(("hydra.", "hydra/")):
            continue
        if not o.is_sweep_override():
            axes.append([f"{key}={o.get_value_element_as_str()}"])
        elif not isinstance(o.value(), Glob):
            axes.append([f"{key}={v}" for v in o.sweep_string_iterator()])
    return [list(job) for job in itertools.islice(itertools.product(*axes), MAX_CHECKED_JOBS)]


def check_job(overrides: list[str]) -> None:
    """Compose one job's config and validate it as the run would, without running anything
    (inside Hydra's ``initialize_config_dir``)."""
    from hydra import compose

    try:
        cfg = compose("config", overrides=overrides)
        validate_config(cfg)
        if str(cfg.workload.name) == "synthetic":
            synthetic_study_config(cfg)
        elif str(cfg.workload.name) in WORKLOADS:
            trace_study_config(cfg)
        logger_config(cfg.logger)
        OmegaConf.to_container(cfg, resolve=True)  # every other interpolation resolves
    except FieldError:
        raise
    except Exception as exc:  # composition, OmegaConf, or a typed config's own check
        if "HydraConfig was not set" in str(exc):
            return  # a ${hydra:...} value: known only once Hydra runs the job
        raise config_error(exc) from None


def config_error(exc: Exception) -> FieldError:
    """A Hydra / OmegaConf / typed-config failure as one :class:`FieldError` line: its first
    line, the key OmegaConf names (``full_key``) or the config group Hydra could not find, and
    that group's options."""
    cause = exc.__cause__ if getattr(exc.__cause__, "full_key", None) else exc  # OmegaConf's own
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    head = (lines[0] if lines else type(exc).__name__).removeprefix("In 'config': ")
    key = str(getattr(cause, "full_key", None) or ("workload" if isinstance(exc, ValueError) else "config"))
    missing = re.search(r"Could not find '([^'/]+)/", head)
    if missing:
        key = missing.group(1)
        at = next((k for k, line in enumerate(lines) if line.startswith("Available options")), None)
        if at is not None:
            options = itertools.takewhile(
                lambda line: not line.startswith("Config search path"), lines[at + 1 :]
            )
            head += f" (options: {', '.join(options)})"
    return FieldError(key, head)


def sweep_name(words: list[str]) -> str:
    """``<readable overrides>-<8 hex>``: the same overrides (in any order, logger, progress, force
    and hydra settings aside) always name the same sweep folder."""
    import hashlib

    kept = sorted(w for w in words if not w.lstrip("+~").startswith(NOT_IN_SWEEP_NAME))
    digest = hashlib.sha256("\n".join(kept).encode()).hexdigest()[:8]
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", "_".join(kept)).strip("-._")[:48] or "default"
    return f"{readable}-{digest}"


if __name__ == "__main__":
    # run the module's own copy (not __main__'s), so launcher workers pickle the task function
    # by reference and import this module, with its set-up, to run it
    from ttamer.app.main import main as _main

    _main()
