"""Traces: cached per-sample outputs of every stage of a cascade (README: traces).

A trace is everything the policies need, so that they are scored offline by replaying cached
outputs, as the early-exit literature does. Arrays (``N`` samples, ``n`` stages, ``C`` classes):

=============== ============ ========================================================
``labels``      (N,) int     ground truth class
``pred``        (N, n) int   each stage's predicted class
``conf``        (N, n) float each stage's confidence in [0, 1] (max-softmax or the API's)
``probs``       (N, n, C)    optional full class probabilities (enables entropy, margin)
``cost``        (n,) float   incremental cost of running stage i after stage i-1 (>= 0)
``stage_names`` (n,) str     names
``cost_unit``   () str       "ms", "GFLOP", "USD per 10k calls", ...
=============== ============ ========================================================

Files are ``.npz`` without pickle; ``meta`` (free-form strings: hardware, versions, source)
is stored as one JSON string.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ttamer.errors import FieldError, real_array
from ttamer.fileio import atomic_write_bytes, open_npz
from ttamer.loading import NpzFile, scalar

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

PROBS_SUM_TOLERANCE = 1e-3


class TraceError(FieldError):
    """Invalid trace; ``field`` names the array."""


@dataclass(frozen=True)
class Trace:
    """A validated trace; build it with :meth:`Trace.build`."""

    labels: IntArray
    pred: IntArray
    conf: FloatArray
    cost: FloatArray
    stage_names: tuple[str, ...]
    cost_unit: str
    probs: FloatArray | None = None
    meta: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        labels: Any,
        pred: Any,
        conf: Any,
        cost: Any,
        stage_names: Any = None,
        cost_unit: str = "",
        probs: Any = None,
        meta: dict[str, str] | None = None,
    ) -> Trace:
        """Validate and freeze; every error names the array."""
        lab = _int_array(labels, "labels", 1)
        n_samples = lab.size
        if n_samples == 0:
            raise TraceError("labels", "the trace has no samples")
        prd = _int_array(pred, "pred", 2)
        if prd.shape[0] != n_samples:
            raise TraceError("pred", f"has {prd.shape[0]} rows but labels has {n_samples}")
        n = prd.shape[1]
        if n == 0:
            raise TraceError("pred", "has no stages (0 columns)")
        cnf = _float_array(conf, "conf", (n_samples, n))
        if ((cnf < 0) | (cnf > 1)).any():
            bad = np.argwhere((cnf < 0) | (cnf > 1))[0]
            raise TraceError("conf", f"entry [{bad[0]}][{bad[1]}] = {cnf[tuple(bad)]} is outside [0, 1]")
        cst = _float_array(cost, "cost", (n,))
        if (cst < 0).any():
            raise TraceError("cost", f"stage {int(np.argmax(cst < 0)) + 1} has a negative cost")
        names = _names(stage_names, n)
        prb = None if probs is None else _check_probs(probs, n_samples, n)
        n_classes = prb.shape[2] if prb is not None else None
        _check_classes(lab, "labels", n_classes)
        _check_classes(prd, "pred", n_classes)
        frozen = [_frozen_copy(a) for a in (lab, prd, cnf, cst)]
        prb = None if prb is None else _frozen_copy(prb)
        return cls(frozen[0], frozen[1], frozen[2], frozen[3], names, str(cost_unit), prb, dict(meta or {}))

    @property
    def n_samples(self) -> int:
        return int(self.labels.size)

    @property
    def n_stages(self) -> int:
        return int(self.pred.shape[1])

    @property
    def correct(self) -> NDArray[np.bool_]:
        """(N, n): whether each stage's prediction is right."""
        return self.pred == self.labels[:, None]

    @property
    def cumulative_cost(self) -> FloatArray:
        """(n,): the cost of running stages 1..i."""
        return np.cumsum(self.cost)

    def subset(self, idx: NDArray[np.intp]) -> Trace:
        """The samples ``idx`` (no re-validation needed)."""
        probs = None if self.probs is None else self.probs[idx]
        return replace(self, labels=self.labels[idx], pred=self.pred[idx], conf=self.conf[idx], probs=probs)


