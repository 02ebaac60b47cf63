"""Measured per-stage latency of a multi-exit model: each stage (segment + exit head) timed on
real inputs, at batch size 1 and a larger batch, median of repeated timings after warm-up.
The hardware and library versions go with every table."""

from __future__ import annotations

import os
import platform
import re
import statistics
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ttamer.workloads.multi_exit import MultiExitNet


@dataclass(frozen=True)
class LatencyConfig:
    """``batch_sizes``: the batch sizes timed (the first is the trace's cost). ``warmup`` and
    ``repeats``: untimed and timed runs per stage and batch size. ``threads``: torch CPU threads
    (None: leave as is)."""

    batch_sizes: tuple[int, ...] = (1, 64)
    warmup: int = 5
    repeats: int = 30
    threads: int | None = None


def environment() -> dict[str, str]:
    """Where the timings were taken: machine, processor, threads, library versions, device."""
    cuda = torch.cuda.is_available()
    return {
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": str(os.cpu_count()),
        "torch_threads": str(torch.get_num_threads()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _stage_inputs(model: MultiExitNet, x: torch.Tensor) -> list[torch.Tensor]:
    """The input of every stage for the batch ``x``: ``[x, features_1, ...]``."""
    inputs, h = [], x
    for i in range(model.n_stages):
        inputs.append(h)
        h, _ = model.stage(i, h)
    return inputs


@torch.no_grad()
def measure_stage_latency(model: MultiExitNet, example: torch.Tensor, cfg: LatencyConfig) -> pd.DataFrame:
    """Time every stage. ``example``: inputs (B0, ...) on the model's device, repeated to fill
    the largest batch. Repeats are interleaved across stages, so a burst of outside load does
    not land on one stage only. Rows: ``stage`` (1-based), ``batch_size``, ``median_ms``,
    ``p10_ms``, ``p90_ms``, ``repeats`` (milliseconds per batch)."""
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    model.eval()
    device = example.device
    rows = []
    for b in cfg.batch_sizes:
        reps = -(-b // len(example))
        inputs = _stage_inputs(model, example.repeat(reps, *([1] * (example.dim() - 1)))[:b])
        times: list[list[float]] = [[] for _ in inputs]
        for r in range(cfg.warmup + cfg.repeats):
            for i, h in enumerate(inputs):
                _sync(device)
                t0 = time.perf_counter()
                model.stage(i, h)
                _sync(device)
                if r >= cfg.warmup:
                    times[i].append((time.perf_counter() - t0) * 1e3)
        for i, ts in enumerate(times):
            q = np.percentile(ts, [10, 90])
            rows.append(
                {"stage": i + 1, "batch_size": b, "median_ms": statistics.median(ts),
                 "p10_ms": q[0], "p90_ms": q[1], "repeats": cfg.repeats}
            )  # fmt: skip
    return pd.DataFrame(rows)


def benchmark_filename(workload: str, env: dict[str, str], precision: str = "fp32") -> str:
    """A name in the style of timm's benchmark tables, e.g.
    ``benchmark-infer-fp32-pt2.14.1-cpu-digits.csv``."""
    torch_version = env["torch"].split("+")[0]
    device = re.sub(r"[^a-z0-9]+", "-", env["device"].lower()).strip("-")
    return f"benchmark-infer-{precision}-pt{torch_version}-{device}-{workload}.csv"
