"""Per-stage latency measurement, benchmark file names, and traces made from a model."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from torch import nn

from ttamer.workloads.latency import LatencyConfig, benchmark_filename, environment, measure_stage_latency
from ttamer.workloads.multi_exit import MultiExitNet
from ttamer.workloads.trace_from_model import latency_table_from_trace, model_trace

SLEEP_S = 0.005


class Sleep(nn.Module):
    """Identity that sleeps: a deliberately slow stage. Records the batch sizes it sees."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.batch_sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batch_sizes.append(len(x))
        time.sleep(self.seconds)
        return x


def tiny_net(slow_stage: int | None = None, width: int = 6, n_classes: int = 3) -> MultiExitNet:
    torch.manual_seed(0)
    segments: list[nn.Module] = []
    for i in range(3):
        layers: list[nn.Module] = [nn.Linear(width, width), nn.ReLU()]
        if i == slow_stage:
            layers.append(Sleep(SLEEP_S))
        segments.append(nn.Sequential(*layers))
    return MultiExitNet(segments, [nn.Linear(width, n_classes) for _ in range(3)])


def test_one_row_per_stage_and_batch_size_and_a_slow_stage_shows() -> None:
    net = tiny_net(slow_stage=1)
    cfg = LatencyConfig(batch_sizes=(1, 8), warmup=1, repeats=5)
    table = measure_stage_latency(net, torch.randn(3, 6), cfg)
    assert list(table.columns) == [
        "stage", "batch_size", "median_ms", "p10_ms", "p90_ms", "repeats",
        "head_median_ms", "head_p10_ms", "head_p90_ms",
    ]  # fmt: skip
    assert sorted(zip(table["stage"], table["batch_size"], strict=True)) == [
        (s, b) for s in (1, 2, 3) for b in (1, 8)
    ]
    assert (table["repeats"] == 5).all()
    assert (table["median_ms"] > 0).all()
    assert (table["p10_ms"] <= table["median_ms"]).all() and (table["median_ms"] <= table["p90_ms"]).all()
    assert (table["head_median_ms"] > 0).all()
    assert (table["head_p10_ms"] <= table["head_median_ms"]).all()
    assert (table["head_median_ms"] <= table["head_p90_ms"]).all()
    for _, rows in table.groupby("batch_size"):
        median = rows.set_index("stage")["median_ms"]
        assert median[2] >= SLEEP_S * 1e3
        assert median[2] > median[1] and median[2] > median[3]
        # the slow segment is not part of its head: the head alone is far cheaper than the stage
        assert rows.set_index("stage")["head_median_ms"][2] < SLEEP_S * 1e3 / 2
    # the 3-row example is repeated to fill the batch of 8: the slow stage saw both sizes
    (sleep,) = [m for m in net.modules() if isinstance(m, Sleep)]
    assert set(sleep.batch_sizes) == {1, 8}


class SlowHead(nn.Module):
    """A linear exit head that sleeps: an expensive head on a cheap segment."""

    def __init__(self, width: int, n_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width, n_classes)
        self.sleep = Sleep(SLEEP_S)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.sleep(x))


def test_a_slow_head_shows_in_its_head_timing_and_the_trace_meta() -> None:
    net = tiny_net()
    net.heads[0] = SlowHead(6, 3)
    cfg = LatencyConfig(batch_sizes=(1,), warmup=1, repeats=5)
    x, y = torch.randn(10, 6), torch.randint(0, 3, (10,))
    trace, table = model_trace(net, x, y, cfg)
    heads = table.sort_values("stage")["head_median_ms"].to_numpy()
    assert heads[0] >= SLEEP_S * 1e3 and heads[0] > 10 * max(heads[1], heads[2])
    # the trace records each head's share (<= its stage's cost) and one backbone
    head_cost = json.loads(trace.meta["exit_head_cost"])
    assert json.loads(trace.meta["backbone_group"]) == [0, 0, 0]
    np.testing.assert_allclose(head_cost, np.minimum(heads, trace.cost))
    assert head_cost[0] >= 0.8 * trace.cost[0]  # nearly all of stage 1 is its head


def test_benchmark_filename_and_environment() -> None:
    env = {"torch": "2.14.1+cu130", "device": "NVIDIA H100 80GB HBM3"}
    assert (
        benchmark_filename("digits", env) == "benchmark-infer-fp32-pt2.14.1-nvidia-h100-80gb-hbm3-digits.csv"
    )
    assert (
        benchmark_filename("sst2_minilm", {"torch": "2.3.0", "device": "cpu"}, "amp")
        == "benchmark-infer-amp-pt2.3.0-cpu-sst2_minilm.csv"
    )
    here = environment()
    assert {"machine", "processor", "cpu_count", "torch_threads", "torch", "numpy", "device"} <= set(here)
    assert here["torch"] == torch.__version__
    assert benchmark_filename("digits", here).startswith("benchmark-infer-fp32-pt")


@pytest.mark.parametrize("first_batch", [1, 2])
def test_model_trace_is_a_valid_trace_costed_by_the_first_batch_size(first_batch: int) -> None:
    net = tiny_net(slow_stage=2)
    x = torch.randn(30, 6, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 3, (30,), generator=torch.Generator().manual_seed(2))
    cfg = LatencyConfig(batch_sizes=(first_batch, 4), warmup=1, repeats=3)
    trace, table = model_trace(net, x, y, cfg, meta={"dataset": "random"})
    assert trace.n_samples == 30 and trace.n_stages == 3
    assert trace.stage_names == ("exit1", "exit2", "exit3")
    assert trace.probs is not None and trace.probs.shape == (30, 3, 3)
    np.testing.assert_allclose(trace.probs.sum(axis=2), 1.0, atol=1e-9)
    np.testing.assert_array_equal(trace.probs.argmax(axis=2), trace.pred)
    np.testing.assert_allclose(trace.conf, trace.probs.max(axis=2))
    np.testing.assert_array_equal(trace.labels, y.numpy())
    with torch.no_grad():
        logits = net(x)
    for i, lg in enumerate(logits):
        np.testing.assert_array_equal(trace.pred[:, i], lg.argmax(dim=1).numpy())
    first = table[table["batch_size"] == first_batch].sort_values("stage")
    np.testing.assert_allclose(trace.cost, first["median_ms"].to_numpy() / first_batch)
    assert trace.cost[2] >= SLEEP_S * 1e3 / first_batch > max(trace.cost[0], trace.cost[1])
    assert trace.cost_unit.startswith(f"ms per request (batch {first_batch}")
    assert trace.meta["dataset"] == "random" and trace.meta["env_torch"] == torch.__version__
    saved = latency_table_from_trace(trace)
    np.testing.assert_allclose(saved["median_ms"].to_numpy(), table["median_ms"].to_numpy())
    assert list(saved["batch_size"]) == list(table["batch_size"])


def test_environment_labels_the_device_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a machine with a GPU, a CPU run is labelled cpu (not the GPU); a CUDA device by its
    name. Here CUDA is faked: nothing runs on it."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: f"FakeGPU {device}")
    assert environment()["device"] == "cpu"
    assert environment("cpu")["device"] == environment(torch.device("cpu"))["device"] == "cpu"
    assert environment("cuda:1")["device"] == "FakeGPU cuda:1"
    net = tiny_net(slow_stage=2)
    x = torch.randn(6, 6, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 3, (6,), generator=torch.Generator().manual_seed(2))
    trace, _ = model_trace(net, x, y, LatencyConfig(batch_sizes=(1,), warmup=0, repeats=1))
    assert trace.meta["env_device"] == "cpu" and trace.cost_unit.endswith(", cpu)")
