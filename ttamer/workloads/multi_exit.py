"""A multi-exit model: a backbone split into stages, with an exit head after each.

``segments[i]`` maps the previous stage's features to stage ``i``'s features (stage 0 takes the
input); ``heads[i]`` maps stage ``i``'s features to class logits. Running stage ``i`` costs
segment ``i`` plus head ``i``; computing stops after any stage. Plain PyTorch, no Hydra.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn


class MultiExitNet(nn.Module):
    """``segments`` and ``heads``: equal-length sequences of modules."""

    def __init__(self, segments: Sequence[nn.Module], heads: Sequence[nn.Module]):
        super().__init__()
        if len(segments) != len(heads) or not segments:
            raise ValueError(f"need as many heads as segments (>= 1), got {len(segments)} and {len(heads)}")
        self.segments = nn.ModuleList(segments)
        self.heads = nn.ModuleList(heads)

    @property
    def n_stages(self) -> int:
        return len(self.segments)

    def stage(self, i: int, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run stage ``i`` on the previous features (the input for ``i = 0``): (features, logits)."""
        h = self.segments[i](features)
        return h, self.heads[i](h)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits of every exit, each (B, C)."""
        out = []
        h = x
        for i in range(self.n_stages):
            h, logits = self.stage(i, h)
            out.append(logits)
        return out


def keep_trained_state_only(net: MultiExitNet, trained: Sequence[str]) -> MultiExitNet:
    """Make ``net`` (a top-level module) save and load only its trained parts: ``state_dict()``
    keeps the entries under the module paths ``trained`` (e.g. ``heads.0.fc``), and
    ``load_state_dict`` accepts such a dict (the other entries, a frozen backbone that comes from
    its own weights, are not missing; a missing trained entry still fails a strict load)."""
    prefixes = tuple(f"{t}." for t in trained)

    def keep(module: nn.Module, state: dict[str, object], prefix: str, local_metadata: object) -> None:
        for key in [k for k in state if k.startswith(prefix) and not k[len(prefix) :].startswith(prefixes)]:
            del state[key]

    def accept(module: nn.Module, incompatible: object) -> None:
        missing: list[str] = incompatible.missing_keys  # type: ignore[attr-defined]
        missing[:] = [k for k in missing if k.startswith(prefixes)]

    net.register_state_dict_post_hook(keep)
    net.register_load_state_dict_post_hook(accept)
    return net


@dataclass(frozen=True)
class TrainConfig:
    """Joint training of all exits: the mean of the exits' cross-entropies.

    ``freeze_backbone``: train the heads only. ``max_seconds``: a wall-clock cap (checked per
    batch) on top of ``epochs``."""

    epochs: int = 5
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    freeze_backbone: bool = False
    max_seconds: float = float("inf")
    seed: int = 0


def batches(n: int, batch_size: int, rng: np.random.Generator | None = None) -> Iterator[NDArray[np.intp]]:
    """Index batches over ``range(n)``, shuffled when ``rng`` is given."""
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def train_exits(model: MultiExitNet, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig) -> list[float]:
    """Train on tensors ``x`` (N, ...) and ``y`` (N,); returns the mean loss of each epoch."""
    import time

    from tqdm import tqdm

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    params = model.heads.parameters() if cfg.freeze_backbone else model.parameters()
    if cfg.freeze_backbone:
        model.segments.requires_grad_(False)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    start, history = time.perf_counter(), []
    model.train()
    for _ in tqdm(range(cfg.epochs), desc="train", unit="epoch", leave=False):
        total, count = 0.0, 0
        for idx in batches(len(y), cfg.batch_size, rng):
            t = torch.as_tensor(idx)
            logits = model(x[t])
            loss = torch.stack([nn.functional.cross_entropy(lg, y[t]) for lg in logits]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, count = total + loss.item() * len(idx), count + len(idx)
            if time.perf_counter() - start > cfg.max_seconds:
                break
        history.append(total / max(count, 1))
        if time.perf_counter() - start > cfg.max_seconds:
            break
    model.eval()
    return history


@torch.no_grad()
def exit_probabilities(model: MultiExitNet, x: torch.Tensor, batch_size: int = 512) -> NDArray[np.float64]:
    """Softmax probabilities of every exit for every sample: (N, n, C)."""
    model.eval()
    parts = []
    for idx in batches(len(x), batch_size):
        logits = model(x[torch.as_tensor(idx)])
        parts.append(torch.stack([torch.softmax(lg.float(), dim=-1) for lg in logits], dim=1).cpu().numpy())
    return np.concatenate(parts).astype(np.float64)
