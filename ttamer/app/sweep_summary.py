"""The W&B summary run of a multirun (README: W&B): one run named ``summary`` (job type
``summary``) in the sweep's group, holding the headline tables built from the sweep folder's
results (:mod:`ttamer.evaluation.report`) and the rows of ``multirun_summary.csv``.

Started by :class:`ttamer.app.provenance.MultirunSummary` at the end of a multirun, only when the
jobs log to W&B (backend ``wandb``, effective mode not ``disabled``) and some job ran (a rerun
that skips every job leaves the sweep folder untouched). Its files go to ``<sweep>/wandb/``.
A failure here is reported and never fails the sweep.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from ttamer.app.wandb_logger import ExperimentLogger, LoggerConfig

SUMMARY_NAME = "summary"


def _given(config: Any) -> set[str]:
    task = OmegaConf.select(config, "hydra.overrides.task", default=[]) or []
    return {str(o).split("=", 1)[0].lstrip("+~") for o in task}


def summary_logger_config(config: Any, sweep_dir: Path) -> LoggerConfig | None:
    """The summary run's logger config from the multirun's config (the jobs' logger, the sweep's
    group unless ``logger.group`` was given, files in the sweep folder); ``None`` when the jobs
    did not log to W&B."""
    from ttamer.app.run import sweep_group

    backend = str(OmegaConf.select(config, "logger.backend", default="none"))
    mode = str(OmegaConf.select(config, "logger.mode", default="disabled"))
    project = str(OmegaConf.select(config, "logger.project", default="ttamer"))
    if "logger.group" in _given(config):
        group = str(OmegaConf.select(config, "logger.group"))
    else:
        cwd = str(OmegaConf.select(config, "hydra.runtime.cwd", default=".") or ".")
        group = sweep_group(str(sweep_dir), cwd)
    logger = LoggerConfig(backend, mode, project, group, SUMMARY_NAME, str(sweep_dir), (SUMMARY_NAME,))
    return None if logger.effective_mode() == "disabled" else logger


def headline_tables(sweep_dir: Path) -> dict[str, pd.DataFrame]:
    """``headline/trace`` (:func:`~ttamer.evaluation.report.summary_table`) and
    ``headline/synthetic`` of the sweep folder's results; when a job left no results (it
    failed), those of the finished jobs one by one (``workload``: the job folder)."""
    from ttamer.evaluation.report import load_results, summary_table, synthetic_table
    from ttamer.evaluation.results import ResultsError

    try:
        traces, synthetic = load_results(sweep_dir)
    except ResultsError:
        traces, synthetic = [], []
        for done in sorted(p.parent for p in sweep_dir.rglob("DONE") if "wandb" not in p.parts):
            try:
                t, s = load_results(done)
            except ResultsError:
                continue
            key = done.relative_to(sweep_dir).as_posix()
            for trace_run in t:
                trace_run.key = key
            for synthetic_run in s:
                synthetic_run.key = key
            traces, synthetic = traces + t, synthetic + s
    tables = {}
    if traces:
        tables["headline/trace"] = summary_table(traces)
    if synthetic:
        tables["headline/synthetic"] = synthetic_table(synthetic)
    return tables


def log_sweep_summary(config: Any, sweep_dir: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Log the summary run (module docstring); a failure is printed, not raised."""
    try:
        logger = summary_logger_config(config, sweep_dir)
        if logger is None:
            return
        about = {"sweep": logger.group, "jobs": len(rows), "failed": sum(r["status"] != "done" for r in rows)}
        with ExperimentLogger(logger, job_type=SUMMARY_NAME).start(about) as tracker:
            tracker.log_table("multirun_summary", pd.DataFrame(list(rows)))
            for key, table in headline_tables(sweep_dir).items():
                tracker.log_table(key, table)
    except Exception as exc:  # bookkeeping must never fail a sweep
        print(f"warning: no W&B summary run ({type(exc).__name__}: {exc})", file=sys.stderr, flush=True)
