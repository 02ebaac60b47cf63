"""``patience``: exit at the first stage ``i`` whose prediction equals the predictions of the
``K`` previous stages (``K + 1`` consecutive equal predictions ending at ``i``) and return it.
Knob = K (agreements). Default grid: ``K = 1 .. n``; ``K = n`` can never be met, so it is the
last stage (the ``n - 1`` of a chain that always agrees exits there too)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ttamer.errors import FieldError
from ttamer.policies.base import Decisions, ScoringContext
from ttamer.policies.registry import register_policy
from ttamer.policies.stopping import first_at_least

IntArray = NDArray[np.int64]


def agreement_runs(pred: IntArray) -> IntArray:
    """(N, n) -> (N, n): how many stages just before stage ``i`` agree with it in a row."""
    runs = np.zeros(pred.shape, dtype=np.int64)
    for i in range(1, pred.shape[1]):
        runs[:, i] = np.where(pred[:, i] == pred[:, i - 1], runs[:, i - 1] + 1, 0)
    return runs


@dataclass(frozen=True)
class PatienceParams:
    """``ks``: the patience values (agreements, >= 1) to sweep; ``None`` = 1 .. n."""

    ks: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.ks is not None and (len(self.ks) == 0 or min(self.ks) < 1):
            raise FieldError("ks", f"must be a non-empty list of integers >= 1, got {self.ks}")

    def grid(self, n_stages: int) -> NDArray[np.float64]:
        """(M,) sorted patience values as floats."""
        ks = range(1, n_stages + 1) if self.ks is None else self.ks
        return np.unique(np.asarray(ks, dtype=np.float64))


@register_policy("patience", order=70, auto_candidate=True)
@dataclass(frozen=True)
class PatiencePolicy(PatienceParams):
    """Exit once ``K`` consecutive stages agree with the current one; sweep ``K``."""

    name = "patience"
    knob_name = "K"

    def decide(self, ctx: ScoringContext) -> Decisions:
        ks = self.grid(ctx.test.n_stages)
        stop = first_at_least(agreement_runs(ctx.test.pred), ks)
        return Decisions(ks, stop, stop)
