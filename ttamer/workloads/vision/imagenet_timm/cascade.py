"""``mode: cascade`` of the ``imagenet_timm`` workload (Lebovitz et al., TMLR 2023; README:
workloads): a list of pretrained timm classifiers (``models``), ordered by cost; every model runs
on every validation image (batched, no gradients) with its own preprocessing (input size, crop,
interpolation, normalisation from its pretrained config), and stage ``i`` of the trace is model
``i``'s prediction and max-softmax confidence.

The cost of stage ``i`` is model ``i``'s own cost per image (the models run one after another on
the same image), either measured here (``cost_source: measured``: median latency at the first
of ``latency.batch_sizes``, divided by that batch size) or read from timm's published benchmark
tables (``cost_source: timm_table``: 1000 / ``infer_samples_per_sec`` ms at the table's batch
size and precision, see :mod:`ttamer.workloads.vision.timm_tables`). Latency is measured in both
cases and written next to the results. Stage skipping (:mod:`ttamer.model.skip_costs`): every
model is its own group with head cost 0 (skipping a model skips all of it).

Each model's outputs and measured latency are cached per model
(:mod:`~ttamer.workloads.vision.imagenet_timm.outputs`, under ``<cache_dir>/imagenet_outputs``):
a cascade of models seen before, in any order or subset and with either cost source, runs no
inference. Random weights (``pretrained: false``) are drawn per model from the seed and the
model's name (:func:`model_seed`), so they too do not depend on the order."""

from __future__ import annotations

import contextlib
import logging
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from numpy.typing import NDArray
from torch import nn

from ttamer.errors import FieldError
from ttamer.model.skip_costs import independent_meta
from ttamer.traces.cache import cache_lock, digest
from ttamer.traces.trace import Trace
from ttamer.workloads.base import resolve_path
from ttamer.workloads.latency import environment
from ttamer.workloads.multi_exit import MultiExitNet
from ttamer.workloads.vision.imagenet_timm.data import (
    ImageSplit,
    eval_transform,
    example_images,
    loader,
    read_split,
    val_label_files,
)
from ttamer.workloads.vision.imagenet_timm.models import Classifier, check_model_name, create_classifier
from ttamer.workloads.vision.imagenet_timm.outputs import FOLDER as OUTPUTS_FOLDER
from ttamer.workloads.vision.imagenet_timm.outputs import (
    ModelOutputs,
    OutputCache,
    latency_key,
    outputs_key,
    split_digest,
    weights_id,
)
from ttamer.workloads.vision.imagenet_timm.running import Job, measure, run_info, to_device
from ttamer.workloads.vision.timm_tables import TimmTables

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    """One cascade stage, checked before any model runs: the timm ``name``, its evaluation
    ``transform`` and timm data config, its input size (pixels) and its table cost (ms per
    image; None unless the costs come from timm's table)."""

    name: str
    transform: Any
    data_cfg: dict[str, Any]
    img_size: int
    table_ms: float | None


@dataclass(frozen=True)
class StageRun:
    """One model's outputs on the validation images (``pred``, ``conf`` (N,), ``probs`` (N, C)
    or None), its latency table and its meta (``info``)."""

    pred: NDArray[np.int64]
    conf: NDArray[np.float64]
    probs: NDArray[np.float32] | None
    latency: pd.DataFrame
    info: dict[str, str]


def load_tables(job: Job) -> TimmTables | None:
    """timm's tables (None when no folder is named, or unreadable while costs are measured)."""
    cfg, folder = job.config, job.tables_dir
    if cfg.cost_source == "timm_table" and folder is None:
        raise FieldError("tables_dir", "cost_source timm_table needs the folder of timm's results tables")
    if folder is None:
        return None
    try:  # the benchmark is needed for table costs; the accuracy table only annotates
        return TimmTables.load(
            folder, cfg.accuracy_file or None, cfg.benchmark_file or None, require_accuracy=False
        )
    except FieldError as exc:
        if cfg.cost_source == "timm_table":
            raise
        log.warning("timm tables not read (%s): table numbers not recorded", exc)
        return None


def plans(job: Job, tables: TimmTables | None) -> list[Plan]:
    """Every stage's plan; everything that can fail is checked here: names, table costs."""
    out = []
    for name in job.config.models:
        check_model_name(name, "models")
        transform, data_cfg = eval_transform(name, job.config.use_test_size)
        img_size = int(data_cfg["input_size"][-2])
        use_table = tables is not None and job.config.cost_source == "timm_table"
        ms = tables.ms_per_image(name, img_size) if use_table and tables is not None else None
        out.append(Plan(name, transform, data_cfg, img_size, ms))
    return out


@torch.no_grad()
def _model_outputs(model: nn.Module, data: Any, job: Job) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for x, y in data:
        with job.autocast():
            logits = model(to_device(x, job.device, job.config.channels_last))
        yield logits.float(), y


