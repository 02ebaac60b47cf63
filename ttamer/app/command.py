"""The ``ttamer-run`` command line before Hydra runs it: every job the command would run is
composed and checked first, and a multirun gets a sweep folder named after its overrides."""

from __future__ import annotations

import hashlib
import itertools
import re
import sys
from typing import Any

from ttamer.app.wandb_logger import LoggerConfig
from ttamer.errors import FieldError
from ttamer.loading import one_line

# Hydra flags after which the command runs no job (help, config printing, completion)
NO_RUN_FLAGS = ("-h", "--help", "--hydra-help", "--version", "-i", "--info", "-c", "--cfg", "--resolve",
                "-p", "--package", "-sc", "--shell-completion")  # fmt: skip
OWN_CONFIG_FLAGS = ("-cp", "--config-path", "-cn", "--config-name", "-cd", "--config-dir")
NOT_IN_SWEEP_NAME = ("logger", "progress", "force", "hydra")  # do not change what a sweep computes
MAX_CHECKED_JOBS = 64


def prepare_argv(argv: list[str]) -> list[str]:
    """``argv`` checked (see :func:`prepare_command`), or one line on stderr and exit status 2."""
    try:
        return prepare_command(argv)
    except FieldError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        raise SystemExit(2) from None


def prepare_command(argv: list[str]) -> list[str]:
    """Validate the jobs of ``argv`` (misspelt keys, wrong types, unknown choices, values out of
    range: a FieldError naming the key); the arguments to give Hydra. A multirun without
    ``hydra.sweep.dir`` goes to ``multirun/<name>-<hash of its overrides>``, so the same command
    run again finds the same sweep folder and skips the jobs already done."""
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
    check_jobs(job_overrides(overrides))
    return argv + _sweep_folders(overrides, words) if multirun else argv


def _sweep_folders(overrides: list[Any], words: list[str]) -> list[str]:
    """Overrides that name the sweep folder (and submitit's job files, beside it) after the
    command, unless the command names them."""
    extra: list[str] = []
    if not any(o.key_or_group.startswith("hydra.sweep.dir") for o in overrides):
        extra.append(f"hydra.sweep.dir=multirun/{sweep_name(words)}")
    launcher = next((str(o.value()) for o in overrides if o.key_or_group == "hydra/launcher"), "")
    if ("submitit" in launcher or "slurm" in launcher) and not any(
        "submitit_folder" in o.key_or_group for o in overrides
    ):
        # submitit's job files beside, not inside, the sweep folder: a rerun writes nothing there
        extra.append(f"hydra.launcher.submitit_folder=multirun/.submitit/{sweep_name(words)}/%j")
    return extra


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


def check_jobs(jobs: list[list[str]]) -> None:
    """Compose every job's config and build it as the run would, without running anything."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from ttamer.app.configs import build_run
    from ttamer.app.run import CONF_DIR
    from ttamer.app.studies import study_config

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):  # once for every job
        for job in jobs:
            try:
                cfg = compose("config", overrides=job, return_hydra_config=True)
                HydraConfig.instance().set_config(cfg)  # ${hydra:...} values resolve as in a run
                study_config(build_run(cfg))  # the library's configs, each checking its values
            except FieldError:
                raise
            except Exception as exc:  # composition, OmegaConf
                raise config_error(exc) from None


def config_error(exc: Exception) -> FieldError:
    """A Hydra / OmegaConf failure as one :class:`FieldError` line: its first line, the key
    OmegaConf names (``full_key``) or the config group Hydra could not find, and that group's
    options."""
    cause = exc.__cause__ if getattr(exc.__cause__, "full_key", None) else exc  # OmegaConf's own
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    head = (lines[0] if lines else type(exc).__name__).removeprefix("In 'config': ")
    key = str(getattr(cause, "full_key", None) or "config")
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
    kept = sorted(w for w in words if not w.lstrip("+~").startswith(NOT_IN_SWEEP_NAME))
    digest = hashlib.sha256("\n".join(kept).encode()).hexdigest()[:8]
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", "_".join(kept)).strip("-._")[:48] or "default"
    return f"{readable}-{digest}"