def _frozen_copy(arr: NDArray[Any]) -> NDArray[Any]:
    """A read-only copy, so that freezing never touches the caller's array."""
    out = np.array(arr, copy=True)
    out.setflags(write=False)
    return out


def _int_array(value: Any, name: str, ndim: int) -> IntArray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf" and (arr.size or arr.dtype.kind not in "OUS"):
        raise TraceError(name, f"must hold integer class ids, got {arr.dtype} values")
    if arr.ndim != ndim:
        raise TraceError(name, f"must have {ndim} dimension(s), got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)) or (arr % 1).any() or (np.abs(arr) > 2.0**53).any():  # finite first
            raise TraceError(name, f"must hold integer class ids, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _float_array(value: Any, name: str, shape: tuple[int, ...]) -> FloatArray:
    arr = real_array(value, name, TraceError)
    if arr.shape != shape:
        raise TraceError(name, f"has shape {arr.shape}, expected {shape}")
    if not np.isfinite(arr).all():
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise TraceError(name, f"entry {list(bad)} is not finite ({arr[bad]})")
    return arr


def _names(stage_names: Any, n: int) -> tuple[str, ...]:
    if stage_names is None:
        return tuple(f"stage{i + 1}" for i in range(n))
    names = tuple(str(x) for x in np.asarray(stage_names).reshape(-1))
    if len(names) != n:
        raise TraceError("stage_names", f"has {len(names)} names for {n} stages")
    return names


def _check_probs(probs: Any, n_samples: int, n: int) -> FloatArray:
    arr = real_array(probs, "probs", TraceError)
    if arr.ndim != 3 or arr.shape[:2] != (n_samples, n):
        raise TraceError("probs", f"has shape {arr.shape}, expected ({n_samples}, {n}, n_classes)")
    if not np.isfinite(arr).all() or (arr < 0).any() or (arr > 1).any():
        raise TraceError("probs", "entries must be finite probabilities in [0, 1]")
    sums = arr.sum(axis=2)
    if (np.abs(sums - 1.0) > PROBS_SUM_TOLERANCE).any():
        bad = np.argwhere(np.abs(sums - 1.0) > PROBS_SUM_TOLERANCE)[0]
        raise TraceError("probs", f"sample {bad[0]} stage {bad[1] + 1} sums to {sums[tuple(bad)]:.6g}, not 1")
    return arr


def _check_classes(arr: IntArray, name: str, n_classes: int | None) -> None:
    if (arr < 0).any():
        raise TraceError(name, f"class ids must be >= 0, found {int(arr.min())}")
    if n_classes is not None and (arr >= n_classes).any():
        raise TraceError(name, f"class id {int(arr.max())} out of range for {n_classes} classes (probs)")


# ---------------------------------------------------------------------------------- scores

SCORES = ("max_softmax", "entropy", "margin")


def stage_scores(trace: Trace, score: str) -> FloatArray:
    """Per-sample, per-stage score, shape (N, n), oriented so that higher means more confident.

    ``max_softmax``: ``conf``. ``entropy``: minus the entropy of ``probs`` (nats). ``margin``:
    top-1 minus top-2 probability. Without ``probs``, entropy and margin are computed for two
    classes from ``conf`` (the binary case) and refused otherwise."""
    if score == "max_softmax":
        return trace.conf
    if score not in SCORES:
        raise FieldError("score", f"unknown score {score!r}; choose from {SCORES}")
    if trace.probs is None:
        if int(max(trace.labels.max(), trace.pred.max())) > 1:
            raise TraceError("probs", f"score {score!r} needs class probabilities for more than two classes")
        p = np.clip(trace.conf, 1e-12, 1.0)
        q = np.clip(1.0 - trace.conf, 1e-12, 1.0)
        probs = np.stack([p, q], axis=2)
    else:
        probs = trace.probs
    return scores_from_probs(probs, score)


def scores_from_probs(probs: FloatArray, score: str) -> FloatArray:
    """``entropy`` (minus the entropy, nats) or ``margin`` (top-1 minus top-2) of class
    probabilities along the last axis: (..., C) -> (...)."""
    if score == "entropy":
        return np.asarray((probs * np.log(np.clip(probs, 1e-300, 1.0))).sum(axis=-1))
    if score != "margin":
        raise FieldError("score", f"scores_from_probs computes entropy or margin, not {score!r}")
    top2 = np.sort(probs, axis=-1)[..., -2:]
    return np.asarray(top2[..., 1] - top2[..., 0])


# ---------------------------------------------------------------------------------- files


def save_trace(trace: Trace, path: str | os.PathLike[str]) -> None:
    """Write ``trace`` atomically as ``.npz`` (no pickle)."""
    arrays: dict[str, Any] = {
        "labels": trace.labels,
        "pred": trace.pred,
        "conf": trace.conf,
        "cost": trace.cost,
        "stage_names": np.array(trace.stage_names, dtype=str),
        "cost_unit": np.array(trace.cost_unit, dtype=str),
        "meta_json": np.array(json.dumps(trace.meta, sort_keys=True), dtype=str),
    }
    if trace.probs is not None:
        arrays["probs"] = trace.probs
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def load_trace(path: str | os.PathLike[str]) -> Trace:
    """Read and validate a trace ``.npz``."""
    with open_npz(path, TraceError) as npz:
        keys = set(npz.files)
        for key in ("labels", "pred", "conf", "cost"):
            if key not in keys:
                raise TraceError(key, "is missing")
        _check_npz_shapes(npz)
        return Trace.build(
            npz["labels"],
            npz["pred"],
            npz["conf"],
            npz["cost"],
            _stage_names(npz) if "stage_names" in keys else None,
            scalar(npz, "cost_unit", "text") if "cost_unit" in keys else "",
            npz["probs"] if "probs" in keys else None,
            _meta(npz) if "meta_json" in keys else {},
        )


def _check_npz_shapes(npz: NpzFile) -> None:
    """The arrays' shapes from their headers, before any data is read (a huge array of the
    wrong shape is refused without being loaded)."""
    pred = npz.shape("pred")
    if len(pred) != 2:
        raise TraceError("pred", f"must be (samples, stages), got shape {pred}")
    want = {"labels": pred[:1], "conf": pred, "cost": pred[1:]}
    for key, shape in want.items():
        if npz.shape(key) != shape:
            raise TraceError(key, f"has shape {npz.shape(key)}, expected {shape} from pred")
    if "probs" in npz and npz.shape("probs")[:2] != pred:
        raise TraceError("probs", f"has shape {npz.shape('probs')}, expected {pred} + (classes,)")


def _stage_names(npz: NpzFile) -> list[str]:
    if len(npz.shape("stage_names")) != 1 or npz.dtype("stage_names").kind not in "US":
        raise TraceError("stage_names", "must be a 1-D array of strings")
    return [str(x) for x in npz["stage_names"].tolist()]


def _meta(npz: NpzFile) -> dict[str, str]:
    """``meta_json``: a JSON object (keys and values kept as strings)."""
    text = scalar(npz, "meta_json", "text")
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError):
        raise TraceError("meta_json", "is not valid JSON") from None
    if not isinstance(meta, dict):
        raise TraceError("meta_json", f"must be a JSON object, got {type(meta).__name__}")
    return {str(k): str(v) for k, v in meta.items()}


# ---------------------------------------------------------------------------------- splits


def split_indices(
    n_samples: int, fit_fraction: float, seed: int
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """A random disjoint (fit, test) split of ``range(n_samples)``, reproducible by ``seed``."""
    if not 0.0 < fit_fraction < 1.0:
        raise FieldError("fit_fraction", f"must lie strictly between 0 and 1, got {fit_fraction}")
    perm = np.random.default_rng(seed).permutation(n_samples)
    n_fit = round(fit_fraction * n_samples)
    if n_fit == 0 or n_fit == n_samples:
        raise FieldError("fit_fraction", f"leaves an empty split of {n_samples} samples")
    return np.sort(perm[:n_fit]), np.sort(perm[n_fit:])


def repeated_splits(
    n_samples: int, n_splits: int, fit_fraction: float, seed: int
) -> list[tuple[NDArray[np.intp], NDArray[np.intp]]]:
    """``n_splits`` independent random splits; split ``r`` uses the seed ``(seed, r)``."""
    seeds = np.random.SeedSequence(seed).spawn(n_splits)
    return [split_indices(n_samples, fit_fraction, int(s.generate_state(1)[0])) for s in seeds]
