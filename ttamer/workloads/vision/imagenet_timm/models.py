"""The ``imagenet_timm`` workload's timm models (README: workloads): names checked against timm's
registry before anything runs, whole pretrained classifiers (cascade), and a pretrained backbone
cut into exits (:mod:`ttamer.workloads.vision.timm_exits`). Errors name the config field
(``models``, ``model``, ``final_head``, ``pretrained``)."""

from __future__ import annotations

import torch
from torch import nn

from ttamer.errors import FieldError
from ttamer.workloads.multi_exit import MultiExitNet, keep_trained_state_only
from ttamer.workloads.vision.imagenet_timm.config import ImageNetTimmConfig
from ttamer.workloads.vision.timm_exits import StageInfo, timm_multi_exit


def check_model_name(name: str, field_name: str) -> None:
    """A clear error for a name timm does not know."""
    import timm

    if not timm.is_model(name):
        raise FieldError(field_name, f"{name!r} is not a timm model (see timm.list_models())")
    from timm.models import get_pretrained_cfg

    try:
        get_pretrained_cfg(name)
    except RuntimeError as exc:  # an unknown pretrained tag
        raise FieldError(field_name, f"{name!r}: {exc} (see timm.list_pretrained())") from None


def weights_message(name: str, exc: BaseException) -> str:
    """What to do when the pretrained weights of ``name`` cannot be loaded."""
    return (
        f"could not load the pretrained weights of {name!r} ({type(exc).__name__}: {exc}); they download "
        "from the Hugging Face Hub on first use: connect to the internet once, or point HF_HOME at a "
        "cache holding them (pretrained=false gives random weights, for testing only)"
    )


class Classifier(nn.Module):
    """A whole model as one module: a cascade stage's inference pass and its one-stage
    ``MultiExitNet`` segment for latency measurement."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.model(x)
        return out


def create_classifier(name: str, pretrained: bool) -> nn.Module:
    """The timm classifier ``name`` (a cascade stage), pretrained or with random weights."""
    import timm

    check_model_name(name, "models")
    try:
        model: nn.Module = timm.create_model(name, pretrained=pretrained)
    except OSError as exc:
        raise FieldError("pretrained", weights_message(name, exc)) from None
    except RuntimeError as exc:  # e.g. an unknown pretrained tag
        raise FieldError("models", f"cannot create timm model {name!r}: {exc}") from None
    return model


def trained_heads(n_stages: int, final_head: str) -> list[int]:
    """The exits whose heads are trained: all, or all but the model's own classifier."""
    return list(range(n_stages - 1)) if final_head == "model" else list(range(n_stages))


def exits_network(
    cfg: ImageNetTimmConfig, num_classes: int, seed: int
) -> tuple[MultiExitNet, list[StageInfo]]:
    """``cfg.model`` cut at its feature stages ``cfg.out_indices``, an exit head of
    ``num_classes`` after each (the last one the model's own classifier when ``final_head`` is
    model), and the stages' info. Random weights (backbone with ``pretrained: false``, and the
    heads) are drawn from ``seed``, so the same config and seed give the same network. Its
    ``state_dict`` holds only the trained heads' linear layers
    (:func:`~ttamer.workloads.multi_exit.keep_trained_state_only`): the backbone comes from its
    own weights."""
    check_model_name(cfg.model, "model")
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net, stages = timm_multi_exit(
                cfg.model,
                num_classes,
                out_indices=cfg.out_indices,
                pretrained=cfg.pretrained,
                head_dropout=cfg.train.head_dropout,
                final_head="model" if cfg.final_head == "model" else "linear",
                token_pool=cfg.token_pool,
            )
    except OSError as exc:
        raise FieldError("pretrained", weights_message(cfg.model, exc)) from None
    except (ValueError, RuntimeError) as exc:
        named = str(exc).split(":")[0]
        field_name = named if named in ("final_head", "token_pool", "out_indices") else "model"
        raise FieldError(field_name, f"cannot split {cfg.model!r} into exits: {exc}") from None
    trained = [f"heads.{i}.fc" for i in trained_heads(net.n_stages, cfg.final_head)]
    return keep_trained_state_only(net, trained), stages
