"""A multi-exit network from any timm model: the backbone split at its feature stages, with an
exit head after each.

timm describes every CNN-style model's stages in ``model.feature_info`` (module name, channels,
reduction); its ``features_only`` wrapper (``FeatureListNet``) rebuilds the backbone as an
ordered list of the model's own modules and taps the output of each stage module. This module
cuts that same ordered list at the tapped stages, so that ``segments[i]`` runs from just after
stage ``i - 1`` up to and including stage ``i`` (the stem goes with the first segment), and the
modules are the model's own (pretrained weights carry over). Each exit head pools the stage's
features and applies a linear classifier (``PooledLinearHead``); the last exit may instead be
the model's own classifier (``final_head="model"``, for pretrained ImageNet models).

Works for the models whose ``features_only`` extractor is timm's ``FeatureListNet`` /
``FeatureDictNet`` (ResNet/ResNeXt/ResNet-D/-T, ConvNeXt, RegNet, DenseNet, VGG, DLA, CSPNet,
RepVGG, ByobNet, NFNet, ...); the cut is checked against that extractor's module list. Models
that timm serves through hooks, ``forward_intermediates`` (vision transformers) or a feature
class of their own (EfficientNet, MobileNetV3, HRNet) cannot be cut into sequential segments
this way and raise a ``ValueError`` naming the model.

With ``final_head="model"`` the last head holds the whole timm model (its ``forward_head`` is
called), so the backbone's parameters appear twice in ``state_dict`` (once under the segments)
and ``heads.parameters()`` includes them (frozen when the segments are).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from ttamer.workloads.multi_exit import MultiExitNet


class PooledLinearHead(nn.Module):
    """Global average pooling, optional dropout, then one linear layer to class logits.

    ``fmt``: the layout of the features, ``"NCHW"`` or ``"NHWC"``; 3-D inputs ``(B, tokens, C)``
    are averaged over tokens, 2-D inputs ``(B, C)`` are used as they are."""

    def __init__(self, in_chs: int, num_classes: int, fmt: str = "NCHW", dropout: float = 0.0):
        super().__init__()
        if fmt not in ("NCHW", "NHWC"):
            raise ValueError(f"fmt: must be NCHW or NHWC, got {fmt!r}")
        self.fmt = fmt
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(in_chs, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            x = x.mean(dim=(2, 3)) if self.fmt == "NCHW" else x.mean(dim=(1, 2))
        elif x.dim() == 3:
            x = x.mean(dim=1)
        return self.fc(self.drop(x))


class ModelHead(nn.Module):
    """The timm model's own classifier (``model.forward_head``) as an exit head."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.model.forward_head(x)  # type: ignore[operator]
        return out


@dataclass(frozen=True)
class StageInfo:
    """One exit's stage: the timm module it ends at, its channels and its stride."""

    module: str
    num_chs: int
    reduction: int


def resolve_out_indices(model: nn.Module, out_indices: Sequence[int] | None = None) -> tuple[int, ...]:
    """``out_indices`` as increasing non-negative indices into ``model.feature_info`` (negative
    ones count from the end; None: every stage); a ``ValueError`` naming the field otherwise."""
    from timm.models._features import FeatureInfo

    info = getattr(model, "feature_info", None)
    name = type(model).__name__
    if not isinstance(info, (list, tuple, FeatureInfo)) or len(info) == 0:
        raise ValueError(f"{name} has no feature_info: timm cannot describe its stages")
    n_info = len(info)
    indices = tuple(range(n_info)) if out_indices is None else tuple(int(i) for i in out_indices)
    if not indices:
        raise ValueError("out_indices: need at least one stage")
    if any(not -n_info <= i < n_info for i in indices):
        raise ValueError(f"out_indices: {list(indices)} out of range for {n_info} feature stages of {name}")
    indices = tuple(i % n_info for i in indices)
    if list(indices) != sorted(set(indices)):
        raise ValueError(f"out_indices: must be increasing and distinct, got {list(indices)}")
    return indices


