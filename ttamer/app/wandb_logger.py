"""Experiment tracking with Weights & Biases, behind a small logger that can also do nothing.

Offline by default: runs are written under ``<dir>/wandb/offline-run-*`` and uploaded later
with ``wandb sync <dir>/wandb/offline-run-*``. ``WANDB_MODE`` in the environment wins over the
configured mode, so ``WANDB_MODE=disabled`` turns every logger off (tests do this); wandb's
aliases ``dryrun`` (offline) and ``run`` (online) are understood. ``wandb`` is imported only
when a run actually starts. No Hydra here: :mod:`ttamer.app.run` builds the :class:`LoggerConfig`.

Online logging: ``ttamer-run logger.mode=online`` (or ``WANDB_MODE=online``), after
``wandb login`` (or with ``WANDB_API_KEY`` set); ``logger.project=...`` and ``WANDB_ENTITY``
choose where runs go. In the Hydra harness every job is one run whose files live in the job
folder (``<job>/wandb/``); the jobs of a multirun share the W&B ``group`` named after the sweep
folder, and each is named after its job folder (see :func:`ttamer.app.run.job_logger_config`).

The app's resolved config is logged under ``resolved``, beside the top-level keys the W&B runs
table pivots on (:func:`wandb_config`): ``workload``, ``policy_set``, ``seed``, ``structure`` and
``launcher`` (README: W&B).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import pandas as pd

from ttamer.errors import FieldError

BACKENDS = ("wandb", "none")
MODES = ("offline", "online", "disabled")
MODE_ALIASES = {"dryrun": "offline", "run": "online"}  # wandb's older spellings of WANDB_MODE


@dataclass(frozen=True)
class LoggerConfig:
    """``backend``: ``"wandb"`` or ``"none"``; ``mode``: ``"offline"``, ``"online"`` or
    ``"disabled"`` (overridden by ``WANDB_MODE``); ``dir``: folder that receives ``wandb/``
    (``None``: wandb's default, ``WANDB_DIR`` or the working directory)."""

    backend: str = "wandb"
    mode: str = "offline"
    project: str = "ttamer"
    group: str | None = None
    name: str | None = None
    dir: str | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise FieldError("backend", f"must be one of {' | '.join(BACKENDS)}, got {self.backend!r}")
        if self.mode not in MODES:
            raise FieldError("mode", f"must be one of {' | '.join(MODES)}, got {self.mode!r}")

    def effective_mode(self) -> str:
        """The mode a run will use: ``WANDB_MODE`` if set, else ``mode``; ``"disabled"`` for
        the ``none`` backend."""
        if self.backend == "none":
            return "disabled"
        env = os.environ.get("WANDB_MODE", "").strip().lower()
        env = MODE_ALIASES.get(env, env)
        if env and env not in MODES:
            raise FieldError("WANDB_MODE", f"(environment) must be one of {', '.join(MODES)}, got {env!r}")
        return env or self.mode


PIVOT_KEYS = {
    "workload": "workload.name",
    "policy_set": "policy.name",
    "seed": "seed",
    "structure": "structure.name",
}
"""Top-level W&B config key -> dotted key of the app's resolved config."""


def _select(config: Mapping[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def wandb_config(resolved: Mapping[str, Any], launcher: str | None = None) -> dict[str, Any]:
    """The W&B config of a job's run: the :data:`PIVOT_KEYS` and ``launcher`` (``BasicLauncher``,
    ``JoblibLauncher``, ...) at the top level, so the runs table pivots on them, and the whole
    resolved config under ``resolved``."""
    keys = {key: _select(resolved, dotted) for key, dotted in PIVOT_KEYS.items()}
    keys["launcher"] = launcher
    return {**{k: v for k, v in keys.items() if v is not None}, "resolved": dict(resolved)}


class ExperimentLogger:
    """Log a config, scalar metrics, tables and images to one W&B run, or nowhere.

    Use as a context manager, or call :meth:`start` and :meth:`finish`. Every method is a
    no-op when the effective mode is ``disabled`` (or the backend is ``none``)."""

    def __init__(self, config: LoggerConfig | None = None, job_type: str | None = None):
        self.config = config or LoggerConfig(backend="none")
        self.job_type = job_type
        self._run: Any = None
        self._wandb: Any = None

    @classmethod
    def none(cls) -> ExperimentLogger:
        """A logger that does nothing."""
        return cls(LoggerConfig(backend="none"))

    @property
    def active(self) -> bool:
        return self._run is not None

    @property
    def run_dir(self) -> Path | None:
        """The folder of the current W&B run (``.../wandb/offline-run-*``), if any."""
        return Path(self._run.dir).parent if self._run is not None else None

    def start(self, run_config: Mapping[str, Any] | None = None) -> ExperimentLogger:
        """Open the run and record ``run_config`` (a plain nested dict) as its config."""
        mode = self.config.effective_mode()
        if mode == "disabled" or self._run is not None:
            return self
        if os.environ.get("WANDB_MODE", mode) != mode:  # empty, another case, an alias: wandb
            os.environ["WANDB_MODE"] = mode  # validates it itself; give it the mode decided here
        import wandb  # lazy: heavy, and unused when logging is off

        cfg = self.config
        if cfg.dir is not None:
            Path(cfg.dir).mkdir(parents=True, exist_ok=True)
        self._wandb = wandb
        self._run = wandb.init(
            project=cfg.project,
            group=cfg.group,
            name=cfg.name,
            dir=cfg.dir,
            tags=list(cfg.tags),
            job_type=self.job_type,
            mode=mode,  # type: ignore[arg-type]  # validated against MODES
            config=dict(run_config or {}),
            reinit="finish_previous",
        )
        return self

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Scalar metrics; also written to the run summary."""
        if self._run is None:
            return
        self._run.log(dict(metrics), step=step)
        self._run.summary.update(dict(metrics))

    def log_table(self, key: str, table: pd.DataFrame) -> None:
        """A DataFrame as a ``wandb.Table``."""
        if self._run is None:
            return
        self._run.log({key: self._wandb.Table(dataframe=table.reset_index(drop=True))})

    def log_image(self, key: str, path: str | os.PathLike[str], caption: str | None = None) -> None:
        """A PNG file as a ``wandb.Image``."""
        if self._run is None:
            return
        self._run.log({key: self._wandb.Image(str(path), caption=caption)})

    def log_artifact(
        self, name: str, kind: str, folder: str | os.PathLike[str], metadata: Mapping[str, Any]
    ) -> None:
        """Every file under ``folder`` as one versioned W&B artifact ``name`` of type ``kind``."""
        if self._run is None:
            return
        artifact = self._wandb.Artifact(name, type=kind, metadata=dict(metadata))
        artifact.add_dir(str(folder))
        self._run.log_artifact(artifact)

    def log_reference(
        self, name: str, kind: str, path: str | os.PathLike[str], metadata: Mapping[str, Any]
    ) -> None:
        """The file or folder ``path`` as artifact ``name`` of type ``kind``, by reference
        (``file://`` URI and checksums; nothing is copied into the run)."""
        if self._run is None:
            return
        artifact = self._wandb.Artifact(name, type=kind, metadata=dict(metadata))
        artifact.add_reference(Path(path).resolve().as_uri())
        self._run.log_artifact(artifact)

    def log_line(self, key: str, table: pd.DataFrame, x: str, y: str, stroke: str, title: str) -> None:
        """An interactive line chart (W&B's ``wandb/line/v0``): one line per value of ``stroke``."""
        if self._run is None:
            return
        data = self._wandb.Table(dataframe=table[[x, y, stroke]].reset_index(drop=True))
        self._run.log({key: self._wandb.plot.line(data, x, y, stroke=stroke, title=title)})

    def log_scatter(self, key: str, table: pd.DataFrame, x: str, y: str, title: str) -> None:
        """An interactive scatter chart (W&B's ``wandb/scatter/v0``) of ``table``'s columns."""
        if self._run is None:
            return
        data = self._wandb.Table(dataframe=table.reset_index(drop=True))
        self._run.log({key: self._wandb.plot.scatter(data, x, y, title=title)})

    def finish(self) -> None:
        if self._run is not None:
            self._run.finish()
            self._run = None

    def __enter__(self) -> ExperimentLogger:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._run is not None:
            self._run.finish(exit_code=1 if exc_type is not None else 0)
            self._run = None
