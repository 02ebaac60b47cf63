"""What every trace workload shares (README: workloads): its config's study fields, the protocol
its implementation module follows, and a registry filled by a decorator on each config class.

A workload is one package under ``ttamer/workloads/`` plus its YAML in ``conf/workload/``. Its
``__init__.py`` imports only its config module (no torch), whose frozen dataclass subclasses
:class:`WorkloadConfig` and is decorated with :func:`register_workload`::

    @register_workload("digits", implementation="ttamer.workloads.vision.digits.produce")
    @dataclass(frozen=True)
    class DigitsConfig(WorkloadConfig):
        name: str = "digits"
        test_size: int = 500
        ...

The dataclass is the single source of the workload's fields, types and defaults: the app
registers it as the Hydra schema of ``conf/workload/<name>.yaml`` and turns the composed config
back into it (lists become tuples, see :func:`freeze`); ``__post_init__`` checks values and
raises :class:`~ttamer.errors.FieldError` naming the field by its dotted path inside the
workload (``train.lr``). The implementation module (torch, timm, transformers) is imported only
when the workload runs; it provides the functions of :class:`Implementation`.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, Protocol, TypeVar, cast

from ttamer.errors import FieldError, check_bounds
from ttamer.fitting.chain import FitConfig
from ttamer.traces.trace import Trace

REFERENCES = ("best_stage", "last_stage")  # savings measured at the best or the last stage's accuracy
TARGETS = ("label", "last_stage")  # accuracy against the label, or agreement with the last stage


@dataclass(frozen=True)
class WorkloadConfig:
    """Fields every trace workload has: where its trace is cached, and how the trace study fits
    and scores policies on it (these do not change the trace: :data:`STUDY_FIELDS`).

    ``cache_dir``: trace cache folder (relative paths from the launch folder). ``recompute``:
    rebuild the cached trace. ``n_splits`` random fit/test splits of the trace's samples,
    ``fit_fraction`` of them to fit on. ``reference``: savings at the accuracy of the best or of
    the last stage (:data:`REFERENCES`), and ``deltas`` accuracy points (percent) below it.
    ``target``: :data:`TARGETS`. ``fit``: how a trace becomes a chain."""

    name: str = ""
    cache_dir: str = ".cache/ttamer/traces"
    recompute: bool = False
    n_splits: int = 10
    fit_fraction: float = 0.5
    reference: str = "best_stage"
    deltas: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0)
    target: str = "label"
    fit: FitConfig = field(default_factory=FitConfig)

    keyed_unless_default: ClassVar[Mapping[str, Any]] = {}
    """Fields added after traces were cached (dotted paths for nested ones) and their defaults:
    in the trace key only when they differ, so that earlier traces keep their keys."""

    def __post_init__(self) -> None:
        if self.reference not in REFERENCES:
            raise FieldError("reference", f"must be one of {REFERENCES}, got {self.reference!r}")
        if self.target not in TARGETS:
            raise FieldError("target", f"must be one of {TARGETS}, got {self.target!r}")
        check_bounds(self, ("n_splits",), 1)
        if not 0.0 < self.fit_fraction < 1.0:
            raise FieldError("fit_fraction", f"must lie in (0, 1), got {self.fit_fraction}")

    def tag(self) -> str:
        """The prefix of this workload's result files (``<tag>_points.csv``, ...)."""
        return self.name

    def trace_key(self, seed: int) -> dict[str, Any]:
        """The fields that make the trace, with ``seed``: plain data, the trace cache's key
        (without the fields of :attr:`keyed_unless_default` at their defaults)."""
        data = {k: v for k, v in _plain(self).items() if k not in STUDY_FIELDS}
        for path, default in self.keyed_unless_default.items():
            *parents, leaf = path.split(".")
            node = data
            for part in parents:
                node = node[part]
            if leaf in node and node[leaf] == default:
                del node[leaf]
        data["seed"] = int(seed)
        return data


# fields of WorkloadConfig that do not change the trace (caching, and how the trace is studied)
STUDY_FIELDS = tuple(f.name for f in fields(WorkloadConfig) if f.name != "name")


