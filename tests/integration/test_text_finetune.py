"""The text exits' training recipes (``finetune``, ``deebert``) and ``device: auto``, on a tiny
random-weight BERT built here (nothing downloads): the learning-rate schedule against its closed
form, gradient clipping, which weights each DeeBERT stage moves, and honest device labels."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import app_env, run_app
from test_workload_glue_hf import REPO, load, tiny_model, write_pair_tsvs

from ttamer.workloads.latency import LatencyConfig
from ttamer.workloads.multi_exit import MultiExitNet, TrainConfig, exit_probabilities
from ttamer.workloads.text.exits import finetune
from ttamer.workloads.text.exits.config import FinetuneConfig, TextTrainConfig
from ttamer.workloads.text.exits.finetune import (
    Optimiser,
    autocast_dtype,
    deebert_stage1,
    deebert_stage2,
    finetune_exits,
    linear_warmup_decay,
    set_standardisation,
)
from ttamer.workloads.text.exits.heads import build_text_exits
from ttamer.workloads.text.exits.tokens import TokenBatch, tokenize
from ttamer.workloads.text.exits.trace import run_device
from ttamer.workloads.text.glue_hf.config import GlueHfConfig

TEXTS = ["good film", "great fun", "a fine story", "bad plot", "awful and dull", "boring actor"]
LABELS = [1, 1, 1, 0, 0, 0]


def tiny_net(tmp_path: Path, n: int = 8) -> tuple[MultiExitNet, TokenBatch, torch.Tensor]:
    """A 3-layer random BERT with exits, ``6 * n`` tokenised rows and their labels."""
    model, tok = load(tiny_model("bert", tmp_path / "bert"))
    net = build_text_exits(model, 2)
    x = tokenize(tok, TEXTS * n)
    return net, x, torch.tensor(LABELS * n)


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same(a: dict[str, torch.Tensor], module: torch.nn.Module) -> bool:
    return all(torch.equal(v, module.state_dict()[k]) for k, v in a.items())


def test_linear_warmup_decay_at_chosen_steps() -> None:
    # 4 warmup steps out of 12: rises by 1/4 per step, then falls by 1/8 per step to 0
    assert [linear_warmup_decay(s, 4, 12) for s in (0, 1, 2, 4, 6, 11, 12, 20)] == [
        0.0, 0.25, 0.5, 1.0, 0.75, 0.125, 0.0, 0.0,
    ]  # fmt: skip
    assert [linear_warmup_decay(s, 0, 5) for s in (0, 1, 4, 5)] == [1.0, 0.8, 0.2, 0.0]


def test_schedule_of_a_run_equals_the_closed_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each optimiser step's learning rates in a real run: 10 rows, batches of 4 -> 3 steps per
    epoch, 2 epochs -> 6 steps, warmup ceil(0.25 * 6) = 2 steps; multipliers 0, 1/2, 1, 3/4,
    1/2, 1/4; the backbone's groups at 2e-5 times that, the heads' at 1e-3 times that."""
    net, x, y = tiny_net(tmp_path)
    x, y = x[torch.arange(10)], y[:10]
    seen: list[list[tuple[float, bool]]] = []
    step = Optimiser.step

    def record(self: Optimiser, *args: Any) -> torch.Tensor:
        heads = {id(p) for h in net.heads for p in h.parameters()}
        seen.append([(g["lr"], id(g["params"][0]) in heads) for g in self.opt.param_groups])
        return step(self, *args)

    monkeypatch.setattr(Optimiser, "step", record)
    cfg = FinetuneConfig(epochs=2, batch_size=4, backbone_lr=2e-5, head_lr=1e-3, warmup_fraction=0.25)
    finetune_exits(net, x, y, cfg, seed=0)
    multipliers = [0.0, 0.5, 1.0, 0.75, 0.5, 0.25]
    assert len(seen) == 6
    for groups, m in zip(seen, multipliers, strict=True):
        assert len(groups) == 4  # backbone and heads, each with and without weight decay
        for lr, is_head in groups:
            assert lr == pytest.approx((1e-3 if is_head else 2e-5) * m, rel=1e-12, abs=1e-15)


