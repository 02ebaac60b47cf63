"""``imagenet_timm`` speed options on the CPU: bf16 autocast, channels_last and torch.compile
runs, recorded in the trace's meta and latency table; ``amp`` keeps its meaning; the device
label is the device used; new fields leave the trace keys of default configs unchanged."""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from test_workload_imagenet_timm import FAST, write_imagenet
from torch import nn

from ttamer.errors import FieldError
from ttamer.traces.cache import config_key
from ttamer.workloads.latency import warm_up
from ttamer.workloads.multi_exit import MultiExitNet
from ttamer.workloads.trace_from_model import latency_table_from_trace
from ttamer.workloads.vision.imagenet_timm.config import HeadTraining, ImageNetTimmConfig
from ttamer.workloads.vision.imagenet_timm.features import FOLDER
from ttamer.workloads.vision.imagenet_timm.produce import imagenet_trace
from ttamer.workloads.vision.imagenet_timm.running import Job, run_precision


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_imagenet(tmp_path_factory.mktemp("data"))


def exits_config(data_dir: Path, cache: Path, **changes: object) -> ImageNetTimmConfig:
    base = ImageNetTimmConfig(
        **FAST, data_dir=str(data_dir), mode="exits", model="test_resnet", final_head="linear",
        train=HeadTraining(epochs=2, lr=0.05), cache_dir=str(cache), reference="last_stage", val_per_class=3,
    )  # fmt: skip
    return replace(base, **changes)


def test_bf16_channels_last_run_and_are_recorded(data_dir: Path, tmp_path: Path) -> None:
    fp32 = imagenet_trace(exits_config(data_dir, tmp_path), 0)
    bf16 = imagenet_trace(exits_config(data_dir, tmp_path, precision="bf16", channels_last=True), 0)
    assert (fp32.meta["precision"], bf16.meta["precision"]) == ("fp32", "bf16")
    assert (fp32.meta["amp"], bf16.meta["amp"]) == ("False", "True")
    assert bf16.meta["channels_last"] == "True" and bf16.meta["compile"] == "False"
    table = latency_table_from_trace(bf16)
    assert set(table["precision"]) == {"bf16"} and set(table["channels_last"]) == {True}
    assert set(table["compile"]) == {False}
    assert len(list((tmp_path / FOLDER).glob("*.pt"))) == 2  # bf16 features are not fp32's
    # bf16 rounds the logits: close to fp32, not equal
    assert fp32.probs is not None and bf16.probs is not None
    assert 0 < abs(fp32.probs - bf16.probs).max() < 0.2


def test_device_label_is_the_device_used(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A GPU in the machine does not label a CPU run."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "FakeGPU")
    trace = imagenet_trace(exits_config(data_dir, tmp_path, device="cpu", train=HeadTraining(epochs=0)), 0)
    assert trace.meta["env_device"] == "cpu" and trace.meta["run_device"] == "cpu"
    assert trace.cost_unit == "ms per request (batch 2, cpu)"


@pytest.mark.slow
def test_compile_runs_and_is_warmed(data_dir: Path, tmp_path: Path) -> None:
    cfg = exits_config(data_dir, tmp_path, compile=True, train=HeadTraining(epochs=1))
    trace = imagenet_trace(cfg, 0)
    plain = imagenet_trace(replace(cfg, compile=False), 0)
    assert trace.meta["compile"] == "True" and set(latency_table_from_trace(trace)["compile"]) == {True}
    assert trace.probs is not None and plain.probs is not None
    np.testing.assert_allclose(trace.probs, plain.probs, rtol=1e-3, atol=1e-4)


def test_warm_up_runs_every_stage_at_every_batch_size() -> None:
    seen: list[tuple[str, int]] = []

    class Record(nn.Module):
        def __init__(self, name: str):
            super().__init__()
            self.name = name

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append((self.name, len(x)))
            return x

    net = MultiExitNet([Record("s1"), Record("s2")], [Record("h1"), Record("h2")])
    warm_up(net, torch.zeros(3, 2), (1, 5))
    assert seen == [(n, b) for b in (1, 5) for n in ("s1", "h1", "s2", "h2")]


def test_precision_and_amp() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert run_precision(ImageNetTimmConfig(amp=True), cpu) == "fp32"  # amp: CUDA only, as before
    assert run_precision(ImageNetTimmConfig(amp=True), cuda) == "fp16"
    assert run_precision(ImageNetTimmConfig(precision="bf16"), cpu) == "bf16"
    assert run_precision(ImageNetTimmConfig(amp=True, precision="fp16"), cpu) == "fp16"
    with pytest.raises(FieldError, match=r"^amp: amp: true means precision fp16"):
        ImageNetTimmConfig(amp=True, precision="bf16")
    with pytest.raises(FieldError, match=r"^precision: must be one of"):
        ImageNetTimmConfig(precision="int8")
    with pytest.raises(FieldError, match=r"^token_pool: must be one of"):
        ImageNetTimmConfig(token_pool="max")
    job = Job.start(ImageNetTimmConfig(device="cpu", precision="bf16"), 0)
    with job.autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


def test_new_fields_keep_default_keys() -> None:
    """The speed fields and ``train.shuffle`` enter the trace key only when not at their
    defaults; exits traces carry the exits format (heads from cached features, no stem exit)."""
    cascade = ImageNetTimmConfig(data_dir="/d")
    key = cascade.trace_key(0)
    full = dataclasses.asdict(cascade)
    for name in ("precision", "compile", "cudnn_benchmark", "persistent_workers", "token_pool"):
        assert name in full and name not in key  # the config has the new fields, the key drops them
    assert "shuffle" not in key["train"] and "exits_format" not in key
    assert config_key(replace(cascade, precision="bf16").trace_key(0)) != config_key(key)
    assert replace(cascade, train=HeadTraining(shuffle=False)).trace_key(0)["train"]["shuffle"] is False
    assert replace(cascade, mode="exits").trace_key(0)["exits_format"] == 2


@pytest.mark.gpu
@pytest.mark.parametrize(("precision", "compile_"), [("fp16", False), ("bf16", True)])
def test_cuda_speed_options(data_dir: Path, tmp_path: Path, precision: str, compile_: bool) -> None:
    """On a GPU: autocast, NHWC, cuDNN autotuning and torch.compile give the CPU's fp32
    probabilities up to half-precision rounding; the GPU labels the costs."""
    cpu = imagenet_trace(exits_config(data_dir, tmp_path, device="cpu"), 0)
    cfg = exits_config(
        data_dir, tmp_path, device="cuda", precision=precision, channels_last=True, cudnn_benchmark=True,
        compile=compile_,
    )  # fmt: skip
    gpu = imagenet_trace(cfg, 0)
    assert gpu.meta["env_device"] == torch.cuda.get_device_name(0) and gpu.meta["run_device"] == "cuda"
    assert gpu.meta["precision"] == precision and gpu.meta["cudnn_benchmark"] == "True"
    assert gpu.cost_unit.endswith(f", {torch.cuda.get_device_name(0)})")
    assert cpu.probs is not None and gpu.probs is not None
    np.testing.assert_allclose(gpu.probs, cpu.probs, atol=0.05)
