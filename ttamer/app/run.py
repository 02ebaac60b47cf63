"""The Hydra entry point (``ttamer-run``): compose ``conf/``, run a study, write results.

The app (``ttamer/app/``) is the only place that sees Hydra or OmegaConf: it turns the composed
config into the library's dataclasses (:mod:`ttamer.app.configs`), calls the library and writes
tidy CSVs and figures into the run folder (``hydra.run.dir``, next to Hydra's
``.hydra/config.yaml``), every file atomically. Examples::

    ttamer-run                                   # the embedded default: digits, W&B offline
    ttamer-run workload=synthetic seed=3 workload.chains_per_family=50 logger=none
    ttamer-run -m seed=0,1,2                     # multirun, one folder per seed

The configs live in ``conf/`` at the repository root. Hydra resolves a relative
``config_path`` against the *package* when the app is started as a console script, so the
folder is passed as an absolute path computed from this file (right for editable installs and
source checkouts); ``TTAMER_CONF_DIR`` points elsewhere (e.g. after a non-editable install).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from ttamer.app import provenance
from ttamer.app.command import prepare_argv
from ttamer.app.configs import Run, build_run, register_configs
from ttamer.app.job import run_job, study_kind
from ttamer.app.wandb_logger import ExperimentLogger, LoggerConfig, wandb_config
from ttamer.errors import FieldError
from ttamer.fileio import portable_path

log = logging.getLogger(__name__)

CONF_DIR = os.environ.get("TTAMER_CONF_DIR") or str(Path(__file__).resolve().parents[2] / "conf")
register_configs()  # the library dataclasses behind conf/ (schema/config, schema/workload/<name>, ...)
# also in launcher workers (joblib, submitit, Ray), which import this module to run a job: Hydra's
# .hydra/*.yaml are written portable and left alone when unchanged
provenance.keep_identical_hydra_files()


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


def job_logger_config(config: LoggerConfig, out: Path) -> LoggerConfig:
    """The logger config of this job: W&B files inside the job folder; in a multirun every job is
    one W&B run named after its job folder, grouped by the sweep (unless ``logger.group`` or
    ``logger.name`` is given on the command line)."""
    from hydra.types import RunMode

    hc = HydraConfig.get()
    changes: dict[str, Any] = {"dir": config.dir or str(out)}
    if hc.mode == RunMode.MULTIRUN:
        given = {str(o).split("=", 1)[0].lstrip("+~") for o in hc.overrides.task}
        if "logger.group" not in given:
            changes["group"] = sweep_group(str(hc.sweep.dir), hc.runtime.cwd)
        if "logger.name" not in given:
            changes["name"] = Path(hc.sweep.subdir).as_posix()[:128]
    return dataclasses.replace(config, **changes)


def detach_job_log(out: Path) -> None:
    """Stop the logging handlers that write into ``out`` (Hydra's ``run.log``): a skipped job's
    folder must stay untouched, also by what a launcher logs after the job (submitit does)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        name = getattr(handler, "baseFilename", None)
        if name is not None and Path(name).parent.resolve() == out.resolve():
            root.removeHandler(handler)
            handler.close()


def _config_key(cfg: DictConfig) -> tuple[Any, str]:
    """The resolved config and its hash (``None``, ``"unresolved"`` when it does not resolve)."""
    try:
        container: Any = OmegaConf.to_container(cfg, resolve=True)
        return container, provenance.config_hash(container)
    except Exception:  # an unresolvable config: recorded like any other failure
        return None, "unresolved"


def _already_done(cfg: DictConfig, out: Path, key: str) -> bool:
    """Whether the job is done (a DONE marker for ``key`` and its results intact) and not forced;
    otherwise tidy what an interrupted attempt left."""
    finished, why = provenance.completed(out, key)
    if not bool(cfg.get("force", False)) and finished:
        # printed, not logged: a skipped job leaves its folder (run.log included) untouched
        where = f"{portable_path(out)}, config {key[:12]}"
        print(f"skipping: already done ({where}); force=true reruns it", flush=True)
        detach_job_log(out)
        return True
    if provenance.done_hash(out) == key:  # marked done, but a result was deleted or changed
        log.warning("redoing %s: %s", portable_path(out), why)
    if provenance.remove_stale_temporaries(out):
        log.info("removed temporary files left by an interrupted run")
    if provenance.remove_unfinished_wandb_runs(out):
        log.info("removed the W&B offline runs of an earlier, unfinished attempt")
    return False


def _launcher() -> str:
    """The running job's Hydra launcher class, e.g. ``JoblibLauncher``."""
    return str(HydraConfig.get().launcher.get("_target_", "")).rsplit(".", 1)[-1]


def _job_record(out: Path, key: str, multirun: bool) -> provenance.JobRecord:
    hc = HydraConfig.get()
    launcher = _launcher()
    job = {"job": hc.job.name, "job_num": hc.job.num if multirun else None, "output_dir": portable_path(out),
           "launcher": launcher, "launcher_job_id": OmegaConf.select(hc.job, "id", default=None)}  # type: ignore[arg-type]  # fmt: skip
    return provenance.JobRecord(out, key, [str(o) for o in hc.overrides.task], job).begin()


@hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
def hydra_main(cfg: DictConfig) -> str:
    """Run the composed job and write its results into the Hydra run folder.

    A job whose folder holds a ``DONE`` marker for the same resolved config is skipped without
    touching any file (``force=true`` reruns it); otherwise ``provenance.json`` records the run and
    ``DONE`` is written last (:mod:`ttamer.app.provenance`). In a multirun a failing job is
    recorded (status ``failed``) and the sweep goes on; a single run exits non-zero (a bad input,
    :class:`FieldError`: one line and status 2). Returns the job's status."""
    from hydra.types import RunMode

    hc = HydraConfig.get()
    out, multirun = Path(hc.runtime.output_dir), hc.mode == RunMode.MULTIRUN
    container, key = _config_key(cfg)
    if _already_done(cfg, out, key):
        return "skipped"
    record = _job_record(out, key, multirun)
    try:
        run: Run = build_run(cfg)  # every value checked before W&B starts
        if container is None:
            OmegaConf.to_container(cfg, resolve=True)  # raises the resolution error
        tracked = wandb_config(container, _launcher()) if container is not None else None
        logger = ExperimentLogger(job_logger_config(run.config.logger, out), job_type=study_kind(run))
        with logger.start(tracked) as tracker:
            metrics = run_job(run, out, tracker)
    except Exception as exc:
        record.finish("failed", exc)
        return _failed(exc, out, multirun)
    except BaseException as exc:  # KeyboardInterrupt, SystemExit: no DONE marker
        record.finish("interrupted", exc)
        raise
    record.finish("done", n_metrics=len(metrics))
    log.info("wrote results to %s (%d metrics)", portable_path(out), len(metrics))
    return "done"


def _failed(exc: Exception, out: Path, multirun: bool) -> str:
    """A failed job: recorded, and the sweep goes on; a single run stops (a bad input: one line,
    exit status 2)."""
    if multirun:
        log.exception("job failed (%s): %s: %s", out, type(exc).__name__, exc)
        return "failed"
    if isinstance(exc, FieldError):
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    raise exc


def main() -> None:
    """``ttamer-run``: check the command line (:mod:`ttamer.app.command`), then hand it to Hydra."""
    sys.argv = [sys.argv[0], *prepare_argv(sys.argv[1:])]
    hydra_main()


if __name__ == "__main__":
    # run the module's own copy (not __main__'s), so launcher workers pickle the task function
    # by reference and import this module, with its set-up, to run it
    from ttamer.app.run import main as _main

    _main()
