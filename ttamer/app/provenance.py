"""Provenance, resumable jobs and the multirun summary of the Hydra harness (``ttamer.app.run``).

Every job folder receives, atomically:

* ``provenance.json``: the git commit of the code (and whether the work tree is dirty; ``null``
  when git or the repository is missing), package versions, Python, platform, host, the command
  line and its overrides, the hash of the resolved config, start/end time and the job status
  (``running`` while it runs, then ``done``, ``failed`` with the error, or ``interrupted``);
* ``DONE``, written **last**, only after every output and ``provenance.json`` (status ``done``)
  exist. It holds the config hash and the SHA-256 of every result file. A job started on a
  folder whose ``DONE`` matches its config and whose results are all there unchanged is skipped
  without touching any file; a killed job leaves no ``DONE`` and is redone (its files are
  overwritten atomically, its unfinished W&B offline runs removed), and so is a job one of whose
  results was deleted or changed; ``force=true`` reruns anyway.

:class:`MultirunSummary` is a Hydra callback (registered under ``hydra.callbacks`` in
``conf/config.yaml``): at the end of a multirun it prints a table of the jobs (status, error) and
writes ``multirun_summary.csv`` in the sweep folder, logs the W&B summary run of the sweep when
the jobs log to W&B and some job ran (:mod:`ttamer.app.sweep_summary`); it exits non-zero when a
job failed.
No Hydra in the rest of this module except the callback.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import traceback
from collections.abc import Mapping, Sequence
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from ttamer.fileio import atomic_write_bytes, portable_path

PROVENANCE = "provenance.json"
DONE = "DONE"
SUMMARY = "multirun_summary.csv"

# top-level config keys that do not change a job's results: left out of the config hash, so
# rerunning with another logger, without progress bars or with force=true still finds the job done
NOT_IN_HASH = ("force", "progress", "logger")

PACKAGES = (
    "ttamer",
    "numpy",
    "pandas",
    "scipy",
    "matplotlib",
    "torch",
    "torchvision",
    "timm",
    "transformers",
    "scikit-learn",
    "hydra-core",
    "omegaconf",
    "wandb",
)


def now_utc() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def config_hash(config: Mapping[str, Any], exclude: Sequence[str] = NOT_IN_HASH) -> str:
    """SHA-256 of the resolved config (a plain nested dict) without the ``exclude`` top-level keys,
    serialised as canonical JSON."""
    kept = {k: v for k, v in config.items() if k not in exclude}
    text = json.dumps(kept, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    """Installed versions (from the distribution metadata: nothing is imported); ``None`` if absent."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _git(args: Sequence[str], cwd: Path) -> str | None:
    exe = shutil.which("git")
    if exe is None:
        return None
    try:
        proc = subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


