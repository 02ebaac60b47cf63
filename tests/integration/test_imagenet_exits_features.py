"""``imagenet_timm`` exits mode: heads trained from cached pooled features equal heads trained
with a backbone pass per batch; the cache (float16 on disk, keyed by what the features depend
on) is reused across head settings; the trained heads are saved with the trace and reload into a
served model that reproduces the trace's probabilities. Generated images, random-weight models."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from test_workload_imagenet_timm import FAST, write_imagenet
from torch import nn

from ttamer.workloads.trained import cached_model, load_weights, save_weights
from ttamer.workloads.vision.imagenet_timm.config import HeadTraining, ImageNetTimmConfig
from ttamer.workloads.vision.imagenet_timm.data import eval_transform, loader
from ttamer.workloads.vision.imagenet_timm.exits import network, num_classes, splits
from ttamer.workloads.vision.imagenet_timm.features import FOLDER, pooled_features, train_heads
from ttamer.workloads.vision.imagenet_timm.produce import imagenet_trace
from ttamer.workloads.vision.imagenet_timm.running import Job
from ttamer.workloads.vision.imagenet_timm.served import (
    held_out_requests,
    produce_with_model,
    untrained_model,
)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_imagenet(tmp_path_factory.mktemp("data"))


def config(data_dir: Path, cache: Path, **changes: Any) -> ImageNetTimmConfig:
    base = ImageNetTimmConfig(
        **FAST, data_dir=str(data_dir), mode="exits", model="test_resnet", final_head="linear",
        train=HeadTraining(epochs=3, lr=0.05, shuffle=False), cache_dir=str(cache), reference="last_stage",
    )  # fmt: skip
    return replace(base, **changes)


def old_way_training(net: Any, data: Any, job: Job, heads: list[int]) -> None:
    """Head training as before the feature cache: every batch runs the frozen backbone."""
    torch.manual_seed(job.seed)
    net.eval()
    net.requires_grad_(False)
    params = [p for i in heads for p in net.heads[i].fc.parameters()]
    for p in params:
        p.requires_grad_(True)
    train = job.config.train
    opt = torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay)
    for _ in range(train.epochs):
        for x, y in data:
            with torch.no_grad():
                h, feats = x, []
                for i in range(max(heads) + 1):
                    h = net.segments[i](h)
                    feats.append(h)
            loss = torch.stack([nn.functional.cross_entropy(net.heads[i](feats[i]), y) for i in heads]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()


@pytest.mark.parametrize("model", ["test_resnet", "test_vit"])
def test_cached_features_train_the_same_heads(data_dir: Path, tmp_path: Path, model: str) -> None:
    job = Job.start(config(data_dir, tmp_path, model=model), 0)
    train_split, val_split, space = splits(job)
    transform, _ = eval_transform(model, False)
    new, _ = network(job, num_classes(space, train_split))
    old, _ = network(job, num_classes(space, train_split))
    heads = list(range(new.n_stages))
    feats, labels = pooled_features(new, heads, loader(train_split, transform, job.config, job.device), job)
    assert labels.tolist() == train_split.labels.tolist()
    history = train_heads(new, feats, labels, job)
    assert len(history) == 3 and history[-1] < history[0]
    old_way_training(old, loader(train_split, transform, job.config, job.device), job, heads)
    for i in heads:
        torch.testing.assert_close(new.heads[i].fc.weight, old.heads[i].fc.weight, rtol=1e-4, atol=1e-5)
    # the features path gives the full network's logits for the same head weights
    x = torch.stack([transform(Image.open(p).convert("RGB")) for p in val_split.paths[:6]])
    with torch.no_grad():
        full = new.eval()(x)
        pooled, _ = pooled_features(new, heads, [(x, torch.zeros(len(x), dtype=torch.int64))], job)
        for i in heads:
            torch.testing.assert_close(new.heads[i].classify(pooled[i]), full[i], rtol=1e-5, atol=1e-5)


def test_feature_cache_is_float16_and_reused(data_dir: Path, tmp_path: Path) -> None:
    cfg = config(data_dir, tmp_path)
    trace = imagenet_trace(cfg, 0)
    files = list((tmp_path / FOLDER).glob("test_resnet-*.pt"))
    assert len(files) == 1
    saved = torch.load(files[0], weights_only=True)
    assert {f.dtype for f in saved["features"].values()} == {torch.float16}
    assert sorted(saved["features"]) == ["0", "1", "2", "3"]  # all four heads are trained (linear)
    assert trace.stage_names == ("layer1", "layer2", "layer3", "layer4")
    stamp = files[0].stat().st_mtime_ns
    again = imagenet_trace(replace(cfg, train=replace(cfg.train, epochs=5, shuffle=True)), 0)
    assert files[0].stat().st_mtime_ns == stamp  # other head settings: the features are reused
    assert len(again.meta["train_loss"].split(",")) == 5
    imagenet_trace(replace(cfg, final_head="model", out_indices=(2, 3, 4)), 0)
    assert len(list((tmp_path / FOLDER).glob("*.pt"))) == 2  # other exits: other features
    imagenet_trace(replace(cfg, recompute=True), 0)
    assert files[0].stat().st_mtime_ns != stamp


def test_cached_heads_give_the_traced_probabilities(data_dir: Path, tmp_path: Path) -> None:
    """The heads saved next to the trace (their linear layers only) load into the untrained
    network, which served on the held-out images reproduces the trace's probabilities."""
    cfg = config(data_dir, tmp_path, model="test_vit", final_head="model", out_indices=(1, 3, 5))
    trace, net = produce_with_model(cfg, 0, tmp_path)
    path = tmp_path / "heads.weights.pt"
    save_weights(net, path)
    saved = sorted(torch.load(path, weights_only=True))
    assert saved == [f"heads.{i}.fc.{p}" for i in (0, 1) for p in ("bias", "weight")]
    model = load_weights(untrained_model(cfg, 0), path)
    served, requests = held_out_requests(cfg, 0, model, trace)
    assert served.n_stages == trace.n_stages and len(requests) == trace.n_samples
    with torch.inference_mode():
        h, probs = requests, []
        for i in range(served.n_stages):
            h, out = served.stage(i, h)
            probs.append(served.probabilities(out))
    assert trace.probs is not None
    np.testing.assert_allclose(np.stack(probs, axis=1), trace.probs, rtol=1e-4, atol=1e-6)


def test_cached_model_keeps_the_heads_with_the_trace(data_dir: Path, tmp_path: Path) -> None:
    """Through the workload registry (``produce`` module): the first call trains and saves the
    heads next to the trace, the second reloads both."""
    cfg = config(data_dir, tmp_path / "cache")
    model, trace, reused = cached_model(cfg, 0, tmp_path / "traces", tmp_path)
    assert not reused and len(list((tmp_path / "traces").glob("imagenet_timm-*.weights.pt"))) == 1
    again, same, reused = cached_model(cfg, 0, tmp_path / "traces", tmp_path)
    assert reused and np.array_equal(same.probs, trace.probs)
    for i in range(model.n_stages):
        torch.testing.assert_close(again.heads[i].fc.weight, model.heads[i].fc.weight.cpu())
