"""Typed schemas of the Hydra configs in ``conf/`` (used by ``ttamer/app/main.py``).

Each config group option is backed by a dataclass stored in Hydra's ConfigStore
(:func:`register_configs`): ``conf/workload/digits.yaml`` starts with ``defaults:
[/schema/workload/digits@_here_, _self_]``, so its values are merged *into*
:class:`DigitsSchema`. A misspelt key (``workload.tets_size=3``) or a value of the wrong type
(``seed=abc``, ``workload.n_splits=ten``) then fails when Hydra composes the config, with
Hydra's message naming the key. The YAML files
stay the single source of the values: every schema field is ``MISSING`` (``???``) unless the YAML
sets it, and :func:`validate_config` reports any that are left unset.

Hydra cannot check enumerations held as strings (``fit.score`` in ``max_softmax | entropy |
margin``, ``logger.mode`` in ``offline | online | disabled``, ...): :func:`validate_config` does,
raising :class:`ttamer.errors.FieldError` with the dotted name of the field. Choices are kept as
plain strings (not ``Enum`` fields) so that ``OmegaConf.to_container`` still gives plain data
(trace cache keys, W&B config). Choice lists that live in torch-importing modules are repeated
here; ``tests/test_config_schema.py`` checks that they agree.

Whole seconds: ``train.max_seconds`` is an ``int`` so that existing configs (``600``) keep their
trace cache keys (a float field would turn ``600`` into ``600.0``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf

from ttamer.errors import FieldError

# ---------------------------------------------------------------------------------------------
# pieces shared by several workloads


@dataclass
class FitSchema:
    """How a trace becomes a chain (:class:`ttamer.fitting.chain.FitConfig`)."""

    score: str = MISSING  # max_softmax | entropy | margin
    n_bins: int = MISSING
    agreement: bool = MISSING
    loss_prior: float = MISSING
    transition_prior: float = MISSING


@dataclass
class LatencySchema:
    """Per-stage latency measurement (:class:`ttamer.workloads.latency.LatencyConfig`)."""

    batch_sizes: list[int] = MISSING  # the first one gives the trace's cost
    warmup: int = MISSING
    repeats: int = MISSING
    threads: int | None = MISSING


@dataclass
class TextTrainSchema:
    """Exit-head training of the text workloads (:class:`ttamer.workloads.multi_exit.TrainConfig`)."""

    freeze_backbone: bool = MISSING
    epochs: int = MISSING
    batch_size: int = MISSING
    lr: float = MISSING
    weight_decay: float = MISSING
    max_seconds: int | None = MISSING


# ---------------------------------------------------------------------------------------------
# workload group (one schema per option; the trace-study fields close every trace workload)


@dataclass
class LowerBoundSchema:
    alpha_min: float = MISSING
    alpha_max: float = MISSING
    n_alphas: int = MISSING
    n_stages: list[int] = MISSING
    cost_scales: list[float] = MISSING


@dataclass
class SyntheticSchema:
    name: str = MISSING
    lower_bound: LowerBoundSchema = MISSING
    families: list[str] = MISSING
    chains_per_family: int = MISSING
    n_stages: int = MISSING
    n_states: int = MISSING
    pareto_family: str = MISSING


@dataclass
class FrugalmlSchema:
    name: str = MISSING
    dataset: str = MISSING
    folder: str = MISSING
    n_splits: int = MISSING
    fit_fraction: float = MISSING
    reference: str = MISSING  # best_stage | last_stage
    deltas: list[float] = MISSING
    target: str = MISSING  # label | last_stage (agreement with the last stage)
    fit: FitSchema = MISSING


@dataclass
class DigitsModelSchema:
    channels: list[int] = MISSING
    convs: list[int] = MISSING
    downsample: list[bool] = MISSING
    head_pool: list[int] = MISSING


@dataclass
class DigitsTrainSchema:
    epochs: int = MISSING
    batch_size: int = MISSING
    lr: float = MISSING
    weight_decay: float = MISSING


@dataclass
class DigitsSchema:
    name: str = MISSING
    test_size: int = MISSING
    model: DigitsModelSchema = MISSING
    train: DigitsTrainSchema = MISSING
    latency: LatencySchema = MISSING
    cache_dir: str = MISSING
    recompute: bool = MISSING
    n_splits: int = MISSING
    fit_fraction: float = MISSING
    reference: str = MISSING
    deltas: list[float] = MISSING
    target: str = MISSING  # label | last_stage (agreement with the last stage)
    fit: FitSchema = MISSING


@dataclass
class FashionMnistModelSchema:
    name: str = MISSING
    kwargs: dict[str, Any] = MISSING  # passed to timm.create_model as is
    out_indices: list[int] = MISSING
    head_dropout: float = MISSING


@dataclass
class FashionMnistTrainSchema:
    epochs: int = MISSING
    batch_size: int = MISSING
    lr: float = MISSING
    weight_decay: float = MISSING
    max_seconds: int | None = MISSING
    threads: int | None = MISSING


@dataclass
class FashionMnistSchema:
    name: str = MISSING
    data_dir: str = MISSING
    train_subsample: int | None = MISSING
    test_subsample: int | None = MISSING
    image_size: int = MISSING
    model: FashionMnistModelSchema = MISSING
    train: FashionMnistTrainSchema = MISSING
    latency: LatencySchema = MISSING
    cache_dir: str = MISSING
    recompute: bool = MISSING
    n_splits: int = MISSING
    fit_fraction: float = MISSING
    reference: str = MISSING
    deltas: list[float] = MISSING
    target: str = MISSING  # label | last_stage (agreement with the last stage)
    fit: FitSchema = MISSING


@dataclass
class Sst2MinilmSchema:
    name: str = MISSING
    data_dir: str = MISSING
    model_dir: str | None = MISSING
    train_size: int | None = MISSING
    test_size: int | None = MISSING
    vader_stage: bool = MISSING
    vader_calibration: str = MISSING  # logistic | linear
    max_length: int = MISSING
    pooling: str = MISSING  # auto | mean | last | cls
    feature_batch_size: int = MISSING
    device: str = MISSING
    threads: int | None = MISSING
    train: TextTrainSchema = MISSING
    latency: LatencySchema = MISSING
    cache_dir: str = MISSING
    recompute: bool = MISSING
    n_splits: int = MISSING
    fit_fraction: float = MISSING
    reference: str = MISSING
    deltas: list[float] = MISSING
    target: str = MISSING  # label | last_stage (agreement with the last stage)
    fit: FitSchema = MISSING


@dataclass
class GlueHfSchema:
    name: str = MISSING
    task: str = MISSING
    model: str = MISSING
    text_fields: list[str] | None = MISSING
    label_field: str = MISSING
    label_names: list[str] | None = MISSING
    num_labels: int | None = MISSING
    train_path: str | None = MISSING
    eval_path: str | None = MISSING
    hub_dataset: str = MISSING
    eval_split: str | None = MISSING
    train_size: int | None = MISSING
    eval_size: int | None = MISSING
    max_length: int = MISSING
    pooling: str = MISSING  # auto | mean | last | cls
    feature_batch_size: int = MISSING
    device: str = MISSING
    threads: int | None = MISSING
    train: TextTrainSchema = MISSING
    latency: LatencySchema = MISSING
    cache_dir: str = MISSING
    recompute: bool = MISSING
    n_splits: int = MISSING
    fit_fraction: float = MISSING
    reference: str = MISSING
    deltas: list[float] = MISSING
    target: str = MISSING  # label | last_stage (agreement with the last stage)
    fit: FitSchema = MISSING


@dataclass
class ImagenetTrainSchema:
    epochs: int = MISSING
    lr: float = MISSING
    weight_decay: float = MISSING
    head_dropout: float = MISSING
    max_seconds: float | None = MISSING


@dataclass
class ImagenetTimmSchema:
    name: str = MISSING
    mode: str = MISSING  # cascade | exits
    models: list[str] = MISSING
    model: str = MISSING
    pretrained: bool = MISSING
    data_dir: str = MISSING
    labels: str = MISSING  # auto | imagenet | folder
    train_per_class: int | None = MISSING
    val_per_class: int | None = MISSING
    batch_size: int = MISSING
    num_workers: int = MISSING
    use_test_size: bool = MISSING
    device: str = MISSING
    amp: bool = MISSING
    channels_last: bool = MISSING
    store_probs: bool = MISSING
    cost_source: str = MISSING  # = ${cost.name}: measured | timm_table
    tables_dir: str | None = MISSING
    accuracy_file: str | None = MISSING
    benchmark_file: str | None = MISSING
    out_indices: list[int] | None = MISSING
    final_head: str = MISSING  # model | linear
    train: ImagenetTrainSchema = MISSING
    latency: LatencySchema = MISSING
    cache_dir: str = MISSING
    recompute: bool = MISSING
    n_splits: int = MISSING
    fit_fraction: float = MISSING
    reference: str = MISSING
    deltas: list[float] = MISSING
    target: str = MISSING  # label | last_stage (agreement with the last stage)
    fit: FitSchema = MISSING


# ---------------------------------------------------------------------------------------------
# the other groups and the top level


@dataclass
class PolicySchema:
    name: str = MISSING
    compare: list[str] = MISSING  # synthetic study comparators
    trace: list[str] = MISSING  # trace policies (ttamer.policies.POLICIES)


@dataclass
class LamGridSchema:
    min: float = MISSING
    max: float = MISSING
    num: int = MISSING


@dataclass
class SweepSchema:
    name: str = MISSING
    lower_bound_lam: float = MISSING
    ratio_lams: list[float] = MISSING
    lam_grid: LamGridSchema = MISSING


@dataclass
class LoggerSchema:
    backend: str = MISSING  # wandb | none
    mode: str = MISSING  # offline | online | disabled
    project: str = MISSING
    group: str | None = MISSING
    name: str | None = MISSING
    dir: str | None = MISSING
    tags: list[str] = MISSING


@dataclass
class CostSchema:
    """Where the stage costs come from. ``measured``: the trace's own costs (measured latency
    of a model workload, FrugalML's price per call, the synthetic chain's generated costs);
    ``timm_table``: timm's published benchmark tables (``imagenet_timm`` cascades only)."""

    name: str = MISSING


