"""The interface every chain policy offers, and the simple policies besides the optima.

A policy sees, after running stage ``i`` (0-based), the state ``s_i`` of that stage and the
best (smallest) loss ``b`` among the stages run so far, in the chain's loss units. It answers
whether to stop. On stopping, a recall policy returns the best stage seen, a recall-free policy
returns stage ``i``. The last stage always stops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from ttamer.model.chain import Chain

BoolArray = NDArray[np.bool_]


@runtime_checkable
class ChainPolicy(Protocol):
    """``stop(stage, best_loss, state)`` broadcasts over arrays of best losses and states."""

    recall: bool

    def stop(self, stage: int, best_loss: NDArray[np.float64], state: NDArray[np.int64]) -> BoolArray: ...


@dataclass(frozen=True)
class StopSetPolicy:
    """Stop at stage ``i`` iff ``stop_sets[i][s_i]``; ignores the best loss (recall-free rules)."""

    stop_sets: tuple[BoolArray, ...]
    recall: bool = False

    def stop(self, stage: int, best_loss: NDArray[np.float64], state: NDArray[np.int64]) -> BoolArray:
        if stage == len(self.stop_sets) - 1:
            return np.ones(np.broadcast(best_loss, state).shape, dtype=bool)
        out = self.stop_sets[stage][state]
        return np.broadcast_to(out, np.broadcast(best_loss, state).shape)


def threshold_stop_sets(chain: Chain, threshold: float) -> tuple[BoolArray, ...]:
    """Stop sets of the rule "exit at the first stage whose loss estimate is <= threshold".

    With losses that estimate the error probability in a confidence bin, this is the usual
    max-softmax threshold rule (confidence >= 1 - threshold)."""
    return tuple(np.asarray(x <= threshold) for x in chain.losses)


def threshold_policy(chain: Chain, threshold: float, recall: bool = False) -> StopSetPolicy:
    return StopSetPolicy(threshold_stop_sets(chain, threshold), recall=recall)


def static_policy(chain: Chain, stage: int) -> StopSetPolicy:
    """Always run stages ``0..stage`` and return the last one."""
    sets = tuple(np.full(k, i >= stage) for i, k in enumerate(chain.n_states))
    return StopSetPolicy(sets)
