"""Exits-mode backbones beyond timm's module sequences: EfficientNet, MobileNetV3 and vision
transformers (ViT, DeiT, DeiT distilled) cut into exits with random weights; the stem is no exit;
the segments compose to the model's own forward; only the trained heads are saved."""

from __future__ import annotations

from typing import Any

import pytest
import timm
import torch

from ttamer.workloads.multi_exit import keep_trained_state_only
from ttamer.workloads.vision.timm_exits import ModelHead, PooledLinearHead, is_stem, timm_multi_exit
from ttamer.workloads.vision.timm_vit_exits import TokenPoolHead

SMALL = (3, 64, 64)
VIT_64: dict[str, Any] = {"img_size": 64}


def run(net: Any, x: torch.Tensor) -> list[torch.Tensor]:
    net.eval()
    with torch.no_grad():
        return list(net(x))


@pytest.mark.parametrize(
    ("name", "kwargs", "out_indices", "modules"),
    [
        ("resnet10t", {}, None, ["layer1", "layer2", "layer3", "layer4"]),
        ("test_efficientnet", {}, None, ["blocks.0", "blocks.1", "blocks.2", "blocks.3", "blocks.4"]),
        ("tf_efficientnet_lite0", {}, (1, 2, 4), ["blocks.1", "blocks.2", "blocks.6"]),
        ("mobilenetv3_small_050", {}, None, ["blocks.0", "blocks.1", "blocks.3", "blocks.5"]),
        ("test_vit", {}, (1, 3, 5), ["blocks.1", "blocks.3", "blocks.5"]),
        ("vit_tiny_patch16_224", VIT_64, (2, 11), ["blocks.2", "blocks.11"]),
        ("deit_tiny_patch16_224", VIT_64, (5, 11), ["blocks.5", "blocks.11"]),
        ("deit_tiny_distilled_patch16_224", VIT_64, (0, 11), ["blocks.0", "blocks.11"]),
    ],
)
def test_last_exit_is_the_model(
    name: str, kwargs: dict[str, Any], out_indices: Any, modules: list[str]
) -> None:
    """With final_head=model the last exit's logits are the timm model's own logits (the
    segments compose to forward_features); the exits sit where asked, none at the stem."""
    torch.manual_seed(0)
    size = None if kwargs else SMALL
    net, stages = timm_multi_exit(
        name, 10, out_indices=out_indices, final_head="model", model_kwargs=kwargs, check_input_size=size
    )
    assert [s.module for s in stages] == modules
    head = net.heads[-1]
    assert isinstance(head, ModelHead)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    logits = run(net, x)
    assert len(logits) == net.n_stages == len(modules)
    torch.testing.assert_close(logits[-1], head.model.eval()(x), rtol=1e-4, atol=1e-4)
    assert all(lg.shape == (2, 10) for lg in logits)


def test_efficientnet_last_exit_runs_the_head_convolution() -> None:
    """EfficientNet's forward_features ends with conv_head and bn2: the last segment runs them
    (num_features channels), so a linear last exit pools what the model's classifier pools."""
    torch.manual_seed(0)
    net, stages = timm_multi_exit("test_efficientnet", 4, final_head="model", check_input_size=SMALL)
    head = net.heads[-1]
    assert isinstance(head, ModelHead)
    model: Any = head.model.eval()
    assert stages[-1].num_chs == model.num_features == 256
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    net.eval()
    with torch.no_grad():
        h = x
        for seg in net.segments:
            h = seg(h)
        torch.testing.assert_close(h, model.forward_features(x))
    linear, _ = timm_multi_exit("test_efficientnet", 4, check_input_size=SMALL)
    last = linear.heads[-1]
    assert isinstance(last, PooledLinearHead) and last.fc.in_features == 256


@pytest.mark.parametrize(("pool", "expect"), [("token", "token"), ("avg", "avg"), ("auto", "token")])
def test_transformer_exit_pooling(pool: str, expect: str) -> None:
    """A transformer exit normalises the block's tokens with the model's final norm and pools
    the class token or the mean of the patch tokens; the last exit (after norm) is not normalised
    twice, so a linear last exit consumes exactly the model's pre-logits."""
    torch.manual_seed(0)
    net, _ = timm_multi_exit("test_vit", 5, out_indices=(2, 5), token_pool=pool)
    vit: Any = net.segments[0][0].model.eval()  # the model the exits were cut from
    x = torch.randn(2, 3, 160, 160, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        tokens = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(x))))
        after2 = vit.blocks[:3](tokens)
        final = vit.norm(vit.blocks[3:](after2))
        h0 = net.segments[0](x)
        torch.testing.assert_close(h0, after2)
        head0, head1 = net.heads
        assert isinstance(head0, TokenPoolHead) and head0.pool == expect
        normed = vit.norm(after2)
        want0 = normed[:, 0] if expect == "token" else normed[:, vit.num_prefix_tokens :].mean(dim=1)
        torch.testing.assert_close(head0.pool_features(h0), want0)
        h1 = net.segments[1](h0)
        torch.testing.assert_close(h1, final)
        if pool == "auto":
            torch.testing.assert_close(head1.pool_features(h1), vit.forward_head(final, pre_logits=True))


def test_transformer_pool_errors() -> None:
    with pytest.raises(ValueError, match="token_pool"):
        timm_multi_exit("test_vit", 5, token_pool="max")


def test_stem_is_not_an_exit_by_default() -> None:
    info: Any = timm.create_model("resnet10t").feature_info
    assert is_stem(info[0]) and not any(is_stem(e) for e in info[1:])
    effnet: Any = timm.create_model("test_efficientnet").feature_info
    assert not any(is_stem(e) for e in effnet)  # blocks.0 is a stage of blocks
    mnv3: Any = timm.create_model("mobilenetv3_small_050").feature_info
    assert is_stem(mnv3[0])  # bn1, stage 0
    _, stages = timm_multi_exit("test_resnet", 3, out_indices=(0, 1))  # still available when asked
    assert [s.module for s in stages] == ["act1", "layer1"]


def test_state_dict_holds_only_the_trained_heads() -> None:
    torch.manual_seed(0)
    net, _ = timm_multi_exit("test_resnet", 3, final_head="model", check_input_size=SMALL)
    keep_trained_state_only(net, ["heads.0.fc", "heads.1.fc", "heads.2.fc"])
    state = net.state_dict()
    assert sorted(state) == sorted(f"heads.{i}.fc.{p}" for i in range(3) for p in ("weight", "bias"))
    torch.manual_seed(1)
    other, _ = timm_multi_exit("test_resnet", 3, final_head="model", check_input_size=SMALL)
    keep_trained_state_only(other, ["heads.0.fc", "heads.1.fc", "heads.2.fc"])
    other.load_state_dict(state)
    for i in range(3):
        torch.testing.assert_close(other.heads[i].fc.weight, net.heads[i].fc.weight)
    with pytest.raises(RuntimeError, match=r"Missing key.*heads\.1\.fc\.weight"):
        other.load_state_dict({k: v for k, v in state.items() if not k.startswith("heads.1.")})
    with pytest.raises(RuntimeError, match="Unexpected key"):
        other.load_state_dict({**state, "heads.9.fc.weight": torch.zeros(1)})