@dataclass
class StructureSchema:
    """What the policies may do between stages (README: graphs). ``chain``: run the stages in order
    (the trace study); ``skip``: the transitive closure (any later exit next); ``tree``: any
    stage whose parent has run, ``parents[v]`` the 0-based parent of stage ``v`` (null: the
    root). ``chain_policies``: chain policies scored beside a graph (``static`` included);
    ``chain_orders``: also the best chain order, chosen on each fit split (separate models)."""

    name: str = MISSING
    parents: list[int | None] = MISSING
    chain_policies: list[str] = MISSING
    chain_orders: bool = MISSING


@dataclass
class Config:
    """The top level (``conf/config.yaml``). ``workload`` is typed by its option's schema."""

    workload: Any = MISSING
    policy: PolicySchema = MISSING
    sweep: SweepSchema = MISSING
    logger: LoggerSchema = MISSING
    cost: CostSchema = MISSING
    structure: StructureSchema = MISSING
    seed: int = MISSING
    progress: bool = MISSING
    data_root: str = MISSING
    force: bool = False  # multirun: rerun a job whose folder already holds its results


WORKLOAD_SCHEMAS: dict[str, type] = {
    "synthetic": SyntheticSchema,
    "frugalml": FrugalmlSchema,
    "digits": DigitsSchema,
    "fashion_mnist": FashionMnistSchema,
    "sst2_minilm": Sst2MinilmSchema,
    "glue_hf": GlueHfSchema,
    "imagenet_timm": ImagenetTimmSchema,
}
GROUP_SCHEMAS: dict[str, type] = {
    "policy": PolicySchema,
    "sweep": SweepSchema,
    "logger": LoggerSchema,
    "cost": CostSchema,
    "structure": StructureSchema,
}