def _plain(obj: Any) -> Any:
    """A dataclass as nested dicts and lists (tuples as lists, as in a JSON file)."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    return obj


C = TypeVar("C")


def freeze(obj: C) -> C:
    """``obj`` with every list inside it (at any depth of dataclasses) turned into a tuple: what
    a config dataclass holds after OmegaConf built it from YAML lists."""
    if not (is_dataclass(obj) and not isinstance(obj, type)):
        return obj
    changes: dict[str, Any] = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        new = tuple(freeze(v) for v in value) if isinstance(value, list) else freeze(value)
        if new is not value:
            changes[f.name] = new
    return dataclasses.replace(obj, **changes) if changes else obj


class Implementation(Protocol):
    """The functions a workload's implementation module provides (torch may be imported there).

    ``produce`` trains or loads the model, runs it on the held-out split and returns the trace
    with measured per-stage cost (it may write side files, e.g. a latency CSV, into
    ``out_dir``). Workloads that can be served also provide ``produce_with_model`` (the trace and
    the trained network), ``untrained_model`` (the architecture, to load saved weights into) and
    ``held_out_requests`` (the served model and the trace's samples as requests, in the trace's
    order)."""

    def produce(self, config: Any, seed: int, out_dir: Path) -> Trace: ...


@dataclass(frozen=True)
class WorkloadSpec:
    """A registered workload: its ``name``, config class and implementation module's path;
    ``cache``: keep its traces in the trace cache (off for workloads that only read files)."""

    name: str
    config: type[WorkloadConfig]
    implementation: str
    cache: bool = True

    def module(self) -> ModuleType:
        """The implementation module (imported now)."""
        return importlib.import_module(self.implementation)

    def function(self, name: str) -> Callable[..., Any]:
        """``name`` from the implementation module; FieldError when this workload lacks it."""
        fn = getattr(self.module(), name, None)
        if fn is None:
            raise FieldError("workload.name", f"workload {self.name!r} has no {name}() (cannot be served)")
        return cast(Callable[..., Any], fn)

    def produce(self, config: WorkloadConfig, seed: int, out_dir: Path) -> Trace:
        trace: Trace = self.function("produce")(config, seed, out_dir)
        return trace


_REGISTRY: dict[str, WorkloadSpec] = {}

W = TypeVar("W", bound=type[WorkloadConfig])


def register_workload(name: str, implementation: str, cache: bool = True) -> Callable[[W], W]:
    """Class decorator: register a :class:`WorkloadConfig` subclass as workload ``name``,
    implemented by the module ``implementation`` (a dotted path, imported lazily); ``cache``:
    see :class:`WorkloadSpec`."""

    def decorate(cls: W) -> W:
        known = _REGISTRY.get(name)
        if known is not None and known.config.__qualname__ != cls.__qualname__:
            raise ValueError(f"workload {name!r} registered twice ({known.config} and {cls})")
        _REGISTRY[name] = WorkloadSpec(name, cls, implementation, cache)
        return cls

    return decorate


def workloads() -> dict[str, WorkloadSpec]:
    """Every registered workload by name: imports each package under ``ttamer.workloads`` (their
    ``__init__`` modules import only configs), so a new workload needs no list edited."""
    import ttamer.workloads as root

    for info in pkgutil.walk_packages(root.__path__, prefix="ttamer.workloads."):
        if info.ispkg:
            importlib.import_module(info.name)
    return dict(sorted(_REGISTRY.items()))


def workload(name: str) -> WorkloadSpec:
    """The workload registered as ``name`` (FieldError ``workload.name`` listing the known ones)."""
    known = workloads()
    if name not in known:
        raise FieldError("workload.name", f"unknown workload {name!r}; choose from {sorted(known)}")
    return known[name]


def resolve_path(path: str | Path) -> Path:
    """A path from a config: ``~`` expanded; relative paths are taken from the launch folder (the
    current directory: ``ttamer-run`` does not change it)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else Path.cwd() / p
