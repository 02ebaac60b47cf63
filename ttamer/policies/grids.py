"""Knob grids and the parameter dataclasses that describe them.

``LambdaGrid`` (recall, no_recall): trade-off weights ``lam`` whose odds ``lam / (1 - lam)``
are log-spaced, so both the cheap end (small odds: cost dominates) and the accurate end (large
odds: loss dominates) are covered. ``QuantileGrid`` (max_softmax, entropy,
threshold_with_recall): thresholds at percentiles of a score on the fit split, over all
stages pooled, plus fixed end points that pin the first and the last stage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ttamer.errors import FieldError

FloatArray = NDArray[np.float64]

DEFAULT_PERCENTILES: tuple[float, ...] = tuple(float(p) for p in range(1, 100))


def lambda_grid(n_lams: int, min_odds: float, max_odds: float) -> FloatArray:
    """(n_lams,) increasing weights ``lam = r / (1 + r)``, ``r`` log-spaced in [min_odds, max_odds]."""
    odds = np.logspace(np.log10(min_odds), np.log10(max_odds), n_lams)
    return np.asarray(odds / (1.0 + odds))


@dataclass(frozen=True)
class LambdaGrid:
    """A grid of trade-off weights (unitless, in [0, 1]).

    ``n_lams`` weights with odds ``lam/(1-lam)`` log-spaced from ``min_odds`` to ``max_odds``;
    ``lams``, when given, replaces that grid."""

    n_lams: int = 64
    min_odds: float = 1e-2
    max_odds: float = 1e4
    lams: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.lams is not None:
            lam = np.asarray(self.lams, dtype=np.float64)
            if lam.ndim != 1 or lam.size == 0 or not np.all((lam >= 0) & (lam <= 1)):
                raise FieldError("lams", f"must be a non-empty list of weights in [0, 1], got {self.lams}")
            return
        if self.n_lams < 1:
            raise FieldError("n_lams", f"must be at least 1, got {self.n_lams}")
        if not 0 < self.min_odds <= self.max_odds < np.inf:
            bounds = f"{self.min_odds}, {self.max_odds}"
            raise FieldError("min_odds", f"need 0 < min_odds <= max_odds < inf, got {bounds}")

    def lambdas(self) -> FloatArray:
        """(L,) the weights, sorted increasing."""
        if self.lams is not None:
            return np.sort(np.asarray(self.lams, dtype=np.float64))
        return lambda_grid(self.n_lams, self.min_odds, self.max_odds)


@dataclass(frozen=True)
class QuantileGrid:
    """Thresholds at ``percentiles`` (0..100) of a fit-split score pooled over stages, plus
    the policy's end points; ``thresholds``, when given, replaces that grid."""

    percentiles: tuple[float, ...] = DEFAULT_PERCENTILES
    thresholds: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        p = np.asarray(self.percentiles, dtype=np.float64)
        if p.ndim != 1 or not np.all((p >= 0) & (p <= 100)):
            raise FieldError("percentiles", f"must lie in [0, 100], got {self.percentiles}")
        if self.thresholds is not None and np.isnan(np.asarray(self.thresholds, dtype=np.float64)).any():
            raise FieldError("thresholds", "must not contain NaN")

    def grid(self, fit_score: NDArray[np.floating], ends: Sequence[float]) -> FloatArray:
        """(M,) sorted unique thresholds: ``ends`` and the percentiles of ``fit_score`` (any shape)."""
        if self.thresholds is not None:
            return np.unique(np.asarray(self.thresholds, dtype=np.float64))
        qs = np.percentile(np.asarray(fit_score, dtype=np.float64).ravel(), self.percentiles)
        return np.unique(np.concatenate([np.asarray(ends, dtype=np.float64), qs]))
