"""A multi-exit network from a timm model: the backbone split at its feature stages, with an
exit head after each (README: workloads).

timm describes every model's stages in ``model.feature_info`` (module name, channels,
reduction). Three families are cut:

- **module sequences** (ResNet/ResNeXt/ResNet-D/-T, ConvNeXt, RegNet, DenseNet, VGG, DLA,
  CSPNet, RepVGG, ByobNet, NFNet, ...): timm's ``features_only`` wrapper (``FeatureListNet``)
  rebuilds the backbone as an ordered list of the model's own modules and taps the output of
  each stage module. This module cuts that same list at the tapped stages, so that
  ``segments[i]`` runs from just after stage ``i - 1`` up to and including stage ``i`` (the stem
  goes with the first segment); the cut is checked against timm's extractor's module list.
- **EfficientNet and MobileNetV3** (``conv_stem``, ``bn1``, then the stages of ``blocks``): the
  same cut of the model's own modules; when the last exit is the last block stage its segment
  also runs the rest of ``forward_features`` (EfficientNet's ``conv_head`` and ``bn2``), so the
  last exit sees what the model's classifier sees. Checked by composing the segments against
  ``forward_features``.
- **vision transformers** (timm's ``VisionTransformer``: ViT, DeiT, DeiT distilled): exits after
  chosen transformer blocks (:mod:`ttamer.workloads.vision.timm_vit_exits`).

Models that timm serves another way (HRNet, Swin, ...) raise a ``ValueError`` naming the model.
``out_indices`` null takes every stage after the stem (the stem, e.g. ResNet's ``act1``, is not
an exit: :func:`is_stem`).

Each CNN exit head pools the stage's features and applies a linear classifier
(``PooledLinearHead``: :meth:`~PooledLinearHead.pool_features`, then
:meth:`~PooledLinearHead.classify`, so heads can train from cached pooled features); the last exit
may instead be the model's own classifier (``final_head="model"``, for pretrained ImageNet
models). With ``final_head="model"`` the last head holds the whole timm model (its
``forward_head`` is called), so the backbone's parameters appear twice in ``state_dict`` (once
under the segments) and ``heads.parameters()`` includes them (frozen when the segments are).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from ttamer.workloads.multi_exit import MultiExitNet

# the last part of a stem's module name (ResNet's act1, MobileNetV3's bn1, RegNet's stem, DenseNet's
# features.norm0); feature_info entries of stage 0 are stems too
STEM_MODULE = re.compile(r"^(stem\w*|act1|bn1|norm0)$")
# after its last block stage, the rest of forward_features of the block families
BLOCK_FAMILY_TAILS = {"EfficientNet": ("conv_head", "bn2"), "MobileNetV3": ()}


class PooledLinearHead(nn.Module):
    """Global average pooling, optional dropout, then one linear layer to class logits.

    ``fmt``: the layout of the features, ``"NCHW"`` or ``"NHWC"``; 3-D inputs ``(B, tokens, C)``
    are averaged over tokens, 2-D inputs ``(B, C)`` are used as they are. ``forward(x)`` is
    ``classify(pool_features(x))``; the trained part is ``drop`` and ``fc``."""

    def __init__(self, in_chs: int, num_classes: int, fmt: str = "NCHW", dropout: float = 0.0):
        super().__init__()
        if fmt not in ("NCHW", "NHWC"):
            raise ValueError(f"fmt: must be NCHW or NHWC, got {fmt!r}")
        self.fmt = fmt
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(in_chs, num_classes)

    def pool_features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled features (B, C) the linear layer consumes."""
        if x.dim() == 4:
            return x.mean(dim=(2, 3)) if self.fmt == "NCHW" else x.mean(dim=(1, 2))
        if x.dim() == 3:
            return x.mean(dim=1)
        return x

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes) of pooled features (B, C)."""
        out: torch.Tensor = self.fc(self.drop(pooled))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.pool_features(x))


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


def is_stem(entry: Mapping[str, Any]) -> bool:
    """Whether the ``feature_info`` entry ``entry`` is the model's stem (stage 0, or a module
    named as stems are: :data:`STEM_MODULE`), not a stage of blocks."""
    if entry.get("stage") == 0:
        return True
    return bool(STEM_MODULE.match(str(entry["module"]).split(".")[-1]))


def resolve_out_indices(model: nn.Module, out_indices: Sequence[int] | None = None) -> tuple[int, ...]:
    """``out_indices`` as increasing non-negative indices into ``model.feature_info`` (negative
    ones count from the end; None: every stage after the stem, :func:`is_stem`); a
    ``ValueError`` naming the field otherwise."""
    from timm.models._features import FeatureInfo

    info = getattr(model, "feature_info", None)
    name = type(model).__name__
    if not isinstance(info, (list, tuple, FeatureInfo)) or len(info) == 0:
        raise ValueError(f"{name} has no feature_info: timm cannot describe its stages")
    n_info = len(info)
    if out_indices is None:
        indices = tuple(i for i in range(n_info) if not (i == 0 and is_stem(info[i])))
    else:
        indices = tuple(int(i) for i in out_indices)
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
    (indices into ``model.feature_info``; None: every stage after the stem). Returns the
    segments (each an ``nn.Sequential`` of the model's own modules) and the stages' info.

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


def block_family_segments(
    model: nn.Module, indices: tuple[int, ...]
) -> tuple[list[nn.Module], list[StageInfo]]:
    """:func:`stage_segments` of an EfficientNet or MobileNetV3; when the last exit is the last
    block stage, its segment also runs the rest of ``forward_features``
    (:data:`BLOCK_FAMILY_TAILS`) and its channels are the model's ``num_features``."""
    segments, stages = stage_segments(model, indices)
    tail = BLOCK_FAMILY_TAILS[type(model).__name__]
    if indices[-1] == len(model.feature_info) - 1 and tail:  # type: ignore[arg-type]
        last = segments[-1]
        assert isinstance(last, nn.Sequential)
        for name in tail:
            last.add_module(name, getattr(model, name))
        end = stages[-1]
        stages[-1] = StageInfo(end.module, int(model.num_features), end.reduction)  # type: ignore[arg-type]
    return segments, stages