def stage_segments(
    model: nn.Module, out_indices: Sequence[int] | None = None, reference_keys: Sequence[str] | None = None
) -> tuple[list[nn.Module], list[StageInfo]]:
    """Cut a timm model into sequential segments ending at its feature stages ``out_indices``
    (indices into ``model.feature_info``; None: every stage). Returns the segments (each an
    ``nn.Sequential`` of the model's own modules) and the stages' info.

    ``reference_keys``: the module names of timm's own ``features_only`` extractor for this
    model (None: not checked); the cut must run exactly those modules. ``timm_multi_exit``
    passes them, after checking that timm's extractor is itself a module sequence."""
    from timm.models._features import FeatureDictNet

    info: Any = model.feature_info
    name = type(model).__name__
    indices = resolve_out_indices(model, out_indices)
    modules = [str(info[i]["module"]) for i in indices]
    flatten = any("." in m for m in modules)
    try:
        features = FeatureDictNet(model, out_indices=indices, flatten_sequential=flatten)
    except (AssertionError, KeyError, AttributeError) as exc:
        raise ValueError(
            f"{name}: its stages {modules} are not a sequence of its modules ({exc}); "
            "timm extracts this model's features by hooks or forward_intermediates, which cannot be "
            "cut into exits"
        ) from exc
    if reference_keys is not None and list(features.keys()) != list(reference_keys):
        raise ValueError(
            f"{name}: cut into modules {list(features.keys())}, but timm's features_only extractor "
            f"runs {list(reference_keys)}"
        )
    segments: list[nn.Module] = []
    current: list[tuple[str, nn.Module]] = []
    for key, module in features.items():
        current.append((key, module))
        if key in features.return_layers:
            segments.append(nn.Sequential(OrderedDict(current)))
            current = []
    stages = [
        StageInfo(str(info[i]["module"]), int(info[i]["num_chs"]), int(info[i]["reduction"])) for i in indices
    ]
    return segments, stages


def timm_multi_exit(
    name: str,
    num_classes: int,
    in_chans: int = 3,
    out_indices: Sequence[int] | None = None,
    pretrained: bool = False,
    head_dropout: float = 0.0,
    final_head: Literal["linear", "model"] = "linear",
    model_kwargs: Mapping[str, Any] | None = None,
    check_input_size: Sequence[int] | None = None,
) -> tuple[MultiExitNet, list[StageInfo]]:
    """A ``MultiExitNet`` from the timm model ``name``: one segment per feature stage in
    ``out_indices`` (None: all of ``model.feature_info``), each followed by a
    ``PooledLinearHead`` of ``num_classes``.

    ``model_kwargs`` go to ``timm.create_model`` (e.g. ``channels``, ``stem_width``, ``dims``).
    ``final_head="model"``: the last exit is the model's own classifier (its pretrained head),
    which requires the last stage to be the end of the model's ``forward_features``; this is
    checked by comparing with ``model(x)`` on a random input of ``check_input_size``
    ``(C, H, W)`` (default: the model's ``pretrained_cfg`` input size)."""
    import timm

    if final_head not in ("linear", "model"):
        raise ValueError(f"final_head: must be linear or model, got {final_head!r}")
    model = timm.create_model(
        name, pretrained=pretrained, num_classes=num_classes, in_chans=in_chans, **dict(model_kwargs or {})
    )
    indices = resolve_out_indices(model, out_indices)
    segments, stages = stage_segments(model, indices, _reference_keys(name, in_chans, indices, model_kwargs))
    fmt = str(getattr(model, "output_fmt", "NCHW"))
    fmt = fmt if fmt in ("NCHW", "NHWC") else "NCHW"
    heads: list[nn.Module] = [PooledLinearHead(s.num_chs, num_classes, fmt, head_dropout) for s in stages]
    if final_head == "model":
        heads[-1] = ModelHead(model)
    net = MultiExitNet(segments, heads)
    if final_head == "model":
        _check_model_head(net, model, name, in_chans, check_input_size)
    return net, stages


def _reference_keys(
    name: str, in_chans: int, out_indices: tuple[int, ...], model_kwargs: Mapping[str, Any] | None
) -> list[str]:
    """The module names of timm's own ``features_only`` extractor (random weights); a
    ``ValueError`` when timm does not extract this model's features as a module sequence."""
    import timm
    from timm.models._features import FeatureDictNet

    kwargs = {**dict(model_kwargs or {}), "out_indices": out_indices}
    extractor = timm.create_model(name, pretrained=False, features_only=True, in_chans=in_chans, **kwargs)
    if not isinstance(extractor, FeatureDictNet):
        raise ValueError(
            f"{name}: timm extracts its features with {type(extractor).__name__}, not as a sequence of "
            "the model's modules (the forward pass does work between modules, or the model has its own "
            "feature class), so it cannot be cut into exits"
        )
    return list(extractor.keys())


@torch.no_grad()
def _check_model_head(
    net: MultiExitNet, model: nn.Module, name: str, in_chans: int, size: Sequence[int] | None
) -> None:
    if size is None:
        cfg = getattr(model, "pretrained_cfg", {}) or {}
        size = (in_chans, *tuple(cfg.get("input_size", (in_chans, 224, 224)))[1:])
    was_training = model.training
    model.eval()
    x = torch.randn(1, *size, generator=torch.Generator().manual_seed(0))
    try:
        ok = torch.allclose(net(x)[-1], model(x), rtol=1e-4, atol=1e-4)
    except RuntimeError:  # shape mismatch: the head expects features the last stage does not give
        ok = False
    model.train(was_training)
    if not ok:
        raise ValueError(
            f"final_head: {name}'s own classifier does not follow its last feature stage directly "
            "(forward_features does more after it); use final_head='linear'"
        )
