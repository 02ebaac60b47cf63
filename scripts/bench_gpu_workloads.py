"""Run the ImageNet and GLUE workloads end to end on generated stand-ins (README: ImageNet and
GLUE on a GPU) and record their stage timings: a check of a GPU machine before real data is
fetched, and the numbers of the speed options on it.

Data and weights are generated (:mod:`ttamer.workloads.stand_ins`): an ImageNet-layout image
folder, random-weight timm models, random-weight BERT-base and GPT-2-small backbones with a
local tokenizer, MRPC-like sentence pairs. No download is needed. The checks, in order:

1. ``imagenet_cascade``: a cascade of timm classifiers (outputs and latency cached per model);
2. ``imagenet_cascade_reordered``: the same models reversed, which must run no model again
   (``models_run`` 0: the per-model output cache);
3. ``imagenet_exits_cnn`` and ``imagenet_exits_vit``: exit heads trained from cached pooled
   features of a CNN (after every stage) and of a vision transformer (after every third block);
4. ``glue_bert``: BERT fine-tuned with the ``finetune`` recipe (autocast training on CUDA);
5. ``glue_gpt2``: GPT-2 with heads on the frozen backbone, sentence pairs joined by the separator.

Every check runs at ``--precision`` (autocast) with ``--compile`` (torch.compile, graphs warmed
before timing), cuDNN autotuning and channels_last on CUDA. Written after every check (atomic):
``<out>/bench_gpu_workloads-<device>-<precision>[-compile]-runs.csv`` (one row per check: wall
seconds, models run, stage costs) and ``-stages.csv`` (each stage's median, p10 and p90 ms at
every batch size, and its exit head's). ``--size tiny`` runs tiny models on a few images (the
tests, on a CPU).

    python scripts/bench_gpu_workloads.py --device cuda --out results/device
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ttamer.evaluation.results import write_table
from ttamer.traces.trace import Trace
from ttamer.workloads.latency import INFERENCE_PRECISIONS, LatencyConfig, environment
from ttamer.workloads.stand_ins import save_random_backbone, write_image_folder, write_pair_tsvs
from ttamer.workloads.text.exits.config import FinetuneConfig, TextTrainConfig
from ttamer.workloads.text.glue_hf.config import GlueHfConfig
from ttamer.workloads.trace_from_model import latency_table_from_trace
from ttamer.workloads.vision.imagenet_timm.config import HeadTraining, ImageNetTimmConfig

CHECKS = (
    "imagenet_cascade", "imagenet_cascade_reordered", "imagenet_exits_cnn", "imagenet_exits_vit",
    "glue_bert", "glue_gpt2",
)  # fmt: skip


@dataclass(frozen=True)
class Size:
    """What a check runs on: timm models, images (classes x per class, pixels), loader and
    timing settings, the text backbones' size and the sentence pairs (rows, words per sentence)."""

    cascade: tuple[str, ...]
    exits_cnn: str
    exits_vit: str
    vit_exits: tuple[int, ...]
    classes: int
    per_class: int
    pixels: int
    batch_size: int
    num_workers: int
    latency: LatencyConfig
    text: str
    pairs: tuple[int, int]
    words: tuple[int, int]


SIZES = {
    "full": Size(("resnet18", "resnet50", "vit_base_patch16_224"), "resnet50", "vit_small_patch16_224",
                 (2, 5, 8, 11), 20, 16, 256, 64, 4, LatencyConfig((1, 64), warmup=10, repeats=30), "base",
                 (512, 256), (8, 40)),
    "tiny": Size(("resnet10t", "test_vit"), "resnet10t", "test_vit", (1, 3, 5), 3, 4, 48, 8, 0,
                 LatencyConfig((1, 4), warmup=1, repeats=2), "tiny", (48, 24), (3, 6)),
}  # fmt: skip


@dataclass(frozen=True)
class Setup:
    """The run's options and the generated inputs' folder."""

    size: Size
    device: str
    precision: str
    compile: bool
    work: Path
    seed: int