def test_parameter_groups_split_the_backbone_the_heads_and_the_decay(tmp_path: Path) -> None:
    net, _, _ = tiny_net(tmp_path, 1)
    cfg = FinetuneConfig(backbone_lr=3e-5, head_lr=0.01, weight_decay=0.1)
    groups = finetune.param_groups(net, [0, 2], cfg)
    ids = [{id(p) for p in g["params"]} for g in groups]
    heads = [{id(p) for p in h.linear.parameters()} for h in net.heads]  # type: ignore[union-attr]
    assert ids[2] | ids[3] == heads[0] | heads[2]  # exit 1's head is not trained
    assert ids[0] | ids[1] == {id(p) for p in net.segments.parameters()}
    settings = [(g["lr"], g["weight_decay"]) for g in groups]
    assert settings == [(3e-5, 0.1), (3e-5, 0.0), (0.01, 0.1), (0.01, 0.0)]
    assert all(p.ndim == 1 for g in (groups[1], groups[3]) for p in g["params"])  # biases, LayerNorm


def grad_norm(params: list[torch.Tensor]) -> float:
    squares = [(p.grad.double() ** 2).sum() for p in params if p.grad is not None]
    return float(torch.stack(squares).sum().sqrt())


@pytest.mark.parametrize("max_norm", [1e-3, None])
def test_clipping_bounds_the_gradient_norm(tmp_path: Path, max_norm: float | None) -> None:
    """The gradients left by a step have total norm ``max_norm`` when the raw norm is larger
    (computed independently on a copy of the model: eval mode, no dropout), else the raw norm."""
    net, x, y = tiny_net(tmp_path, 1)
    set_standardisation(net, x)
    twin = copy.deepcopy(net)
    loss = torch.stack([torch.nn.functional.cross_entropy(lg, y) for lg in twin(x)]).mean()
    loss.backward()
    raw = grad_norm(list(twin.parameters()))
    opt = Optimiser.build(net, [0, 1, 2], FinetuneConfig(max_grad_norm=max_norm), 10, torch.device("cpu"))
    opt.step(net, x, y, [0, 1, 2])
    params = [p for g in opt.opt.param_groups for p in g["params"]]
    assert raw > 1e-3
    assert grad_norm(params) == pytest.approx(raw if max_norm is None else max_norm, rel=1e-4)


def test_finetune_moves_the_backbone_and_learns(tmp_path: Path) -> None:
    net, x, y = tiny_net(tmp_path)
    before = snapshot(net.segments)
    set_standardisation(net, x)
    cfg = FinetuneConfig(epochs=15, batch_size=8, backbone_lr=1e-3, head_lr=1e-2, warmup_fraction=0.1)
    history = finetune_exits(net, x, y, cfg, seed=0)
    assert not same(before, net.segments) and history[-1] < history[0]
    assert not net.training  # left in eval mode
    probs = exit_probabilities(net, x)  # type: ignore[arg-type]
    assert (probs.argmax(axis=2) == y.numpy()[:, None]).mean(axis=0).min() > 0.9  # every exit


def test_deebert_stage1_moves_the_backbone_and_stage2_only_the_other_heads(tmp_path: Path) -> None:
    net, x, y = tiny_net(tmp_path)
    set_standardisation(net, x)
    backbone, heads = snapshot(net.segments), [snapshot(h) for h in net.heads]
    deebert_stage1(net, x, y, FinetuneConfig(epochs=2, batch_size=8, backbone_lr=1e-3), seed=0)
    assert not same(backbone, net.segments)
    assert not same(heads[2], net.heads[2])  # the last exit is trained with the backbone
    assert same(heads[0], net.heads[0]) and same(heads[1], net.heads[1])
    backbone, heads = snapshot(net.segments), [snapshot(h) for h in net.heads]
    deebert_stage2(net, x, y, TrainConfig(epochs=5, lr=0.01, batch_size=16, freeze_backbone=True))
    assert same(backbone, net.segments)
    assert same(heads[2], net.heads[2])
    assert not same(heads[0], net.heads[0]) and not same(heads[1], net.heads[1])


def test_autocast_only_on_cuda() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert [autocast_dtype(p, cpu) for p in ("auto", "fp32", "bf16", "fp16")] == [None] * 4
    assert autocast_dtype("fp32", cuda) is None
    assert autocast_dtype("bf16", cuda) == torch.bfloat16 and autocast_dtype("fp16", cuda) == torch.float16


