"""ImageNet traces from pretrained timm models (README: workloads), in two modes.

``mode: exits``: one pretrained timm backbone (``model``) cut at its feature stages, with an exit
head after each (:mod:`ttamer.workloads.vision.timm_exits`); the backbone stays frozen (and in eval
mode, so its batch-norm statistics are kept), the heads are trained on a per-class subset of the
training images, and the trace is every exit's output on a per-class subset of the validation
images, with each stage's latency measured on this machine (as in
:mod:`ttamer.workloads.trace_from_model`). With ``final_head: model`` the last exit is the
backbone's own pretrained classifier, so the last stage is the original model.

``mode: cascade`` (Lebovitz et al., TMLR 2023): a list of pretrained timm classifiers (``models``),
ordered by cost; every model runs on every validation image (batched, no gradients) with its own
preprocessing (input size, crop, interpolation, normalisation from its pretrained config), and
stage ``i`` of the trace is model ``i``'s prediction and max-softmax confidence. The cost of
stage ``i`` is model ``i``'s own cost per image (the models run one after another on the same
image), either measured here (``cost_source: measured``: median latency at the first of
``latency.batch_sizes``, divided by that batch size) or read from timm's published benchmark
tables (``cost_source: timm_table``: 1000 / ``infer_samples_per_sec`` ms at the table's batch
size and precision, see :mod:`ttamer.workloads.vision.timm_tables`). Latency is measured in both cases
and written next to the results.

Stage skipping (:mod:`ttamer.model.skip_costs`): in ``exits`` mode every stage shares one backbone
(``meta["backbone_group"]`` all 0) and ``meta["exit_head_cost"]`` is each exit head's measured
median alone (per image, at the first batch size); in ``cascade`` mode every model is its own
group with head cost 0 (skipping a model skips all of it).

Data: an ImageNet folder in torchvision's ``ImageFolder`` layout, ``<data_dir>/train/<wnid>/*``
and ``<data_dir>/val/<wnid>/*`` (the validation images sorted into class folders, as timm's and
torchvision's ImageNet scripts expect). When every class folder is an ImageNet-1k WordNet id,
labels are ImageNet-1k indices (the pretrained classifiers' output order; any subset of the 1000
classes works); otherwise (``labels: folder``) they are the folders' sorted order, which the
cascade's models must then predict in. Pretrained weights download from the Hugging Face Hub on
first use (internet, or a filled ``HF_HOME`` cache); a GPU is advised (``device: auto`` uses CUDA
when present).

Entry point: :func:`produce` (``config``: the resolved ``workload`` config as plain data). The
library below it takes :class:`ImageNetTimmConfig`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from numpy.typing import NDArray
from torch import nn

from ttamer.errors import FieldError
from ttamer.model.skip_costs import independent_meta, shared_backbone_groups, skip_meta
from ttamer.traces.trace import Trace
from ttamer.workloads.latency import (
    LatencyConfig,
    environment,
    head_cost_per_request,
    measure_stage_latency,
)
from ttamer.workloads.multi_exit import MultiExitNet

log = logging.getLogger(__name__)

MODES = ("exits", "cascade")
COST_SOURCES = ("measured", "timm_table")
LABEL_SPACES = ("auto", "imagenet", "folder")
DEFAULT_MODELS = ("resnet18.a1_in1k", "resnet50.a1_in1k")


# ------------------------------------------------------------------------------------ config


@dataclass(frozen=True)
class HeadTraining:
    """Training of the exit heads (``mode: exits``) on frozen backbone features: AdamW on the
    mean cross-entropy of the trained heads, images preprocessed as for evaluation (no
    augmentation). ``max_seconds``: a wall-clock cap (None: none)."""

    epochs: int = 5
    lr: float = 1e-3
    weight_decay: float = 1e-4
    head_dropout: float = 0.0
    max_seconds: float | None = None


@dataclass(frozen=True)
class ImageNetTimmConfig:
    """Everything :func:`imagenet_trace` needs (see the module docstring and
    ``conf/workload/imagenet_timm.yaml``)."""

    data_dir: Path
    mode: str = "cascade"
    model: str = "resnet50.a1_in1k"
    models: tuple[str, ...] = DEFAULT_MODELS
    pretrained: bool = True
    out_indices: tuple[int, ...] | None = None
    final_head: str = "model"
    labels: str = "auto"
    train_per_class: int | None = 20
    val_per_class: int | None = 10
    batch_size: int = 64
    num_workers: int = 4
    use_test_size: bool = False
    device: str = "auto"
    amp: bool = False
    channels_last: bool = False
    store_probs: bool = True
    cost_source: str = "measured"
    tables_dir: Path | None = None
    accuracy_file: str | None = None
    benchmark_file: str | None = None
    train: HeadTraining = field(default_factory=HeadTraining)
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    seed: int = 0


def _opt_int(value: Any, name: str, minimum: int = 1) -> int | None:
    if value is None:
        return None
    try:
        out = int(value)
    except (TypeError, ValueError):
        raise FieldError(name, f"must be an integer or null, got {value!r}") from None
    if out < minimum or out != value:
        raise FieldError(name, f"must be an integer >= {minimum} or null, got {value!r}")
    return out


def _int(value: Any, name: str, minimum: int) -> int:
    out = _opt_int(value, name, minimum)
    if out is None:
        raise FieldError(name, "must be set")
    return out


def resolve_path(path: str | Path) -> Path:
    """A path from the config; relative paths are taken from the launch folder (Hydra's
    original working directory when a Hydra app runs, else the current one)."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    base = Path.cwd()
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.utils import get_original_cwd

        if HydraConfig.initialized():
            base = Path(get_original_cwd())
    except ImportError:  # pragma: no cover - hydra is a dependency
        pass
    return base / p


