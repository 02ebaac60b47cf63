"""The optimal recall-free policy: optimal stopping (README: model).

``W_i(s) = min(lam*l_i(s), kappa_{i+1} + sum_s' T_{i+1}[s, s'] W_{i+1}(s'))``: the best any
rule that must return the last stage run (every confidence threshold rule) can do."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ttamer.model.chain import Chain, check_lambda
from ttamer.solvers.policy import StopSetPolicy

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class NoRecallSolution:
    """``value``: (L,) optimal J. ``stop[i]``: (L, K_i) bool stop sets (last stage all True)."""

    lam: FloatArray
    value: FloatArray
    stop: tuple[NDArray[np.bool_], ...]

    def policy(self, j: int = 0) -> StopSetPolicy:
        return StopSetPolicy(tuple(x[j] for x in self.stop))


def solve_no_recall(chain: Chain, lam: ArrayLike) -> NoRecallSolution:
    """Solve the recall-free optimal stopping problem for every ``lam``."""
    lams = check_lambda(lam)
    w = lams[:, None] * chain.losses[-1][None, :]
    stops: list[NDArray[np.bool_]] = [np.ones_like(w, dtype=bool)]
    for i in range(chain.n_stages - 2, -1, -1):
        cont = w @ chain.transitions[i].T + ((1.0 - lams) * chain.costs[i + 1])[:, None]
        now = lams[:, None] * chain.losses[i][None, :]
        stops.append(now <= cont)
        w = np.minimum(now, cont)
    stops.reverse()
    value = (1.0 - lams) * chain.costs[0] + w @ chain.initial
    return NoRecallSolution(lams, value, tuple(stops))