def test_device_auto_resolves_to_what_is_there(monkeypatch: pytest.MonkeyPatch) -> None:
    assert GlueHfConfig().device == "auto"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert run_device("auto") == torch.device("cuda") and run_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert run_device("auto") == torch.device("cpu")


def glue_config(tmp_path: Path, recipe: str, **extra: Any) -> GlueHfConfig:
    folder = tiny_model("bert", tmp_path / "tiny-bert")
    train, dev = write_pair_tsvs(tmp_path / "data", 48, 12)
    return GlueHfConfig(
        task="mrpc", model=str(folder), train_path=str(train), eval_path=str(dev),
        train=TextTrainConfig(recipe=recipe, epochs=3, finetune=FinetuneConfig(epochs=1, batch_size=16)),
        latency=LatencyConfig((1, 2), warmup=1, repeats=2), **extra,
    )  # fmt: skip


@pytest.mark.parametrize("recipe", ["finetune", "deebert"])
def test_glue_hf_recipes_label_the_device_used(tmp_path: Path, recipe: str) -> None:
    """On a machine without CUDA, ``device: auto`` runs on the CPU and says so; with CUDA it
    runs there and names the GPU."""
    from ttamer.workloads.text.glue_hf.workload import produce

    trace = produce(glue_config(tmp_path, recipe), 0, tmp_path)
    label = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    assert trace.cost_unit == f"ms per request (batch 1, {label})"
    assert trace.meta["env_device"] == label and trace.meta["recipe"] == recipe
    assert trace.probs is not None and trace.probs.shape == (12, 3, 2) and (trace.cost > 0).all()


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_finetune_on_cuda_with_autocast(tmp_path: Path, precision: str) -> None:
    net, x, y = tiny_net(tmp_path)
    net, x, y = net.cuda(), x.to("cuda"), y.cuda()
    before = snapshot(net.segments)
    set_standardisation(net, x)
    cfg = FinetuneConfig(epochs=15, batch_size=8, backbone_lr=1e-3, head_lr=1e-2, precision=precision)
    history = finetune_exits(net, x, y, cfg, seed=0)
    assert not same(before, net.segments) and np.isfinite(history).all() and history[-1] < history[0]
    assert all(p.dtype == torch.float32 for p in net.parameters())  # autocast, not a cast


@pytest.mark.slow
def test_app_runs_deebert_with_nested_overrides(tmp_path: Path) -> None:
    config = glue_config(tmp_path, "deebert")
    run_dir = tmp_path / "run"
    args = [
        "workload=glue_hf", f"hydra.run.dir={run_dir}", f"workload.cache_dir={tmp_path / 'cache'}",
        "logger=none", "progress=false", "workload.task=mrpc", f"workload.model={config.model}",
        f"workload.train_path={config.train_path}", f"workload.eval_path={config.eval_path}",
        "workload.train.recipe=deebert", "workload.train.epochs=3", "workload.train.finetune.epochs=1",
        "workload.train.finetune.max_grad_norm=null", "workload.train.finetune.precision=bf16",
        "workload.latency.repeats=2", "workload.latency.warmup=1", "workload.latency.batch_sizes=[1,4]",
        "workload.n_splits=2", "workload.fit.n_bins=3", "workload.threads=1",
    ]  # fmt: skip
    proc = run_app(*args, env=app_env(HF_HUB_OFFLINE="1"), cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    points = pd.read_csv(run_dir / "glue_hf_points.csv")
    label = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    assert (points["cost_unit"] == f"ms per request (batch 1, {label})").all()
    bad = run_app(*args[:-1], "workload.train.finetune.warmup_fraction=1.5", env=app_env(), cwd=REPO)
    assert bad.returncode != 0 and "workload.train.finetune.warmup_fraction" in bad.stdout + bad.stderr


def test_glue_hf_heads_recipe_is_unchanged_by_the_new_fields(tmp_path: Path) -> None:
    """Recipe ``heads`` ignores the fine-tuning settings: the same trace whatever they hold."""
    from ttamer.workloads.text.glue_hf.workload import produce

    config = glue_config(tmp_path, "heads", device="cpu")
    other = dataclasses.replace(
        config, train=dataclasses.replace(config.train, finetune=FinetuneConfig(epochs=7, backbone_lr=0.1))
    )
    a, b = produce(config, 0, tmp_path), produce(other, 0, tmp_path)
    np.testing.assert_array_equal(a.probs, b.probs)