def family(model: nn.Module) -> str:
    """How ``model`` is cut: ``transformer``, ``blocks`` (EfficientNet, MobileNetV3) or
    ``sequence`` (timm's module-sequence extractor)."""
    from timm.models.vision_transformer import VisionTransformer

    if isinstance(model, VisionTransformer):
        return "transformer"
    return "blocks" if type(model).__name__ in BLOCK_FAMILY_TAILS else "sequence"


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
    token_pool: str = "auto",
) -> tuple[MultiExitNet, list[StageInfo]]:
    """A ``MultiExitNet`` from the timm model ``name``: one segment per feature stage in
    ``out_indices`` (None: every stage of ``model.feature_info`` after the stem; transformer
    blocks for vision transformers), each followed by an exit head of ``num_classes``.

    ``model_kwargs`` go to ``timm.create_model`` (e.g. ``channels``, ``stem_width``, ``dims``,
    ``img_size``). ``final_head="model"``: the last exit is the model's own classifier (its
    pretrained head), which requires the last stage to be the end of the model's
    ``forward_features``; this is checked by comparing with ``model(x)`` on a random input of
    ``check_input_size`` ``(C, H, W)`` (default: the model's input size). ``token_pool``:
    the pooling of transformer exits (:func:`~ttamer.workloads.vision.timm_vit_exits.vit_exits`)."""
    import timm

    if final_head not in ("linear", "model"):
        raise ValueError(f"final_head: must be linear or model, got {final_head!r}")
    model = timm.create_model(
        name, pretrained=pretrained, num_classes=num_classes, in_chans=in_chans, **dict(model_kwargs or {})
    )
    indices = resolve_out_indices(model, out_indices)
    kind = family(model)
    if kind == "transformer":
        from ttamer.workloads.vision.timm_vit_exits import vit_exits

        segments, heads, stages = vit_exits(model, indices, num_classes, head_dropout, token_pool)
    else:
        if kind == "blocks":
            segments, stages = block_family_segments(model, indices)
        else:
            reference = _reference_keys(name, in_chans, indices, model_kwargs)
            segments, stages = stage_segments(model, indices, reference)
        fmt = str(getattr(model, "output_fmt", "NCHW"))
        fmt = fmt if fmt in ("NCHW", "NHWC") else "NCHW"
        heads = [PooledLinearHead(s.num_chs, num_classes, fmt, head_dropout) for s in stages]
    if final_head == "model":
        heads[-1] = ModelHead(model)
    net = MultiExitNet(segments, heads)
    if kind != "sequence":
        _check_forward_features(net, model, indices, in_chans, check_input_size)
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


def check_input(model: nn.Module, in_chans: int, size: Sequence[int] | None) -> torch.Tensor:
    """A seeded random input (1, C, H, W) for the checks: of ``size`` (C, H, W), else of the
    model's image size (a transformer's ``patch_embed.img_size``, else its pretrained config's)."""
    if size is None:
        embed = getattr(model, "patch_embed", None)
        if embed is not None and getattr(embed, "img_size", None) is not None:
            size = (in_chans, *tuple(embed.img_size))
        else:
            cfg = getattr(model, "pretrained_cfg", {}) or {}
            size = (in_chans, *tuple(cfg.get("input_size", (in_chans, 224, 224)))[1:])
    return torch.randn(1, *size, generator=torch.Generator().manual_seed(0))


@torch.no_grad()
def _check_forward_features(
    net: MultiExitNet, model: nn.Module, indices: tuple[int, ...], in_chans: int, size: Sequence[int] | None
) -> None:
    """When the last exit is the model's last stage, the segments must compose to the model's
    ``forward_features`` (a ``ValueError`` otherwise: the cut missed a step)."""
    if indices[-1] != len(model.feature_info) - 1:  # type: ignore[arg-type]
        return
    was_training = model.training
    model.eval()
    x = check_input(model, in_chans, size)
    h = x
    for segment in net.segments:
        h = segment(h)
    want = model.forward_features(x)  # type: ignore[operator]
    model.train(was_training)
    if h.shape != want.shape or not torch.allclose(h, want, rtol=1e-4, atol=1e-4):
        raise ValueError(f"{type(model).__name__}: its exit segments do not compose to forward_features")


@torch.no_grad()
def _check_model_head(
    net: MultiExitNet, model: nn.Module, name: str, in_chans: int, size: Sequence[int] | None
) -> None:
    was_training = model.training
    model.eval()
    x = check_input(model, in_chans, size)
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