def classify(
    model: nn.Module, split: ImageSplit, transform: Any, job: Job
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float32] | None]:
    """``model``'s predictions, max-softmax confidences (N,) and probabilities (N, C; None
    unless ``store_probs``) on ``split``, in its order."""
    n = len(split.paths)
    pred, conf = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.float64)
    parts, row = [], 0
    for logits, y in _model_outputs(model, loader(split, transform, job.config, job.device), job):
        p = torch.softmax(logits, dim=-1)
        c, prd = p.max(dim=1)
        b = len(y)
        if not np.array_equal(y.numpy(), split.labels[row : row + b]):
            raise RuntimeError("data loader returned images out of order")
        pred[row : row + b], conf[row : row + b] = prd.cpu().numpy(), c.double().cpu().numpy()
        if job.config.store_probs:
            parts.append(p.cpu().numpy())
        row += b
    return pred, conf, (np.concatenate(parts) if job.config.store_probs else None)


def stage_info(
    plan: Plan, pred: NDArray[np.int64], labels: NDArray[np.int64], latency: pd.DataFrame, job: Job,
    tables: TimmTables | None,
) -> dict[str, str]:  # fmt: skip
    """One stage's meta: preprocessing, top-1 on the traced images, measured and table costs."""
    b0 = job.b0
    measured_ms = float(latency.loc[latency["batch_size"] == b0, "median_ms"].iloc[0]) / b0
    info = {
        "input_size": "x".join(str(v) for v in plan.data_cfg["input_size"]),
        "interpolation": str(plan.data_cfg.get("interpolation")),
        "crop_pct": str(plan.data_cfg.get("crop_pct")),
        "val_top1": f"{100.0 * float(np.mean(pred == labels)):.3f}",
        "measured_ms_per_image": f"{measured_ms:.6g}",
    }
    if plan.table_ms is not None:
        info["table_ms_per_image"] = f"{plan.table_ms:.6g}"
    if tables is not None:
        with contextlib.suppress(FieldError):
            info["table_top1"] = f"{tables.entry(plan.name, plan.img_size).top1:.3f}"
    return info


def model_seed(seed: int, name: str) -> int:
    """The seed of ``name``'s random weights (``pretrained: false``): from the run's seed and the
    name only, so that a model's weights do not depend on the cascade's order."""
    return int(np.random.SeedSequence([int(seed), zlib.crc32(name.encode())]).generate_state(1)[0])


def stage_model(name: str, job: Job) -> nn.Module:
    """The timm classifier ``name`` in eval mode on the job's device (NHWC when
    ``channels_last``); random weights are drawn from :func:`model_seed`."""
    cfg = job.config
    with torch.random.fork_rng(devices=[]):
        if not cfg.pretrained:
            torch.manual_seed(model_seed(job.seed, name))
        model = create_classifier(name, cfg.pretrained).eval().to(job.device)
    return model.to(memory_format=torch.channels_last) if cfg.channels_last else model


def stage_runner(name: str, job: Job) -> tuple[nn.Module, int]:
    """The timm classifier ``name`` as the module that runs (with ``compile``: torch.compile'd,
    so that the inference pass and the timing share its graphs) and its number of classes."""
    model = stage_model(name, job)
    n_out = int(getattr(model, "num_classes", 0) or 0)
    runner: nn.Module = Classifier(model)
    if job.config.compile:
        runner = torch.compile(runner)  # type: ignore[assignment]
    return runner, n_out


def check_classes(name: str, n_out: int, split: ImageSplit, space: str, job: Job) -> None:
    """A clear error when model ``name`` (``n_out`` classes) cannot serve the labels."""
    needed = 1000 if space == "imagenet" else len(split.classes)
    if n_out != needed:
        raise FieldError(
            "models",
            f"{name} predicts {n_out} classes; the {space} labels of {job.data_dir / 'val'} need {needed}",
        )


def stage_outputs(
    job: Job, plan: Plan, split: ImageSplit, space: str, cache: OutputCache, images: str
) -> tuple[ModelOutputs, str, nn.Module | None]:
    """Model ``plan.name``'s outputs on ``split``: from the output cache, else computed (and
    cached); their key's digest; the model (:func:`stage_runner`) when it was created here."""
    cfg = job.config
    weights = weights_id(plan.name, cfg.pretrained, job.seed)
    key = outputs_key(plan.name, weights, images, plan.data_cfg, cfg.use_test_size, job.precision)
    model = None
    with cache_lock(cache.outputs_path(key)):
        out = cache.load_outputs(key, len(split.paths), cfg.store_probs)
        if out is None:
            model, n_out = stage_runner(plan.name, job)
            check_classes(plan.name, n_out, split, space, job)
            log.info("cascade model %s at %s: running on %d images", plan.name, plan.data_cfg["input_size"],
                     len(split.paths))  # fmt: skip
            out = ModelOutputs(*classify(model, split, plan.transform, job), n_out)
            cache.save_outputs(key, out, {"device": str(job.device), "torch": torch.__version__})
    check_classes(plan.name, out.num_classes, split, space, job)
    return out, digest(key), model


