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

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import pandas as pd
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from ttamer.chain import atomic_write_bytes
from ttamer.logging_wandb import ExperimentLogger, LoggerConfig
from ttamer.plotting import plot_lower_bound, plot_pareto, plot_ratio_distribution
from ttamer.studies.synthetic_study import (
    SyntheticStudyConfig,
    ratio_summary,
    run_synthetic_study,
    summary_metrics,
)

log = logging.getLogger(__name__)

CONF_DIR = os.environ.get("TTAMER_CONF_DIR") or str(Path(__file__).resolve().parent.parent / "conf")


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
    return LoggerConfig(
        backend=str(cfg.backend),
        mode=str(cfg.mode),
        project=str(cfg.project),
        group=None if cfg.group is None else str(cfg.group),
        name=None if cfg.name is None else str(cfg.name),
        dir=None if cfg.dir is None else str(cfg.dir),
        tags=tuple(str(t) for t in cfg.tags),
    )


def write_csv(table: pd.DataFrame, path: Path) -> Path:
    """Write ``table`` as CSV (full float precision) atomically."""
    atomic_write_bytes(path, table.to_csv(index=False).encode())
    return path


def run_synthetic(cfg: DictConfig, out: Path, tracker: ExperimentLogger) -> dict[str, float]:
    """The synthetic study: three CSVs, three figures, metrics; returns the metrics."""
    result = run_synthetic_study(synthetic_study_config(cfg))
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


WORKLOADS: dict[str, Callable[[DictConfig, Path, ExperimentLogger], dict[str, float]]] = {
    "synthetic": run_synthetic,
}


@hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Run the composed workload and write its results into the Hydra run folder."""
    out = Path(HydraConfig.get().runtime.output_dir)
    name = str(cfg.workload.name)
    if name not in WORKLOADS:
        raise ValueError(f"workload.name: unknown workload {name!r}; choose from {sorted(WORKLOADS)}")
    container: Any = OmegaConf.to_container(cfg, resolve=True)
    with ExperimentLogger(logger_config(cfg.logger)).start(container) as tracker:
        metrics = WORKLOADS[name](cfg, out, tracker)
    log.info("wrote results to %s (%d metrics)", out, len(metrics))


if __name__ == "__main__":
    main()