def register_configs() -> None:
    """Store every schema in Hydra's ConfigStore, outside the groups users choose from (so that
    ``workload=glob(*)`` sweeps only real options): ``schema/config`` (the top level),
    ``schema/workload/<name>`` per workload and ``schema/<group>`` for the other groups. A YAML
    option extends its schema with ``defaults: [/schema/workload/digits@_here_, _self_]``.
    Idempotent (storing again replaces the same node)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(group="schema", name="config", node=Config)
    for name, schema in WORKLOAD_SCHEMAS.items():
        cs.store(group="schema/workload", name=name, node=schema)
    for group, schema in GROUP_SCHEMAS.items():
        cs.store(group="schema", name=group, node=schema)


# ---------------------------------------------------------------------------------------------
# enumerations (what Hydra cannot check for a ``str`` field)

SCORES = ("max_softmax", "entropy", "margin")  # ttamer.traces.trace.SCORES
REFERENCES = ("best_stage", "last_stage")
TARGETS = ("label", "last_stage")
POOLINGS = ("auto", "mean", "last", "cls")  # ttamer.workloads.text.text_exits.POOLINGS
VADER_CALIBRATIONS = ("logistic", "linear")
IMAGENET_MODES = ("cascade", "exits")  # ttamer.workloads.vision.imagenet_timm.MODES
IMAGENET_LABELS = ("auto", "imagenet", "folder")  # ttamer.workloads.vision.imagenet_timm.LABEL_SPACES
IMAGENET_FINAL_HEADS = ("model", "linear")
STRUCTURES = ("chain", "skip", "tree")  # ttamer.studies.graph_study.STRUCTURES + chain
LOGGER_BACKENDS = ("wandb", "none")  # ttamer.app.wandb_logger.BACKENDS
LOGGER_MODES = ("offline", "online", "disabled")  # ttamer.app.wandb_logger.MODES
# cost group option -> the workloads it applies to
COST_SOURCES: dict[str, tuple[str, ...]] = {
    "measured": tuple(WORKLOAD_SCHEMAS),
    "timm_table": ("imagenet_timm",),
}

#: dotted field (below ``workload``) -> allowed values, per workload
WORKLOAD_CHOICES: dict[str, dict[str, tuple[str, ...]]] = {
    "sst2_minilm": {"vader_calibration": VADER_CALIBRATIONS, "pooling": POOLINGS},
    "glue_hf": {"pooling": POOLINGS},
    "imagenet_timm": {
        "mode": IMAGENET_MODES,
        "labels": IMAGENET_LABELS,
        "final_head": IMAGENET_FINAL_HEADS,
    },
}


def _choice(cfg: DictConfig, key: str, allowed: tuple[str, ...], prefix: str) -> None:
    value = OmegaConf.select(cfg, key)
    if value not in allowed:
        raise FieldError(f"{prefix}{key}", f"must be one of {' | '.join(allowed)}, got {value!r}")


def _subset(values: Any, allowed: tuple[str, ...], field: str) -> None:
    bad = [str(v) for v in values if str(v) not in allowed]
    if bad:
        raise FieldError(field, f"unknown {bad}; choose from {' | '.join(allowed)}")


def _missing_keys(node: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose value is ``???`` in a plain container (interpolations left as text)."""
    if isinstance(node, dict):
        items: Any = node.items()
    elif isinstance(node, list):
        items = ((f"[{i}]", v) for i, v in enumerate(node))
    else:
        return []
    out: list[str] = []
    for key, value in items:
        dotted = f"{prefix}{key}" if str(key).startswith("[") or not prefix else f"{prefix}.{key}"
        if value == "???":
            out.append(dotted)
        else:
            out.extend(_missing_keys(value, dotted))
    return out


