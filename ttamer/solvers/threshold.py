"""One confidence threshold for all stages, as a chain policy: exit at the first stage whose
loss estimate is at most ``t`` and return that stage. Evaluated for many ``t`` at once."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ttamer.model.chain import Chain, check_lambda
from ttamer.solvers.evaluate import PolicyEvaluation, evaluate_stop_sets

FloatArray = NDArray[np.float64]


def threshold_candidates(chain: Chain) -> FloatArray:
    """Every distinct rule: ``t`` at each distinct loss value, and ``t = -1`` (never exit early)."""
    return np.concatenate([[-1.0], np.unique(np.concatenate(chain.losses))])


def evaluate_thresholds(chain: Chain, thresholds: FloatArray, lam: float) -> PolicyEvaluation:
    """Exact performance of the threshold rule for each entry of ``thresholds`` (shape (M,))."""
    t = np.asarray(thresholds, dtype=np.float64)
    sets = tuple(x[None, :] <= t[:, None] for x in chain.losses)
    return evaluate_stop_sets(chain, sets, lam)


def best_threshold(chain: Chain, lam: float) -> tuple[float, PolicyEvaluation]:
    """The threshold minimising the objective at ``lam``, and the evaluation of all candidates."""
    check_lambda(lam)
    cands = threshold_candidates(chain)
    ev = evaluate_thresholds(chain, cands, lam)
    return float(cands[int(np.argmin(ev.objective))]), ev