def parse_config(config: Mapping[str, Any]) -> ImageNetTimmConfig:
    """The typed config from the plain ``workload`` config; every error names the field."""
    cfg = dict(config)
    if cfg.get("data_dir") in (None, ""):
        raise FieldError("data_dir", "must name the ImageNet folder (with train/ and val/)")
    mode = str(cfg.get("mode", "cascade"))
    if mode not in MODES:
        raise FieldError("mode", f"must be one of {MODES}, got {mode!r}")
    cost_source = str(cfg.get("cost_source", "measured"))
    if cost_source not in COST_SOURCES:
        raise FieldError("cost_source", f"must be one of {COST_SOURCES}, got {cost_source!r}")
    labels = str(cfg.get("labels", "auto"))
    if labels not in LABEL_SPACES:
        raise FieldError("labels", f"must be one of {LABEL_SPACES}, got {labels!r}")
    final_head = str(cfg.get("final_head", "model"))
    if final_head not in ("model", "linear"):
        raise FieldError("final_head", f"must be model or linear, got {final_head!r}")
    models = cfg.get("models", DEFAULT_MODELS) or ()
    if isinstance(models, str):
        models = [models]
    models = tuple(str(m) for m in models)
    if mode == "cascade" and not models:
        raise FieldError("models", "the cascade needs at least one timm model name")
    if mode == "exits" and not cfg.get("model", "resnet50.a1_in1k"):
        raise FieldError("model", "exits mode needs a timm model name")
    if cost_source == "timm_table" and mode != "cascade":
        raise FieldError("cost_source", "timm_table costs whole models; exits mode measures its stages")
    out_indices = cfg.get("out_indices")
    train_raw = dict(cfg.get("train") or {})
    known_train = {f.name for f in fields(HeadTraining)}
    if set(train_raw) - known_train:
        raise FieldError(
            "train", f"unknown field(s) {sorted(set(train_raw) - known_train)}; known: {sorted(known_train)}"
        )
    train = HeadTraining(
        epochs=_int(train_raw.get("epochs", 5), "train.epochs", 0),
        lr=float(train_raw.get("lr", 1e-3)),
        weight_decay=float(train_raw.get("weight_decay", 1e-4)),
        head_dropout=float(train_raw.get("head_dropout", 0.0)),
        max_seconds=None if train_raw.get("max_seconds") is None else float(train_raw["max_seconds"]),
    )
    lat_raw = dict(cfg.get("latency") or {})
    known_lat = {f.name for f in fields(LatencyConfig)}
    if set(lat_raw) - known_lat:
        raise FieldError(
            "latency", f"unknown field(s) {sorted(set(lat_raw) - known_lat)}; known: {sorted(known_lat)}"
        )
    batch_sizes = tuple(_int(b, "latency.batch_sizes", 1) for b in lat_raw.get("batch_sizes", (1, 64)))
    if not batch_sizes:
        raise FieldError("latency.batch_sizes", "needs at least one batch size")
    latency = LatencyConfig(
        batch_sizes=batch_sizes,
        warmup=_int(lat_raw.get("warmup", 5), "latency.warmup", 0),
        repeats=_int(lat_raw.get("repeats", 30), "latency.repeats", 1),
        threads=_opt_int(lat_raw.get("threads"), "latency.threads"),
    )
    tables_dir = cfg.get("tables_dir")
    return ImageNetTimmConfig(
        data_dir=resolve_path(str(cfg["data_dir"])),
        mode=mode,
        model=str(cfg.get("model", "resnet50.a1_in1k") or ""),
        models=models,
        pretrained=bool(cfg.get("pretrained", True)),
        out_indices=None if out_indices is None else tuple(int(i) for i in out_indices),
        final_head=final_head,
        labels=labels,
        train_per_class=_opt_int(cfg.get("train_per_class", 20), "train_per_class"),
        val_per_class=_opt_int(cfg.get("val_per_class", 10), "val_per_class"),
        batch_size=_int(cfg.get("batch_size", 64), "batch_size", 1),
        num_workers=_int(cfg.get("num_workers", 4), "num_workers", 0),
        use_test_size=bool(cfg.get("use_test_size", False)),
        device=str(cfg.get("device", "auto")),
        amp=bool(cfg.get("amp", False)),
        channels_last=bool(cfg.get("channels_last", False)),
        store_probs=bool(cfg.get("store_probs", True)),
        cost_source=cost_source,
        tables_dir=None if tables_dir in (None, "") else resolve_path(str(tables_dir)),
        accuracy_file=None if cfg.get("accuracy_file") in (None, "") else str(cfg["accuracy_file"]),
        benchmark_file=None if cfg.get("benchmark_file") in (None, "") else str(cfg["benchmark_file"]),
        train=train,
        latency=latency,
        seed=int(cfg.get("seed", 0)),
    )


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA when available, else the CPU; otherwise a torch device name."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise FieldError("device", f"not a torch device: {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FieldError("device", f"{name!r} asked for, but CUDA is not available here")
    return device


# -------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class ImageSplit:
    """Image files and their labels (in the label space of the run)."""

    paths: tuple[str, ...]
    labels: NDArray[np.int64]
    classes: tuple[str, ...]


def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k WordNet ids in the pretrained classifiers' output order."""
    from timm.data import ImageNetInfo

    return tuple(str(w) for w in ImageNetInfo().label_names())


def label_space(classes: Sequence[str], labels: str) -> str:
    """``imagenet`` or ``folder`` for class folders ``classes`` (``labels``: the config's choice)."""
    if labels != "auto":
        if labels == "imagenet":
            unknown = sorted(set(classes) - set(imagenet_wnids()))
            if unknown:
                raise FieldError(
                    "labels", f"imagenet labels need ImageNet-1k wnid folders; not wnids: {unknown[:5]}"
                )
        return labels
    return "imagenet" if set(classes) <= set(imagenet_wnids()) else "folder"


def read_split(
    data_dir: Path, split: str, per_class: int | None, space: str | None, labels: str, seed: int
) -> tuple[ImageSplit, str]:
    """The images of ``<data_dir>/<split>`` (``ImageFolder`` layout), ``per_class`` of each class
    drawn at random (None: all), in a fixed order; and the label space used."""
    from torchvision.datasets import ImageFolder

    root = data_dir / split
    if not root.is_dir():
        raise FieldError(
            "data_dir",
            f"{root} is not a folder: expected ImageNet as <data_dir>/{split}/<wnid>/<image> "
            "(ImageFolder layout)",
        )
    try:
        folder = ImageFolder(str(root))
    except (FileNotFoundError, RuntimeError) as exc:
        raise FieldError("data_dir", f"{root}: {exc}") from None
    classes = tuple(folder.classes)
    space = space or label_space(classes, labels)
    if space == "imagenet":
        index = {w: i for i, w in enumerate(imagenet_wnids())}
        missing = [c for c in classes if c not in index]
        if missing:
            raise FieldError(
                "data_dir", f"{root} has class folders that are not ImageNet-1k wnids: {missing[:5]}"
            )
        mapping = np.array([index[c] for c in classes], dtype=np.int64)
    else:
        mapping = np.arange(len(classes), dtype=np.int64)
    targets = np.asarray(folder.targets, dtype=np.int64)
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    keep: list[int] = []
    for c in range(len(classes)):
        idx = np.flatnonzero(targets == c)
        if per_class is not None and len(idx) > per_class:
            idx = np.sort(rng.choice(idx, size=per_class, replace=False))
        keep.extend(int(i) for i in idx)
    if not keep:
        raise FieldError("data_dir", f"{root} holds no images")
    paths = tuple(str(folder.samples[i][0]) for i in keep)
    return ImageSplit(paths, mapping[targets[keep]], classes), space


class ImageFiles(torch.utils.data.Dataset[tuple[torch.Tensor, int]]):
    """Images read with PIL (RGB) and passed through a timm transform."""

    def __init__(self, split: ImageSplit, transform: Any):
        self.split = split
        self.transform = transform

    def __len__(self) -> int:
        return len(self.split.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from torchvision.datasets.folder import default_loader

        return self.transform(default_loader(self.split.paths[i])), int(self.split.labels[i])


def eval_transform(model: nn.Module | str, use_test_size: bool) -> tuple[Any, dict[str, Any]]:
    """timm's evaluation preprocessing (resize, centre crop, normalisation) for ``model`` (a
    model, or a timm name: its pretrained config), and the data config it came from."""
    from timm.data import create_transform, resolve_data_config

    if isinstance(model, str):
        from timm.models import get_pretrained_cfg

        pretrained_cfg = get_pretrained_cfg(model)
        cfg_dict = pretrained_cfg.to_dict() if pretrained_cfg is not None else None
        data_cfg = resolve_data_config(pretrained_cfg=cfg_dict, use_test_size=use_test_size)
    else:
        data_cfg = resolve_data_config(model=model, use_test_size=use_test_size)
    return create_transform(**data_cfg, is_training=False), data_cfg


def loader(split: ImageSplit, transform: Any, cfg: ImageNetTimmConfig, device: torch.device) -> Any:
    return torch.utils.data.DataLoader(
        ImageFiles(split, transform),
        batch_size=cfg.batch_size,
        shuffle=False,
        num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda",
    )


# ----------------------------------------------------------------------------------- running


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    """Mixed precision (as timm's AMP benchmarks) on CUDA when ``enabled``; else nothing."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def to_device(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


@dataclass
class Outputs:
    """Per-sample outputs of stages, accumulated batch by batch."""

    pred: list[NDArray[np.int64]] = field(default_factory=list)
    conf: list[NDArray[np.float64]] = field(default_factory=list)
    probs: list[NDArray[np.float32]] = field(default_factory=list)
    labels: list[NDArray[np.int64]] = field(default_factory=list)

    def add(self, logits: Sequence[torch.Tensor], y: torch.Tensor, keep_probs: bool) -> None:
        """``logits``: one (B, C) tensor per stage."""
        p = torch.stack([torch.softmax(lg.float(), dim=-1) for lg in logits], dim=1)  # (B, n, C)
        conf, pred = p.max(dim=2)
        self.pred.append(pred.cpu().numpy().astype(np.int64))
        self.conf.append(conf.cpu().double().numpy())
        if keep_probs:
            self.probs.append(p.cpu().numpy())
        self.labels.append(y.cpu().numpy().astype(np.int64))

    def arrays(
        self,
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64], NDArray[np.float64] | None]:
        labels, pred, conf = np.concatenate(self.labels), np.concatenate(self.pred), np.concatenate(self.conf)
        probs = None
        if self.probs:
            p = np.concatenate(self.probs).astype(np.float64)
            probs = p / p.sum(axis=2, keepdims=True)
        return labels, pred, np.clip(conf, 0.0, 1.0), probs


def _example(split: ImageSplit, transform: Any, n: int = 64) -> torch.Tensor:
    """Up to ``n`` preprocessed images (the latency measurement's inputs)."""
    data = ImageFiles(split, transform)
    return torch.stack([data[i][0] for i in range(min(n, len(data)))])


def _measure(
    net: MultiExitNet, example: torch.Tensor, cfg: ImageNetTimmConfig, device: torch.device
) -> pd.DataFrame:
    x = to_device(example, device, cfg.channels_last)
    with autocast(device, cfg.amp):
        return measure_stage_latency(net, x, cfg.latency)


def _run_info(cfg: ImageNetTimmConfig, device: torch.device, space: str) -> dict[str, str]:
    return {
        "source": f"imagenet_timm ({cfg.mode})",
        "data_dir": str(cfg.data_dir),
        "label_space": space,
        "pretrained": str(cfg.pretrained),
        "run_device": str(device),
        "amp": str(cfg.amp and device.type == "cuda"),
        "channels_last": str(cfg.channels_last),
        **{f"env_{k}": v for k, v in environment().items()},
    }


def _build(
    out: Outputs,
    cost: Sequence[float] | NDArray[np.float64],
    names: Sequence[str],
    cost_unit: str,
    table: pd.DataFrame,
    meta: dict[str, str],
    b0: int,
) -> Trace:
    labels, pred, conf, probs = out.arrays()
    info = {**meta, "latency": table.to_json(orient="records"), "latency_batch_size": str(b0)}
    return Trace.build(
        labels, pred, conf, np.asarray(cost, dtype=np.float64), list(names), cost_unit, probs, info
    )


# ------------------------------------------------------------------------------------ models


def check_model_name(name: str, field_name: str) -> None:
    """A clear error for a name timm does not know."""
    import timm

    if not timm.is_model(name):
        raise FieldError(field_name, f"{name!r} is not a timm model (see timm.list_models())")
    from timm.models import get_pretrained_cfg

    try:
        get_pretrained_cfg(name)
    except RuntimeError as exc:  # an unknown pretrained tag
        raise FieldError(field_name, f"{name!r}: {exc} (see timm.list_pretrained())") from None


def weights_message(name: str, exc: BaseException) -> str:
    return (
        f"could not load the pretrained weights of {name!r} ({type(exc).__name__}: {exc}); they download "
        "from the Hugging Face Hub on first use: connect to the internet once, or point HF_HOME at a "
        "cache holding them (pretrained=false gives random weights, for testing only)"
    )


# -------------------------------------------------------------------------------- exits mode


def _heads_to_train(net: MultiExitNet, cfg: ImageNetTimmConfig) -> list[int]:
    n = net.n_stages
    return list(range(n - 1)) if cfg.final_head == "model" else list(range(n))


def train_heads(
    net: MultiExitNet, data: Any, cfg: ImageNetTimmConfig, device: torch.device, heads: Sequence[int]
) -> list[float]:
    """Train the exit heads ``heads`` on frozen backbone features (the backbone in eval mode);
    returns the mean loss of each epoch."""
    from tqdm import tqdm

    torch.manual_seed(cfg.seed)
    net.eval()
    net.requires_grad_(False)
    params: list[nn.Parameter] = []
    for i in heads:
        net.heads[i].requires_grad_(True)
        params.extend(net.heads[i].parameters())
    if not params or cfg.train.epochs == 0:
        return []
    opt = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    start, history, stop = time.perf_counter(), [], False
    for _ in tqdm(range(cfg.train.epochs), desc="train heads", unit="epoch", leave=False, disable=None):
        for i in heads:
            net.heads[i].train()
        total, count = 0.0, 0
        for x, y in data:
            x, y = to_device(x, device, cfg.channels_last), y.to(device)
            feats = []
            with torch.no_grad(), autocast(device, cfg.amp):
                h = x
                for i in range(max(heads) + 1):
                    h = net.segments[i](h)
                    feats.append(h)
            losses = [nn.functional.cross_entropy(net.heads[i](feats[i].float()), y) for i in heads]
            loss = torch.stack(losses).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, count = total + float(loss.detach()) * len(y), count + len(y)
            if cfg.train.max_seconds is not None and time.perf_counter() - start > cfg.train.max_seconds:
                stop = True
                break
        history.append(total / max(count, 1))
        if stop:
            break
    net.eval()
    net.requires_grad_(False)
    return history


@torch.no_grad()
def _exits_outputs(net: MultiExitNet, data: Any, cfg: ImageNetTimmConfig, device: torch.device) -> Outputs:
    out = Outputs()
    net.eval()
    for x, y in data:
        with autocast(device, cfg.amp):
            logits = net(to_device(x, device, cfg.channels_last))
        out.add(logits, y, cfg.store_probs)
    return out


def exits_trace(cfg: ImageNetTimmConfig, device: torch.device) -> Trace:
    """The multi-exit trace of ``cfg.model`` (see the module docstring)."""
    from ttamer.workloads.vision.timm_exits import timm_multi_exit

    train_split, space = read_split(cfg.data_dir, "train", cfg.train_per_class, None, cfg.labels, cfg.seed)
    val_split, _ = read_split(cfg.data_dir, "val", cfg.val_per_class, space, cfg.labels, cfg.seed)
    if space == "folder" and train_split.classes != val_split.classes:
        raise FieldError("data_dir", "train/ and val/ have different class folders")
    num_classes = 1000 if space == "imagenet" else len(train_split.classes)
    if cfg.final_head == "model" and space != "imagenet":
        raise FieldError(
            "final_head", "the model's own classifier needs ImageNet-1k wnid class folders; use linear"
        )
    check_model_name(cfg.model, "model")
    try:
        net, stages = timm_multi_exit(
            cfg.model,
            num_classes,
            out_indices=cfg.out_indices,
            pretrained=cfg.pretrained,
            head_dropout=cfg.train.head_dropout,
            final_head="model" if cfg.final_head == "model" else "linear",
        )
    except OSError as exc:
        raise FieldError("pretrained", weights_message(cfg.model, exc)) from None
    except (ValueError, RuntimeError) as exc:
        field_name = "final_head" if cfg.final_head == "model" and "final_head" in str(exc) else "model"
        raise FieldError(field_name, f"cannot split {cfg.model!r} into exits: {exc}") from None
    net = net.to(device)
    if cfg.channels_last:
        net = net.to(memory_format=torch.channels_last)
    transform, data_cfg = eval_transform(cfg.model, cfg.use_test_size)
    heads = _heads_to_train(net, cfg)
    history = train_heads(net, loader(train_split, transform, cfg, device), cfg, device, heads)
    log.info("exit heads trained on %d images: loss per epoch %s", len(train_split.paths), history)
    out = _exits_outputs(net, loader(val_split, transform, cfg, device), cfg, device)
    table = _measure(net, _example(val_split, transform), cfg, device)
    b0 = cfg.latency.batch_sizes[0]
    cost = table[table["batch_size"] == b0].sort_values("stage")["median_ms"].to_numpy() / b0
    names = [f"{s.module}" for s in stages]
    meta = {
        **_run_info(cfg, device, space),
        "model": cfg.model,
        "final_head": cfg.final_head,
        "stages": ",".join(f"{s.module}:{s.num_chs}ch/{s.reduction}" for s in stages),
        "input_size": "x".join(str(v) for v in data_cfg["input_size"]),
        "n_train": str(len(train_split.paths)),
        "train_loss": ",".join(f"{v:.4f}" for v in history),
        **skip_meta(head_cost_per_request(table, b0), cost, shared_backbone_groups(net.n_stages)),
    }
    env = environment()
    unit = f"ms per request (batch {b0}, {env['device']})"
    return _build(out, cost, names, unit, table, meta, b0)


# ------------------------------------------------------------------------------ cascade mode


class _Classifier(nn.Module):
    """A whole model as a one-stage ``MultiExitNet`` segment (for latency measurement)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.model(x)
        return out


def _create(name: str, pretrained: bool) -> nn.Module:
    import timm

    check_model_name(name, "models")
    try:
        model: nn.Module = timm.create_model(name, pretrained=pretrained)
    except OSError as exc:
        raise FieldError("pretrained", weights_message(name, exc)) from None
    except RuntimeError as exc:  # e.g. an unknown pretrained tag
        raise FieldError("models", f"cannot create timm model {name!r}: {exc}") from None
    return model


@torch.no_grad()
def _model_outputs(
    model: nn.Module, data: Any, cfg: ImageNetTimmConfig, device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for x, y in data:
        with autocast(device, cfg.amp):
            logits = model(to_device(x, device, cfg.channels_last))
        yield logits.float(), y


def cascade_trace(cfg: ImageNetTimmConfig, device: torch.device) -> Trace:
    """The model-cascade trace of ``cfg.models`` (see the module docstring)."""
    from ttamer.workloads.vision.timm_tables import TimmTables

    val_split, space = read_split(cfg.data_dir, "val", cfg.val_per_class, None, cfg.labels, cfg.seed)
    tables = None
    if cfg.cost_source == "timm_table" and cfg.tables_dir is None:
        raise FieldError("tables_dir", "cost_source timm_table needs the folder of timm's results tables")
    if cfg.tables_dir is not None:
        try:  # the benchmark is needed for table costs; the accuracy table only annotates
            tables = TimmTables.load(
                cfg.tables_dir, cfg.accuracy_file, cfg.benchmark_file, require_accuracy=False
            )
        except FieldError as exc:
            if cfg.cost_source == "timm_table":
                raise
            log.warning("timm tables not read (%s): table numbers not recorded", exc)
    needed = 1000 if space == "imagenet" else len(val_split.classes)
    # everything that can fail is checked before any model runs: names, table costs
    plans = []
    for name in cfg.models:
        check_model_name(name, "models")
        transform, data_cfg = eval_transform(name, cfg.use_test_size)
        img_size = int(data_cfg["input_size"][-2])
        ms = (
            tables.ms_per_image(name, img_size)
            if tables is not None and cfg.cost_source == "timm_table"
            else None
        )
        plans.append((name, transform, data_cfg, img_size, ms))
    n_val = len(val_split.paths)
    pred = np.zeros((n_val, len(cfg.models)), dtype=np.int64)
    conf = np.zeros((n_val, len(cfg.models)), dtype=np.float64)
    probs: list[NDArray[np.float32]] = []
    labels = val_split.labels
    measured: list[pd.DataFrame] = []
    table_ms: list[float] = []
    meta: dict[str, str] = {}
    for k, (name, transform, data_cfg, img_size, ms) in enumerate(plans):
        model = _create(name, cfg.pretrained).eval().to(device)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        n_out = int(getattr(model, "num_classes", 0) or 0)
        if n_out != needed:
            raise FieldError(
                "models",
                f"{name} predicts {n_out} classes; the {space} labels of "
                f"{cfg.data_dir / 'val'} need {needed}",
            )
        log.info("cascade stage %d/%d: %s at %s", k + 1, len(cfg.models), name, data_cfg["input_size"])
        row = 0
        model_probs = []
        for logits, y in _model_outputs(model, loader(val_split, transform, cfg, device), cfg, device):
            p = torch.softmax(logits, dim=-1)
            c, prd = p.max(dim=1)
            b = len(y)
            if not np.array_equal(y.numpy(), labels[row : row + b]):
                raise RuntimeError("data loader returned images out of order")
            pred[row : row + b, k], conf[row : row + b, k] = prd.cpu().numpy(), c.double().cpu().numpy()
            if cfg.store_probs:
                model_probs.append(p.cpu().numpy())
            row += b
        if cfg.store_probs:
            probs.append(np.concatenate(model_probs))
        lat = _measure(
            MultiExitNet([_Classifier(model)], [nn.Identity()]), _example(val_split, transform), cfg, device
        )
        lat["stage"] = k + 1
        measured.append(lat)
        b0 = cfg.latency.batch_sizes[0]
        measured_ms = float(lat.loc[lat["batch_size"] == b0, "median_ms"].iloc[0]) / b0
        info = {
            "input_size": "x".join(str(v) for v in data_cfg["input_size"]),
            "interpolation": str(data_cfg.get("interpolation")),
            "crop_pct": str(data_cfg.get("crop_pct")),
            "val_top1": f"{100.0 * float(np.mean(pred[:, k] == labels)):.3f}",
            "measured_ms_per_image": f"{measured_ms:.6g}",
        }
        if ms is not None:
            table_ms.append(ms)
            info["table_ms_per_image"] = f"{ms:.6g}"
        if tables is not None:
            with contextlib.suppress(FieldError):
                info["table_top1"] = f"{tables.entry(name, img_size).top1:.3f}"
        meta.update({f"stage{k + 1}_{key}": value for key, value in info.items()})
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    table = pd.concat(measured, ignore_index=True)
    b0 = cfg.latency.batch_sizes[0]
    env = environment()
    if cfg.cost_source == "timm_table":
        assert tables is not None
        cost = table_ms
        unit = f"ms per image (timm benchmark: {tables.benchmark_label})"
        meta["benchmark_file"] = str(tables.benchmark_file)
    else:
        cost = [float(v) / b0 for v in table[table["batch_size"] == b0].sort_values("stage")["median_ms"]]
        unit = f"ms per image (measured, batch {b0}, {env['device']})"
    if tables is not None and tables.accuracy_file is not None:
        meta["accuracy_file"] = str(tables.accuracy_file)
    meta = {
        **_run_info(cfg, device, space),
        "models": ",".join(cfg.models),
        "cost_source": cfg.cost_source,
        **meta,
        **independent_meta(len(cfg.models)),
    }
    prob_array = None
    if cfg.store_probs:
        stacked = np.stack(probs, axis=1).astype(np.float64)
        prob_array = stacked / stacked.sum(axis=2, keepdims=True)
    info_all = {**meta, "latency": table.to_json(orient="records"), "latency_batch_size": str(b0)}
    return Trace.build(
        labels, pred, np.clip(conf, 0.0, 1.0), cost, list(cfg.models), unit, prob_array, info_all
    )


# ------------------------------------------------------------------------------ entry points


def imagenet_trace(cfg: ImageNetTimmConfig) -> Trace:
    """The trace of ``cfg`` (exits or cascade)."""
    device = resolve_device(cfg.device)
    if device.type == "cpu":
        log.warning("imagenet_timm runs on the CPU: expect hours on ImageNet; a GPU is advised")
    torch.manual_seed(cfg.seed)
    return exits_trace(cfg, device) if cfg.mode == "exits" else cascade_trace(cfg, device)


def produce(config: dict[str, Any], out_dir: Path) -> Trace:
    """The registry's producer: ``config`` is the resolved ``workload`` config. Errors about a
    config field name it as the command line does (``workload.<field>``)."""
    del out_dir  # the latency table is written by the runner from the trace's meta
    try:
        return imagenet_trace(parse_config(config))
    except FieldError as exc:
        if exc.field.split(".")[0] not in {f.name for f in fields(ImageNetTimmConfig)}:
            raise
        raise FieldError(f"workload.{exc.field}", str(exc)[len(exc.field) + 2 :]) from None
