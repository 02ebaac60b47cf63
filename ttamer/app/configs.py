"""Hydra's structured configs are the library's own dataclasses (README: configuration).

:func:`register_configs` stores, in Hydra's ConfigStore and outside the groups users choose
from, ``schema/workload/<name>`` for every registered workload's config class
(:func:`ttamer.workloads.base.workloads`) and for the synthetic workload, ``schema/<group>`` for
the other groups and ``schema/config`` for the top level. A YAML option in ``conf/`` extends its
schema (``defaults: [/schema/workload/digits@_here_, _self_]``) and sets only what differs from
the dataclass defaults, or what must be interpolated (``${data_root}``). A misspelt key or a
value of the wrong type then fails when Hydra composes the config, naming the key.

:func:`build_run` turns the composed config back into those dataclasses (lists become tuples);
their ``__post_init__`` checks values, and a :class:`~ttamer.errors.FieldError` from any depth
is re-raised with the dotted key (``workload.train.lr``). :func:`check_run` adds the checks that
span groups (a cost source or structure that does not apply to the workload).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

from ttamer.app.wandb_logger import LoggerConfig
from ttamer.errors import FieldError
from ttamer.model.chain import check_lambda
from ttamer.policies import POLICIES, default_trace_policies
from ttamer.studies.graph_study import STRUCTURES as GRAPH_STRUCTURES
from ttamer.studies.synthetic_study import SYNTHETIC_POLICIES, default_synthetic_policies
from ttamer.studies.synthetic_workload import LamGrid, SyntheticWorkload
from ttamer.workloads.base import WorkloadConfig, workloads

STRUCTURES = ("chain", *GRAPH_STRUCTURES)  # chain: the trace study; skip, tree: the graph study
COST_SOURCES = ("measured", "timm_table")
TIMM_TABLE_WORKLOADS = ("imagenet_timm",)  # the only workloads timm's tables price


def _subset(values: tuple[str, ...], allowed: typing.Iterable[str], key: str) -> None:
    allowed = tuple(allowed)
    bad = [v for v in values if v not in allowed]
    if bad:
        raise FieldError(key, f"unknown {bad}; choose from {' | '.join(allowed)}")


@dataclass(frozen=True)
class PolicyGroup:
    """The compared policies: ``compare`` on synthetic chains, ``trace`` on traces."""

    name: str = "all"
    compare: tuple[str, ...] = default_synthetic_policies()
    trace: tuple[str, ...] = default_trace_policies()

    def __post_init__(self) -> None:
        _subset(self.compare, SYNTHETIC_POLICIES, "compare")
        _subset(self.trace, POLICIES, "trace")


@dataclass(frozen=True)
class WeightsGroup:
    """Trade-off weights lam of J = lam*loss + (1-lam)*cost (the ``sweep`` group): the
    lower-bound family's ``lower_bound_lam``, the random chains' ``ratio_lams`` and the Pareto
    chain's ``lam_grid``."""

    name: str = "default"
    lower_bound_lam: float = 0.9
    ratio_lams: tuple[float, ...] = (0.9, 0.97)
    lam_grid: LamGrid = field(default_factory=LamGrid)

    def __post_init__(self) -> None:
        check_lambda(self.lower_bound_lam, "lower_bound_lam")
        check_lambda(self.ratio_lams, "ratio_lams")


@dataclass(frozen=True)
class CostGroup:
    """Where stage costs come from. ``measured``: the trace's own (measured latency, FrugalML's
    price per call, the synthetic chain's generated costs); ``timm_table``: timm's published
    benchmark tables (``imagenet_timm`` cascades only)."""

    name: str = "measured"

    def __post_init__(self) -> None:
        if self.name not in COST_SOURCES:
            raise FieldError("name", f"must be one of {' | '.join(COST_SOURCES)}, got {self.name!r}")


@dataclass(frozen=True)
class StructureGroup:
    """What a policy may run next (README: graphs). ``chain``: the stages in order; ``skip``:
    any later stage; ``tree``: any stage whose parent has run, ``parents[v]`` the 0-based parent
    of stage ``v`` (``None``: the root). ``chain_policies``: chain policies scored beside a graph
    (``static`` included); ``chain_orders``: also the best chain order (separate models)."""

    name: str = "chain"
    parents: tuple[int | None, ...] = ()
    chain_policies: tuple[str, ...] = ()
    chain_orders: bool = False

    def __post_init__(self) -> None:
        if self.name not in STRUCTURES:
            raise FieldError("name", f"must be one of {' | '.join(STRUCTURES)}, got {self.name!r}")
        if self.name == "chain":
            return
        _subset(self.chain_policies, POLICIES, "chain_policies")
        if "static" not in self.chain_policies:
            raise FieldError("chain_policies", "must include static (the single-stage reference)")
        if self.name == "tree" and not self.parents:
            raise FieldError("parents", "a tree needs each stage's parent (null for the root)")