def stage_latency(
    job: Job, plan: Plan, split: ImageSplit, cache: OutputCache, model: nn.Module | None
) -> tuple[pd.DataFrame, nn.Module | None]:
    """Model ``plan.name``'s measured latency table: from the cache (same model, input size,
    device, environment, precision, compilation, layout and latency settings), else measured
    (and cached)."""
    cfg = job.config
    env = environment(job.device)
    if cfg.latency.threads is not None:  # the measurement sets them
        env["torch_threads"] = str(cfg.latency.threads)
    key = latency_key(
        plan.name, plan.data_cfg["input_size"], str(job.device), env, job.precision, cfg.channels_last,
        asdict(cfg.latency), cfg.compile,
    )  # fmt: skip
    with cache_lock(cache.latency_path(key)):
        table = cache.load_latency(key)
        if table is None:
            model = model if model is not None else stage_runner(plan.name, job)[0]
            net = MultiExitNet([model], [nn.Identity()])
            table = measure(net, example_images(split, plan.transform), job)
            cache.save_latency(key, table)
    return table, model


def run_stage(
    job: Job, k: int, plan: Plan, split: ImageSplit, space: str, tables: TimmTables | None,
    cache: OutputCache | None = None,
) -> StageRun:  # fmt: skip
    """Model ``k`` of the cascade on every image of ``split``, and its latency: from the output
    cache where they were computed before (:mod:`.outputs`)."""
    cache = cache if cache is not None else output_cache(job)
    out, key, model = stage_outputs(job, plan, split, space, cache, split_digest(split, space))
    latency, model = stage_latency(job, plan, split, cache, model)
    latency = latency.copy()
    latency["stage"] = k + 1
    info = {**stage_info(plan, out.pred, split.labels, latency, job, tables), "outputs_key": key}
    if model is not None:
        del model
        if job.device.type == "cuda":
            torch.cuda.empty_cache()
    return StageRun(out.pred, out.conf, out.probs, latency, info)


def output_cache(job: Job) -> OutputCache:
    """The per-model output cache under the workload's ``cache_dir``."""
    return OutputCache(resolve_path(job.config.cache_dir) / OUTPUTS_FOLDER, job.config.recompute)


def cascade_costs(
    job: Job, table: pd.DataFrame, stage_plans: list[Plan], tables: TimmTables | None
) -> tuple[list[float], str, dict[str, str]]:
    """The stages' costs (ms per image), their unit, and the tables used (meta)."""
    b0, meta = job.b0, {}
    if job.config.cost_source == "timm_table":
        assert tables is not None
        cost = [float(p.table_ms) for p in stage_plans if p.table_ms is not None]
        unit = f"ms per image (timm benchmark: {tables.benchmark_label})"
        meta["benchmark_file"] = str(tables.benchmark_file)
    else:
        cost = [float(v) / b0 for v in table[table["batch_size"] == b0].sort_values("stage")["median_ms"]]
        unit = f"ms per image (measured, batch {b0}, {environment(job.device)['device']})"
    if tables is not None and tables.accuracy_file is not None:
        meta["accuracy_file"] = str(tables.accuracy_file)
    return cost, unit, meta


def cascade_trace(job: Job) -> Trace:
    """The model-cascade trace of ``job.config.models`` (see the module docstring)."""
    cfg = job.config
    split, space = read_split(
        job.data_dir, "val", cfg.val_per_class, None, cfg.labels, job.seed, val_labels=val_label_files(cfg)
    )
    tables = load_tables(job)
    stage_plans = plans(job, tables)
    cache = output_cache(job)
    runs = [run_stage(job, k, plan, split, space, tables, cache) for k, plan in enumerate(stage_plans)]
    table = pd.concat([r.latency for r in runs], ignore_index=True)
    cost, unit, table_meta = cascade_costs(job, table, stage_plans, tables)
    meta = {
        **run_info(job, space),
        "models": ",".join(cfg.models),
        "cost_source": cfg.cost_source,
        **{f"stage{k + 1}_{key}": value for k, r in enumerate(runs) for key, value in r.info.items()},
        **table_meta,
        **independent_meta(len(cfg.models)),
        "latency": table.to_json(orient="records"),
        "latency_batch_size": str(job.b0),
    }
    probs = None
    if cfg.store_probs:
        stacked = np.stack([r.probs for r in runs if r.probs is not None], axis=1).astype(np.float64)
        probs = stacked / stacked.sum(axis=2, keepdims=True)
    pred = np.stack([r.pred for r in runs], axis=1)
    conf = np.clip(np.stack([r.conf for r in runs], axis=1), 0.0, 1.0)
    return Trace.build(split.labels, pred, conf, cost, list(cfg.models), unit, probs, meta)