def imagenet_config(setup: Setup, **fields: Any) -> ImageNetTimmConfig:
    """The ImageNet workload on the generated images with random weights and the speed options."""
    s, cuda = setup.size, setup.device.startswith("cuda")
    return ImageNetTimmConfig(
        pretrained=False, data_dir=str(setup.work / "imagenet"), tables_dir=None, device=setup.device,
        precision=setup.precision, compile=setup.compile, cudnn_benchmark=cuda, channels_last=cuda,
        batch_size=s.batch_size, num_workers=s.num_workers, latency=s.latency, val_per_class=None,
        train_per_class=None, cache_dir=str(setup.work / "cache"), **fields,
    )  # fmt: skip


def glue_config(setup: Setup, kind: str, train: TextTrainConfig) -> GlueHfConfig:
    """The GLUE workload (MRPC-like pairs) on a generated ``kind`` backbone."""
    return GlueHfConfig(
        task="mrpc", model=str(setup.work / kind), train_path=str(setup.work / "pairs" / "train.tsv"),
        eval_path=str(setup.work / "pairs" / "dev.tsv"), train_size=None, device=setup.device,
        precision=setup.precision, compile=setup.compile, latency=setup.size.latency, train=train,
        cache_dir=str(setup.work / "cache"),
    )  # fmt: skip


def check_configs(setup: Setup) -> dict[str, tuple[str, Any]]:
    """Each check's workload name and config."""
    s, heads = setup.size, HeadTraining(epochs=3)
    bert = TextTrainConfig(recipe="finetune", finetune=FinetuneConfig(epochs=1, batch_size=32))
    vision, reordered = "imagenet_timm", s.cascade[::-1]
    return {
        "imagenet_cascade": (vision, imagenet_config(setup, mode="cascade", models=s.cascade)),
        "imagenet_cascade_reordered": (vision, imagenet_config(setup, mode="cascade", models=reordered)),
        "imagenet_exits_cnn": (vision, imagenet_config(setup, mode="exits", model=s.exits_cnn, train=heads)),
        "imagenet_exits_vit": (vision, imagenet_config(setup, mode="exits", model=s.exits_vit, train=heads,
                                                       out_indices=s.vit_exits)),
        "glue_bert": ("glue_hf", glue_config(setup, "bert", bert)),
        "glue_gpt2": ("glue_hf", glue_config(setup, "gpt2", TextTrainConfig(epochs=5))),
    }  # fmt: skip


def generate(setup: Setup, checks: list[str]) -> None:
    """The stand-ins the chosen checks need, under ``setup.work``."""
    s = setup.size
    if any(c.startswith("imagenet") for c in checks):
        write_image_folder(setup.work / "imagenet", s.classes, s.per_class, s.pixels, setup.seed)
    for kind in ("bert", "gpt2"):
        if f"glue_{kind}" in checks:
            save_random_backbone(kind, setup.work / kind, s.text, setup.seed)
    if any(c.startswith("glue") for c in checks):
        write_pair_tsvs(setup.work / "pairs", *s.pairs, words=s.words, seed=setup.seed)


class ModelRuns(logging.Handler):
    """Counts the cascade's "running on" log records: the models that ran inference."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += "running on" in record.getMessage()


def produce(workload: str, config: Any, seed: int, out: Path) -> Trace:
    """The workload's trace (its implementation, as ``ttamer-run`` calls it, without the cache)."""
    if workload == "imagenet_timm":
        from ttamer.workloads.vision.imagenet_timm.produce import imagenet_trace

        return imagenet_trace(config, seed)
    from ttamer.workloads.text.glue_hf.workload import produce as glue_produce

    return glue_produce(config, seed, out)