def validate_logger(logger: DictConfig) -> None:
    """``logger.backend`` and ``logger.mode`` against their choices."""
    _choice(logger, "backend", LOGGER_BACKENDS, "logger.")
    _choice(logger, "mode", LOGGER_MODES, "logger.")


def validate_config(cfg: DictConfig) -> None:
    """Check what composition cannot: no field left unset, and every enumeration (dotted names
    in the :class:`FieldError`). Cheap; no torch import."""
    plain: Any = OmegaConf.to_container(cfg, resolve=False)  # no resolution (${hydra:...})
    missing = _missing_keys({k: v for k, v in plain.items() if k != "hydra"})
    if missing:
        raise FieldError(missing[0], f"must be set (unset: {', '.join(missing)})")
    from ttamer.model.synthetic import FAMILIES
    from ttamer.policies import POLICIES as TRACE_POLICIES
    from ttamer.studies.synthetic_study import POLICIES as SYNTHETIC_POLICIES

    if int(cfg.seed) < 0:
        raise FieldError("seed", f"must be an integer >= 0, got {cfg.seed}")
    w = cfg.workload
    name = str(w.name)
    if "dataset" in w and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", str(w.dataset)):
        # it names result files: no path separators, no leading dot
        raise FieldError(
            "workload.dataset", f"must be a plain name (letters, digits, _ and -), got {w.dataset!r}"
        )
    if "cache_dir" in w and Path(str(w.cache_dir)).expanduser().is_file():
        raise FieldError("workload.cache_dir", f"{w.cache_dir} is a file, not a folder for cached traces")
    if name not in WORKLOAD_SCHEMAS:
        raise FieldError(
            "workload.name", f"unknown workload {name!r}; choose from {sorted(WORKLOAD_SCHEMAS)}"
        )
    if "fit" in w:
        _choice(w, "fit.score", SCORES, "workload.")
        _choice(w, "reference", REFERENCES, "workload.")
        _choice(w, "target", TARGETS, "workload.")
    for key, allowed in WORKLOAD_CHOICES.get(name, {}).items():
        _choice(w, key, allowed, "workload.")
    if name == "synthetic":
        _subset(w.families, FAMILIES, "workload.families")
        _choice(w, "pareto_family", FAMILIES, "workload.")
    _subset(cfg.policy.compare, SYNTHETIC_POLICIES, "policy.compare")
    _subset(cfg.policy.trace, tuple(TRACE_POLICIES), "policy.trace")
    validate_logger(cfg.logger)
    _validate_structure(cfg.structure, name, tuple(TRACE_POLICIES))
    _choice(cfg, "cost.name", tuple(COST_SOURCES), "")
    cost = str(cfg.cost.name)
    if name not in COST_SOURCES[cost]:
        raise FieldError(
            "cost", f"cost={cost} applies to {', '.join(COST_SOURCES[cost])}, not workload {name}"
        )
    if "cost_source" in w and str(w.cost_source) != cost:
        raise FieldError(
            "workload.cost_source",
            f"is {w.cost_source!r} but cost={cost}: choose the costs with cost=<option>",
        )


def _validate_structure(structure: DictConfig, workload: str, policies: tuple[str, ...]) -> None:
    """``structure.name``, and what a graph study needs: a trace workload, parents for a tree
    (checked against the trace's stages when it is loaded), chain policies with ``static``."""
    _choice(structure, "name", STRUCTURES, "structure.")
    if str(structure.name) == "chain":
        return
    if workload == "synthetic":
        raise FieldError("structure", f"structure={structure.name} needs a trace workload, not synthetic")
    _subset(structure.chain_policies, policies, "structure.chain_policies")
    if "static" not in [str(p) for p in structure.chain_policies]:
        raise FieldError("structure.chain_policies", "must include static (the single-stage reference)")
    if str(structure.name) == "tree" and len(structure.parents) == 0:
        raise FieldError("structure.parents", "a tree needs each stage's parent (null for the root)")