@lru_cache(maxsize=4)
def git_state(path: str | None = None) -> dict[str, Any]:
    """``commit``, ``dirty`` (tracked files modified; untracked files do not count) and ``root``
    of the git work tree holding ``path`` (default: this package's source); ``None`` values when
    git or the repository is missing."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    commit = _git(["rev-parse", "HEAD"], where)
    if commit is None:
        return {"commit": None, "dirty": None, "root": None}
    status = _git(["status", "--porcelain", "--untracked-files=no"], where)
    return {
        "commit": commit,
        "dirty": None if status is None else bool(status),
        "root": _portable(_git(["rev-parse", "--show-toplevel"], where)),
    }


def _portable(path: str | None) -> str | None:
    return None if path is None else portable_path(path)


def code_and_machine() -> dict[str, Any]:
    """Code and machine: git state, package versions, Python, platform, host."""
    return {
        "git": git_state(),
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "python_executable": portable_path(sys.executable),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "host": socket.gethostname(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }


def write_json(path: Path, record: Mapping[str, Any]) -> None:
    atomic_write_bytes(path, (json.dumps(record, indent=2, sort_keys=False, default=str) + "\n").encode())


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or ``None`` if missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def done_hash(out: Path) -> str | None:
    """The config hash recorded by the ``DONE`` marker of ``out``, or ``None`` (no marker)."""
    marker = read_json(out / DONE)
    return None if marker is None else str(marker.get("config_hash"))


# files of a job folder that are not its results: bookkeeping, logs, Hydra's copy of the config,
# W&B's own files (they change as W&B syncs)
NOT_OUTPUTS = (DONE, PROVENANCE, "run.log")
NOT_OUTPUT_DIRS = (".hydra", "wandb")


def output_hashes(out: Path) -> dict[str, str]:
    """SHA-256 of every result file of a job folder (relative path -> hex digest)."""
    hashes = {}
    for p in sorted(out.rglob("*")):
        rel = p.relative_to(out)
        if not p.is_file() or rel.parts[0] in NOT_OUTPUT_DIRS or rel.as_posix() in NOT_OUTPUTS:
            continue
        if p.name.startswith(".") and p.name.endswith(".tmp"):
            continue
        hashes[rel.as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return hashes


def completed(out: Path, key: str) -> tuple[bool, str]:
    """Whether the job in ``out`` is done for config hash ``key`` with its results intact:
    ``(True, "")``, or ``(False, why)`` (no marker, another config, a result changed or gone)."""
    marker = read_json(out / DONE)
    if marker is None:
        return False, "no DONE marker"
    if str(marker.get("config_hash")) != key:
        return False, "made by another config"
    recorded = marker.get("outputs")
    if not isinstance(recorded, dict):
        return False, "its DONE marker records no outputs"
    for rel, digest in recorded.items():
        p = out / rel
        if not p.is_file():
            return False, f"{rel} is missing"
        if hashlib.sha256(p.read_bytes()).hexdigest() != digest:
            return False, f"{rel} changed"
    return True, ""


def remove_unfinished_wandb_runs(out: Path) -> list[Path]:
    """Delete the W&B offline runs a previous attempt of this job left in ``out/wandb`` (the
    job is being redone: they are unfinished or superseded), so that ``wandb sync
    <job>/wandb/offline-run-*`` uploads only the run of the attempt that finishes."""
    folder = out / "wandb"
    stale = sorted(folder.glob("offline-run-*")) if folder.is_dir() else []
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    latest = folder / "latest-run"
    if latest.is_symlink():
        latest.unlink(missing_ok=True)
    return stale


def remove_stale_temporaries(out: Path) -> list[Path]:
    """Delete the temporary files (``.<name>.*.tmp``) that a killed atomic write left in ``out``."""
    stale = [p for p in out.glob(".*.tmp") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


class JobRecord:
    """The provenance of one job, kept in ``<out>/provenance.json``: :meth:`begin` writes it with
    status ``running`` (and removes an old ``DONE``), :meth:`finish` with the final status; for
    ``done`` it then writes ``DONE`` last."""

    def __init__(self, out: Path, config_hash: str, overrides: Sequence[str], extra: Mapping[str, Any]):
        self.out = out
        self.record: dict[str, Any] = {
            "status": "running",
            "error": None,
            "config_hash": config_hash,
            "started": now_utc(),
            "ended": None,
            "seconds": None,
            "overrides": list(overrides),
            "argv": [portable_path(a) if os.path.isabs(a) else a for a in sys.argv],
            **extra,
            **code_and_machine(),
        }
        self._t0 = dt.datetime.now(dt.timezone.utc)

    def begin(self) -> JobRecord:
        (self.out / DONE).unlink(missing_ok=True)  # outputs are about to change
        write_json(self.out / PROVENANCE, self.record)
        return self

    def finish(self, status: str, error: BaseException | None = None, **fields: Any) -> None:
        end = dt.datetime.now(dt.timezone.utc)
        self.record.update(
            status=status,
            ended=end.isoformat(timespec="milliseconds"),
            seconds=round((end - self._t0).total_seconds(), 3),
            **fields,
        )
        if error is not None:
            self.record["error"] = f"{type(error).__name__}: {error}"
            self.record["traceback"] = "".join(traceback.format_exception(error))
        write_json(self.out / PROVENANCE, self.record)
        if status == "done":  # the marker last: everything above exists
            marker = {
                "config_hash": self.record["config_hash"],
                "ended": self.record["ended"],
                "outputs": output_hashes(self.out),
            }
            write_json(self.out / DONE, marker)


# ---------------------------------------------------------------------------------------------
# multirun summary (Hydra callback)

SUMMARY_COLUMNS = ("job", "status", "error", "started", "ended", "seconds")


def summary_rows(sweep_dir: Path, job_dirs: Sequence[Path] | None = None) -> list[dict[str, Any]]:
    """One row per job folder (``job_dirs``, or every folder under ``sweep_dir`` that holds a
    ``provenance.json``), from its ``provenance.json``; a folder without one is ``unknown``."""
    if job_dirs is None:
        job_dirs = sorted(p.parent for p in sweep_dir.rglob(PROVENANCE) if "wandb" not in p.parts)
    rows = []
    for d in job_dirs:
        rec = read_json(d / PROVENANCE) or {}
        try:
            job = d.resolve().relative_to(sweep_dir.resolve()).as_posix()
        except ValueError:
            job = str(d)
        status = str(rec.get("status", "unknown"))
        if status == "done" and done_hash(d) is None:
            status = "incomplete"  # provenance says done but the marker is missing
        rows.append(
            {
                "job": job,
                "status": status,
                "error": rec.get("error") or "",
                "started": rec.get("started") or "",
                "ended": rec.get("ended") or "",
                "seconds": "" if rec.get("seconds") is None else rec["seconds"],
            }
        )
    return rows


def done_before(sweep_dir: Path, rows: Sequence[Mapping[str, Any]], started: dt.datetime) -> int:
    """How many ``done`` jobs of the summary finished before ``started`` (the multirun's start):
    the jobs this multirun skipped. Read from their ``DONE`` markers, so it holds whichever
    launcher ran the jobs (in other processes or on other machines sharing the folder)."""
    count = 0
    for r in rows:
        marker = read_json(sweep_dir / str(r["job"]) / DONE) if r["status"] == "done" else None
        try:
            ended = dt.datetime.fromisoformat(str(marker["ended"])) if marker else None
        except (KeyError, ValueError):
            ended = None
        count += ended is not None and ended < started
    return count


def summary_csv(rows: Sequence[Mapping[str, Any]]) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode()


def summary_text(rows: Sequence[Mapping[str, Any]], width: int = 100) -> str:
    def cut(s: str, n: int) -> str:
        s = " ".join(str(s).split())
        return s if len(s) <= n else s[: n - 1] + "…"

    job_w = min(max([3, *(len(str(r["job"])) for r in rows)]), 60)
    lines = [f"{'job':<{job_w}}  {'status':<11}  error"]
    lines += [f"{cut(r['job'], job_w):<{job_w}}  {r['status']:<11}  {cut(r['error'], width)}" for r in rows]
    return "\n".join(lines)


def write_if_changed(path: Path, data: bytes) -> bool:
    """Write ``data`` atomically unless ``path`` already holds exactly these bytes."""
    try:
        if path.read_bytes() == data:
            return False
    except OSError:
        pass
    atomic_write_bytes(path, data)
    return True


def portable_hydra_config(cfg: Any) -> Any:
    """A copy of Hydra's config whose machine paths (``runtime.cwd``, ``runtime.output_dir``,
    the file config sources) are relative to the launch folder (:func:`portable_path`), as
    saved in ``.hydra/hydra.yaml``; the running job keeps the original."""
    from omegaconf import OmegaConf, open_dict

    out = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    runtime = OmegaConf.select(out, "hydra.runtime")
    if runtime is None:
        return cfg
    base = str(runtime.get("cwd") or os.getcwd())
    with open_dict(out):
        for key in ("cwd", "output_dir"):
            if runtime.get(key):
                runtime[key] = portable_path(str(runtime[key]), base)
        for source in runtime.get("config_sources") or []:
            if source.get("schema") == "file" and source.get("path"):
                source["path"] = portable_path(str(source["path"]), base)
    return out


def _same_but_job_id(old: str, new: str) -> bool:
    """Whether two saved Hydra configs are equal but for ``hydra.job.id`` (a launcher's job id,
    e.g. submitit's, differs on every launch and says nothing about the results)."""
    if old == new:
        return True
    drop = re.compile(r"^    id: .*$", re.MULTILINE)  # hydra.job.id, four spaces deep
    return drop.sub("", old) == drop.sub("", new)


def keep_identical_hydra_files() -> None:
    """Make Hydra's ``.hydra/*.yaml`` writer leave a file alone when its content is unchanged, so
    rerunning a finished job rewrites nothing (Hydra writes them before the task function runs).
    Best effort: does nothing if Hydra's private ``_save_config`` is not there."""
    try:
        import hydra.core.utils as hydra_utils
        from omegaconf import OmegaConf
    except ImportError:  # pragma: no cover
        return
    original = getattr(hydra_utils, "_save_config", None)
    if original is None or getattr(original, "_ttamer_if_changed", False):
        return

    def save_config(cfg: Any, filename: str, output_dir: Path) -> None:
        path = Path(output_dir) / filename
        if filename == "hydra.yaml":
            cfg = portable_hydra_config(cfg)
        try:
            old = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            old = None
        if old is not None and _same_but_job_id(old, OmegaConf.to_yaml(cfg)):
            return
        original(cfg, filename, output_dir)

    save_config._ttamer_if_changed = True  # type: ignore[attr-defined]
    hydra_utils._save_config = save_config


try:
    from hydra.experimental.callback import Callback as _Callback
except ImportError:  # pragma: no cover - hydra is a dependency; keep the module importable
    _Callback = object  # type: ignore[assignment,misc]


class MultirunSummary(_Callback):
    """Hydra callback: collects the jobs of a multirun; at its end prints a table (job, status,
    error), writes ``multirun_summary.csv`` in the sweep folder (only if it changed) and exits
    with status 1 when a job failed. Also keeps Hydra from rewriting unchanged ``.hydra`` files."""

    def __init__(self, filename: str = SUMMARY, fail_exit_code: int = 1) -> None:
        self.filename = filename
        self.fail_exit_code = fail_exit_code
        self.job_dirs: list[Path] = []
        self.started = dt.datetime.now(dt.timezone.utc)
        keep_identical_hydra_files()

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        """Remember ``multirun.yaml`` as it is: Hydra rewrites it before the jobs run."""
        self.started = dt.datetime.now(dt.timezone.utc)
        path = Path(str(config.hydra.sweep.dir)) / "multirun.yaml"
        self._multirun_yaml = (path, path.read_bytes(), path.stat()) if path.is_file() else None

    def _restore_unchanged_multirun_yaml(self) -> None:
        """If Hydra rewrote ``multirun.yaml`` with the same bytes, give it back its old times."""
        saved = getattr(self, "_multirun_yaml", None)
        if saved is None:
            return
        path, data, stat = saved
        if path.is_file() and path.read_bytes() == data:
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    def on_job_end(self, config: Any, job_return: Any, **kwargs: Any) -> None:
        try:
            self.job_dirs.append(Path(str(config.hydra.runtime.output_dir)))
        except Exception:  # pragma: no cover - never let bookkeeping break a job
            pass

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        self._restore_unchanged_multirun_yaml()
        # jobs seen by this process (in-process launcher), else whatever the sweep folder holds
        job_dirs = list(dict.fromkeys(self.job_dirs)) or None
        rows = summary_rows(sweep_dir, job_dirs)
        write_if_changed(sweep_dir / self.filename, summary_csv(rows))
        failed = [r for r in rows if r["status"] != "done"]
        # print, not log: the root logger still writes into the last job's log file here
        print(f"\nmultirun summary ({sweep_dir / self.filename}):\n{summary_text(rows)}", flush=True)
        skipped = done_before(sweep_dir, rows, self.started)
        if skipped:
            note = f"skipped {skipped} of {len(rows)} jobs: already done (force=true reruns them)"
            print(note, flush=True)
        if skipped < len(rows):  # some job ran: the W&B summary run (if the jobs log to W&B)
            from ttamer.app.sweep_summary import log_sweep_summary

            log_sweep_summary(config, sweep_dir, rows)
        if failed:
            print(f"{len(failed)} of {len(rows)} jobs did not finish (see their provenance.json)",
                  file=sys.stderr, flush=True)  # fmt: skip
            if self.fail_exit_code:
                raise SystemExit(self.fail_exit_code)
