"""The timm multi-exit builder: a timm model cut at its feature stages, an exit head per stage."""

from __future__ import annotations

from typing import Any

import pytest
import timm
import torch

from ttamer.workloads.multi_exit import MultiExitNet
from ttamer.workloads.vision.timm_exits import ModelHead, PooledLinearHead, timm_multi_exit


def _reference_extractor(
    net: MultiExitNet, name: str, in_chans: int, out_indices: tuple[int, ...] | None
) -> torch.nn.Module:
    """timm's own features_only extractor of ``name``, loaded with the segments' weights."""
    kwargs: dict[str, Any] = {} if out_indices is None else {"out_indices": out_indices}
    ref = timm.create_model(name, pretrained=False, features_only=True, in_chans=in_chans, **kwargs)
    weights = {k: v for seg in net.segments for k, v in seg.state_dict().items()}
    ref.load_state_dict(weights, strict=True)  # same module names and shapes, nothing left over
    return ref.eval()


@pytest.mark.parametrize(
    ("name", "out_indices", "stages_used"),
    [
        ("test_resnet", None, (1, 2, 3, 4)),  # null: every stage after the stem (act1)
        ("test_resnet", (1, 2, 3, 4), (1, 2, 3, 4)),
        ("test_convnext", None, (0, 1, 2, 3)),  # no stem in its feature_info
        ("test_byobnet", (0, 2, 4), (0, 2, 4)),
    ],
)
def test_chained_stages_equal_timm_features(
    name: str, out_indices: tuple[int, ...] | None, stages_used: tuple[int, ...]
) -> None:
    torch.manual_seed(0)
    net, stages = timm_multi_exit(name, num_classes=7, in_chans=1, out_indices=out_indices)
    info: Any = timm.create_model(name, pretrained=False).feature_info
    assert [s.module for s in stages] == [info[i]["module"] for i in stages_used]
    assert net.n_stages == len(stages) == len(stages_used) >= 3
    assert all(isinstance(h, PooledLinearHead) for h in net.heads)

    ref = _reference_extractor(net, name, 1, stages_used)
    net.eval()
    x = torch.randn(3, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = ref(x)
        h, logits = x, []
        for i in range(net.n_stages):
            h, lg = net.stage(i, h)
            assert h.shape[1] == stages[i].num_chs
            assert h.shape[-1] == 64 // stages[i].reduction
            torch.testing.assert_close(h, want[i], rtol=1e-5, atol=1e-5)
            assert lg.shape == (3, 7)
            logits.append(lg)
        for a, b in zip(net(x), logits, strict=True):
            torch.testing.assert_close(a, b)


def test_exits_train_jointly() -> None:
    torch.manual_seed(0)
    net, _ = timm_multi_exit("test_resnet", num_classes=3, in_chans=1, out_indices=(1, 2, 3, 4))
    x, y = torch.randn(8, 1, 32, 32), torch.randint(0, 3, (8,))
    loss = torch.stack([torch.nn.functional.cross_entropy(lg, y) for lg in net(x)]).mean()
    loss.backward()
    for i in range(net.n_stages):
        grads = [p.grad for p in net.segments[i].parameters()] + [p.grad for p in net.heads[i].parameters()]
        assert all(g is not None for g in grads), f"stage {i} gets no gradient"


def test_model_head_is_the_models_own_classifier() -> None:
    torch.manual_seed(0)
    net, _ = timm_multi_exit("test_resnet", num_classes=5, in_chans=3, final_head="model")
    head = net.heads[-1]
    assert isinstance(head, ModelHead)
    model = head.model
    assert isinstance(net.heads[0], PooledLinearHead)
    net.eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(net(x)[-1], model(x))


def test_model_head_needs_the_last_stage() -> None:
    with pytest.raises(ValueError, match="final_head"):
        timm_multi_exit("test_resnet", num_classes=5, out_indices=(1, 2), final_head="model",
                        check_input_size=(3, 64, 64))  # fmt: skip


def test_models_that_are_not_module_sequences_fail_clearly() -> None:
    with pytest.raises(ValueError, match="test_vit_relpos: timm extracts its features with FeatureGetterNet"):
        timm_multi_exit("test_vit_relpos", num_classes=5)


@pytest.mark.parametrize("bad", [(), (2, 1), (1, 1), (0, 9)])
def test_bad_out_indices(bad: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="out_indices"):
        timm_multi_exit("test_resnet", num_classes=5, out_indices=bad)


def test_pooled_linear_head_layouts() -> None:
    head = PooledLinearHead(4, 2)
    x = torch.randn(3, 4, 5, 6)
    torch.testing.assert_close(head(x), head.fc(x.mean(dim=(2, 3))))
    nhwc = PooledLinearHead(4, 2, fmt="NHWC")
    nhwc.load_state_dict(head.state_dict())
    torch.testing.assert_close(nhwc(x.permute(0, 2, 3, 1)), head(x))
    torch.testing.assert_close(head(x.flatten(2).transpose(1, 2)), head(x))  # tokens (B, N, C)
    with pytest.raises(ValueError, match="fmt"):
        PooledLinearHead(4, 2, fmt="NCWH")
