"""Measured per-stage latency of a multi-exit model: each stage (segment + exit head) timed on
real inputs, at batch size 1 and a larger batch, median of repeated timings after warm-up; each
exit head is also timed alone, so that the head's share of a stage is known (stage skipping,
:mod:`ttamer.model.skip_costs`). The hardware and library versions go with every table."""

from __future__ import annotations

import os
import platform
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from ttamer.errors import FieldError, check_bounds

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from ttamer.workloads.multi_exit import MultiExitNet


INFERENCE_PRECISIONS = ("fp32", "bf16", "fp16")
"""Autocast precisions of inference (:mod:`ttamer.workloads.speed`): none, bfloat16, float16."""


@dataclass(frozen=True)
class LatencyConfig:
    """``batch_sizes``: the batch sizes timed (the first is the trace's cost). ``warmup`` and
    ``repeats``: untimed and timed runs per stage and batch size. ``threads``: torch CPU threads
    (None: leave as is)."""

    batch_sizes: tuple[int, ...] = (1, 64)
    warmup: int = 5
    repeats: int = 30
    threads: int | None = None

    def __post_init__(self) -> None:
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise FieldError("batch_sizes", f"needs at least one, each >= 1, got {self.batch_sizes}")
        check_bounds(self, ("warmup",), 0)
        check_bounds(self, ("repeats",), 1)
        if self.threads is not None and self.threads < 1:
            raise FieldError("threads", f"must be >= 1 or null, got {self.threads}")


def environment(device: torch.device | str | None = None) -> dict[str, str]:
    """Where the timings were taken: machine, processor, threads, library versions and the
    ``device`` the timed model ran on (None: the CPU). A CUDA device is named by its GPU
    (``torch.cuda.get_device_name``), any other by its type (``cpu``, ``mps``); a GPU in the
    machine does not label a run that did not use it."""
    import torch

    dev = torch.device("cpu" if device is None else device)
    label = torch.cuda.get_device_name(dev) if dev.type == "cuda" else dev.type
    return {
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": str(os.cpu_count()),
        "torch_threads": str(torch.get_num_threads()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "device": label,
    }


def _sync(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _stage_io(model: MultiExitNet, x: Any) -> tuple[list[Any], list[Any]]:
    """The input and the output features of every stage for the batch ``x``:
    ``([x, features_1, ...], [features_1, features_2, ...])``."""
    inputs, features, h = [], [], x
    for i in range(model.n_stages):
        inputs.append(h)
        h, _ = model.stage(i, h)
        features.append(h)
    return inputs, features


def _batch_of(example: Any, b: int) -> Any:
    """``example`` (B0, ...) repeated along the batch and cut to ``b`` rows."""
    reps = -(-b // len(example))
    return example.repeat(reps, *([1] * (example.dim() - 1)))[:b]


def warm_up(model: MultiExitNet, example: torch.Tensor, batch_sizes: tuple[int, ...]) -> None:
    """Run every stage (segment and head) once at each of ``batch_sizes``, untimed and
    synchronised: compiled graphs are built and autotuned kernels chosen for exactly the shapes
    :func:`measure_stage_latency` then times."""
    import torch

    model.eval()
    with torch.no_grad():
        for b in batch_sizes:
            _stage_io(model, _batch_of(example, b))
    _sync(example.device)


def _timed_ms(device: torch.device, fn: Callable[..., Any], *args: Any) -> float:
    """Milliseconds of one call of ``fn(*args)`` (synchronised on CUDA)."""
    _sync(device)
    t0 = time.perf_counter()
    fn(*args)
    _sync(device)
    return (time.perf_counter() - t0) * 1e3


def _summary(times: list[float], prefix: str = "") -> dict[str, float]:
    q = np.percentile(times, [10, 90])
    return {f"{prefix}median_ms": statistics.median(times), f"{prefix}p10_ms": q[0], f"{prefix}p90_ms": q[1]}


def _time_batch(
    model: MultiExitNet, x: Any, cfg: LatencyConfig
) -> tuple[list[list[float]], list[list[float]]]:
    """Timed repeats of every stage and, right after it, of its exit head alone on the stage's
    features: (stage times, head times), one list per stage."""
    inputs, features = _stage_io(model, x)
    device = x.device
    stage_ms: list[list[float]] = [[] for _ in inputs]
    head_ms: list[list[float]] = [[] for _ in inputs]
    for r in range(cfg.warmup + cfg.repeats):
        for i in range(model.n_stages):
            t_stage = _timed_ms(device, model.stage, i, inputs[i])
            t_head = _timed_ms(device, model.heads[i], features[i])
            if r >= cfg.warmup:
                stage_ms[i].append(t_stage)
                head_ms[i].append(t_head)
    return stage_ms, head_ms


def measure_stage_latency(model: MultiExitNet, example: torch.Tensor, cfg: LatencyConfig) -> pd.DataFrame:
    """Time every stage, and every exit head alone. ``example``: inputs (B0, ...) on the model's
    device, repeated to fill the largest batch. Repeats are interleaved across stages (each
    stage's timing followed by its head's), so a burst of outside load does not land on one
    stage only. Rows: ``stage`` (1-based), ``batch_size``, ``median_ms``, ``p10_ms``, ``p90_ms``
    (the stage: segment + head), ``repeats``, ``head_median_ms``, ``head_p10_ms``,
    ``head_p90_ms`` (the exit head alone, on that stage's features); milliseconds per batch."""
    import pandas as pd
    import torch

    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    model.eval()
    rows = []
    for b in cfg.batch_sizes:
        batch = _batch_of(example, b)
        with torch.no_grad():
            stage_ms, head_ms = _time_batch(model, batch, cfg)
        for i, (ts, hs) in enumerate(zip(stage_ms, head_ms, strict=True)):
            rows.append(
                {"stage": i + 1, "batch_size": b, **_summary(ts), "repeats": cfg.repeats,
                 **_summary(hs, "head_")}
            )  # fmt: skip
    return pd.DataFrame(rows)


def head_cost_per_request(table: pd.DataFrame, batch_size: int) -> NDArray[np.float64]:
    """Each stage's exit-head median at ``batch_size``, per request (``head_median_ms / b``),
    in stage order; NaN where the table has no head timing."""
    rows = table[table["batch_size"] == batch_size].sort_values("stage")
    if "head_median_ms" not in rows.columns:
        return np.full(len(rows), np.nan)
    return rows["head_median_ms"].to_numpy(dtype=np.float64) / batch_size


def benchmark_filename(workload: str, env: dict[str, str], precision: str = "fp32") -> str:
    """A name in the style of timm's benchmark tables, e.g.
    ``benchmark-infer-fp32-pt2.14.1-cpu-digits.csv``."""
    torch_version = env["torch"].split("+")[0]
    device = re.sub(r"[^a-z0-9]+", "-", env["device"].lower()).strip("-")
    return f"benchmark-infer-{precision}-pt{torch_version}-{device}-{workload}.csv"
