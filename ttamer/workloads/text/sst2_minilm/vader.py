"""VADER as the SST-2 workload's stage 0: a lexicon model that costs a fraction of a
millisecond per sentence on a CPU. Its class probabilities come from its compound score c in
[-1, 1]:

* ``logistic`` (the default calibration): P(positive) = sigmoid(a·c + b), a and b fitted by
  logistic regression on the same training subsample as the heads (so a neutral sentence,
  c = 0, gets the training base rate, and confidences are calibrated like the heads' softmax);
* ``linear``: P(positive) = (1 + c) / 2, so conf = max-probability = (1 + |c|) / 2 in [0.5, 1]
  (no fitting).

Its cost is its own measured latency per request (median of repeated timings, batch sizes as
for the network: a batch of b sentences is scored one after another)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ttamer.errors import FieldError
from ttamer.traces.trace import Trace
from ttamer.workloads.latency import LatencyConfig
from ttamer.workloads.text.sst2_minilm.config import VADER_CALIBRATIONS


def _analyzer() -> Any:
    from vader import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def vader_compound(texts: Sequence[str], analyzer: Any = None) -> NDArray[np.float64]:
    """VADER's compound score in [-1, 1] of every text."""
    analyzer = analyzer if analyzer is not None else _analyzer()
    return np.asarray([analyzer.polarity_scores(t)["compound"] for t in texts], dtype=np.float64)


def positive_probability(
    compound: NDArray[np.float64], calibration: str, slope: float = 0.5, intercept: float = 0.5
) -> NDArray[np.float64]:
    """P(positive) from compound scores: ``linear`` (1 + c) / 2 (``slope`` and ``intercept``
    unused) or ``logistic`` sigmoid(slope·c + intercept)."""
    if calibration == "linear":
        return (1.0 + np.clip(compound, -1.0, 1.0)) / 2.0
    return 1.0 / (1.0 + np.exp(-(slope * compound + intercept)))


def vader_probabilities(
    compound: NDArray[np.float64], calibration: str, fit: tuple[NDArray[np.float64], NDArray[np.int64]] | None
) -> tuple[NDArray[np.float64], dict[str, float]]:
    """(N, 2) probabilities [negative, positive] from compound scores, and the mapping's
    parameters. ``logistic`` needs ``fit`` = (compound scores, labels) of training sentences."""
    if calibration not in VADER_CALIBRATIONS:
        choices = " | ".join(VADER_CALIBRATIONS)
        raise FieldError("workload.vader_calibration", f"unknown {calibration!r}; choose from {choices}")
    params = {"slope": 0.5, "intercept": 0.5}
    if calibration == "logistic":
        if fit is None:
            raise ValueError("logistic calibration needs training scores and labels")
        from sklearn.linear_model import LogisticRegression

        c_fit, y_fit = fit
        if len(np.unique(y_fit)) < 2:
            raise FieldError(
                "workload.train_size", "the VADER calibration needs both classes in the training subsample"
            )
        reg = LogisticRegression(C=1e4, max_iter=1000).fit(c_fit[:, None], y_fit)
        params = {"slope": float(reg.coef_[0, 0]), "intercept": float(reg.intercept_[0])}
    p = positive_probability(compound, calibration, params["slope"], params["intercept"])
    return np.stack([1.0 - p, p], axis=1), params


def vader_latency(texts: Sequence[str], cfg: LatencyConfig) -> pd.DataFrame:
    """VADER's latency table (stage 1): for each batch size b, the median milliseconds to score
    b sentences one after another (sentences taken in turn from ``texts``), as
    ``measure_stage_latency`` reports a stage. VADER has no separate exit head: the head columns
    are NaN (its trace records head cost 0 and a backbone group of its own)."""
    analyzer = _analyzer()
    rows = []
    for b in cfg.batch_sizes:
        batch = [texts[i % len(texts)] for i in range(b)]
        for _ in range(cfg.warmup):
            for t in batch:
                analyzer.polarity_scores(t)
        times = []
        for _ in range(cfg.repeats):
            t0 = time.perf_counter()
            for t in batch:
                analyzer.polarity_scores(t)
            times.append((time.perf_counter() - t0) * 1e3)
        q = np.percentile(times, [10, 90])
        rows.append(
            {"stage": 1, "batch_size": b, "median_ms": statistics.median(times),
             "p10_ms": q[0], "p90_ms": q[1], "repeats": cfg.repeats,
             "head_median_ms": np.nan, "head_p10_ms": np.nan, "head_p90_ms": np.nan}
        )  # fmt: skip
    return pd.DataFrame(rows)


def vader_stage(trace: Trace) -> Callable[[list[str]], NDArray[np.float64]]:
    """VADER with the calibration recorded in ``trace.meta`` (served as an extra stage 0): raw
    texts -> (B, 2) probabilities [negative, positive], as in the trace."""
    analyzer = _analyzer()
    how = trace.meta.get("vader_calibration", "logistic")
    a, b = float(trace.meta["vader_slope"]), float(trace.meta["vader_intercept"])

    def first(texts: list[str]) -> NDArray[np.float64]:
        p = positive_probability(vader_compound(texts, analyzer), how, a, b)
        return np.stack([1.0 - p, p], axis=1)

    return first