def run_check(name: str, workload: str, config: Any, setup: Setup) -> tuple[dict[str, Any], pd.DataFrame]:
    """One check: its row of the runs table and its stage timings."""
    counter = ModelRuns()
    cascade_log = logging.getLogger("ttamer.workloads.vision.imagenet_timm.cascade")
    cascade_log.addHandler(counter)
    cascade_log.setLevel(logging.INFO)
    start = time.perf_counter()
    try:
        trace = produce(workload, config, setup.seed, setup.work)
    finally:
        cascade_log.removeHandler(counter)
    wall = time.perf_counter() - start
    stages = latency_table_from_trace(trace)
    stages.insert(0, "check", name)
    stages.insert(2, "stage_name", [trace.stage_names[int(k) - 1] for k in stages["stage"]])
    row = {
        "check": name, "workload": workload, "device": trace.meta.get("env_device", ""),
        "precision": setup.precision, "compile": setup.compile, "wall_s": round(wall, 3),
        "models_run": counter.count if workload == "imagenet_timm" and config.mode == "cascade" else None,
        "n_samples": trace.n_samples, "stages": " > ".join(trace.stage_names),
        "cost_ms": " ".join(f"{c:.4g}" for c in trace.cost), "cost_unit": trace.cost_unit,
        "phases_s": trace.meta.get("seconds", ""), "torch": trace.meta.get("env_torch", ""),
    }  # fmt: skip
    return row, stages


def device_slug(device: str) -> str:
    """The device's label (GPU name or CPU) as a file-name part."""
    return re.sub(r"[^a-z0-9]+", "-", environment(device)["device"].lower()).strip("-")


def run_all(setup: Setup, checks: list[str], outs: list[Path]) -> pd.DataFrame:
    """Every chosen check in order; both tables rewritten in every folder of ``outs`` after each
    one. Returns the runs."""
    configs = check_configs(setup)
    speed = setup.precision + ("-compile" if setup.compile else "")
    stem = f"bench_gpu_workloads-{device_slug(setup.device)}-{speed}"
    rows, stages = [], []
    for name in checks:
        workload, config = configs[name]
        print(f"== {name}", flush=True)
        row, table = run_check(name, workload, config, setup)
        rows.append(row)
        stages.append(table)
        print(f"   {row['wall_s']:.1f} s, cost {row['cost_ms']} ({row['cost_unit']})", flush=True)
        for out in outs:
            write_table(pd.DataFrame(rows).astype({"models_run": "Int64"}), out / f"{stem}-runs.csv")
            write_table(pd.concat(stages, ignore_index=True), out / f"{stem}-stages.csv")
    return pd.DataFrame(rows).astype({"models_run": "Int64"})


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--device", default="cuda", help="torch device (default cuda)")
    p.add_argument("--size", choices=sorted(SIZES), default="full", help="full (real sizes) | tiny (tests)")
    p.add_argument(
        "--precision", choices=INFERENCE_PRECISIONS, default="bf16", help="autocast"
    )
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True, help="torch.compile")
    p.add_argument("--only", default=",".join(CHECKS), help=f"comma-separated checks (default all: {CHECKS})")
    p.add_argument("--out", type=Path, action="append", help="folder of the two tables (repeat: several; "
                   "default results/device)")  # fmt: skip
    p.add_argument(
        "--work", type=Path, default=None, help="generated inputs (default: temporary)"
    )
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def device_problem(name: str) -> str | None:
    """Why ``--device`` cannot run here (None: it can)."""
    import torch

    try:
        device = torch.device(name)
    except RuntimeError:
        return f"--device: not a torch device: {name!r}"
    if device.type == "cuda" and not torch.cuda.is_available():
        return f"--device: {name!r} asked for, but CUDA is not available here"
    if device.type not in ("cpu", "cuda"):
        return f"--device: cpu or cuda[:<index>], got {name!r}"
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    checks = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = sorted(set(checks) - set(CHECKS))
    problem = device_problem(args.device)
    if unknown or not checks or problem:
        choose = f"--only: unknown checks {unknown}; choose from {', '.join(CHECKS)}"
        print(problem or choose, file=sys.stderr)
        return 2
    if "imagenet_cascade_reordered" in checks and "imagenet_cascade" not in checks:
        checks.insert(checks.index("imagenet_cascade_reordered"), "imagenet_cascade")
    outs = args.out or [Path("results/device")]
    for out in outs:
        out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ttamer-gpu-") as tmp:
        work = args.work if args.work is not None else Path(tmp)
        setup = Setup(SIZES[args.size], args.device, args.precision, args.compile, work, args.seed)
        generate(setup, checks)
        runs = run_all(setup, checks, outs)
    print(runs[["check", "device", "wall_s", "models_run", "cost_ms"]].to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