@dataclass(frozen=True)
class RunConfig:
    """The top level (``conf/config.yaml``); ``workload`` is typed by its option's schema.
    ``seed`` drives every random choice; ``force`` reruns a job already done; ``data_root``
    holds the datasets (relative paths from the launch folder)."""

    workload: Any = MISSING
    policy: PolicyGroup = field(default_factory=PolicyGroup)
    sweep: WeightsGroup = field(default_factory=WeightsGroup)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    cost: CostGroup = field(default_factory=CostGroup)
    structure: StructureGroup = field(default_factory=StructureGroup)
    seed: int = 0
    progress: bool = True
    force: bool = False
    data_root: str = "../shared/data"

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise FieldError("seed", f"must be an integer >= 0, got {self.seed}")


GROUPS: dict[str, type] = {
    "policy": PolicyGroup,
    "sweep": WeightsGroup,
    "logger": LoggerConfig,
    "cost": CostGroup,
    "structure": StructureGroup,
}


def workload_configs() -> dict[str, type]:
    """Every workload name -> its config class (the synthetic one and the registered ones)."""
    return {"synthetic": SyntheticWorkload, **{n: s.config for n, s in workloads().items()}}


def schema_node(cls: type) -> DictConfig:
    """``cls`` as an OmegaConf node Hydra can merge YAML into: typed by the dataclass, but not
    read-only (OmegaConf makes frozen dataclasses read-only; the library's configs are frozen)."""
    node = OmegaConf.structured(cls)
    _writable(node)
    return node


def _writable(node: DictConfig) -> None:
    OmegaConf.set_readonly(node, None)
    for key in node.keys():
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
            _writable(child)


def register_configs() -> None:
    """Store every schema in Hydra's ConfigStore (see the module docstring). Idempotent."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(group="schema", name="config", node=schema_node(RunConfig))
    for name, cls in workload_configs().items():
        store.store(group="schema/workload", name=name, node=schema_node(cls))
    for group, cls in GROUPS.items():
        store.store(group="schema", name=group, node=schema_node(cls))


T = TypeVar("T")


def build(cls: type[T], node: DictConfig, path: str = "") -> T:
    """The dataclass ``cls`` from the composed ``node`` (interpolations resolved, lists as
    tuples, nested dataclasses built the same way); a FieldError names the dotted key below
    ``path``."""
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if OmegaConf.is_missing(node, f.name):  # ``???`` (a key that is absent is not missing)
            raise FieldError(_join(path, f.name), "must be set")
        if f.name not in node:
            continue
        kwargs[f.name] = _value(hints[f.name], node[f.name], _join(path, f.name))
    try:
        return cls(**kwargs)
    except FieldError as exc:
        raise FieldError(_join(path, exc.field), exc.message) from None


def _value(hint: Any, value: Any, path: str) -> Any:
    if isinstance(value, DictConfig):
        cls = OmegaConf.get_type(value)
        if cls is not None and is_dataclass(cls):
            return build(cls, value, path)
        return OmegaConf.to_container(value, resolve=True)
    if isinstance(value, ListConfig):
        return tuple(_value(None, v, path) for v in value)
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


@dataclass(frozen=True)
class Run:
    """A composed job as library objects: ``workload`` a :class:`WorkloadConfig` (a trace
    workload) or :class:`SyntheticWorkload`; the rest as in :class:`RunConfig`."""

    config: RunConfig
    workload: WorkloadConfig | SyntheticWorkload


def build_run(cfg: DictConfig) -> Run:
    """The job's :class:`Run` from its composed config, every value checked (FieldError with
    the dotted key)."""
    name = str(cfg.workload.name)
    known = workload_configs()
    if known.get(name) is not OmegaConf.get_type(cfg.workload):
        raise FieldError("workload.name", f"{name!r} is not this workload's name; choose the workload with "
                         f"workload=<name>, one of {sorted(known)}")  # fmt: skip
    config = build(RunConfig, cfg)
    run = Run(config, config.workload)
    check_run(run)
    return run


def check_run(run: Run) -> None:
    """What spans groups: the cost source and the structure apply to the workload; the cache
    folder is not a file."""
    w, cost, structure = run.workload, run.config.cost.name, run.config.structure.name
    if cost == "timm_table" and w.name not in TIMM_TABLE_WORKLOADS:
        where = ", ".join(TIMM_TABLE_WORKLOADS)
        raise FieldError("cost", f"cost={cost} applies to {where}, not workload {w.name}")
    source = getattr(w, "cost_source", cost)
    if source != cost:
        raise FieldError(
            "workload.cost_source", f"is {source!r} but cost={cost}: choose the costs with cost=<option>"
        )
    if structure != "chain" and isinstance(w, SyntheticWorkload):
        raise FieldError("structure", f"structure={structure} needs a trace workload, not synthetic")
    cache_dir = getattr(w, "cache_dir", None)
    if cache_dir is not None and Path(cache_dir).expanduser().is_file():
        raise FieldError("workload.cache_dir", f"{cache_dir} is a file, not a folder for cached traces")
