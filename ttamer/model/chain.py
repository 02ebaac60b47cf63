"""The chain model of a served cascade (README: model) and its instance files.

A chain has stages ``0 .. n-1`` (the model numbers them 1..n; files and messages use those
1-based numbers). Stage ``i`` has ``K_i`` observable states and a loss table
``losses[i]`` of shape ``(K_i,)``. The state of stage 0 is drawn from ``initial`` (shape
``(K_0,)``); the state of stage ``i+1`` is drawn from row ``s_i`` of ``transitions[i]``
(shape ``(K_i, K_{i+1})``). Running stage ``i`` costs ``costs[i]`` (in the chain's cost unit);
stage 0 is always run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ttamer.errors import FieldError, real_array
from ttamer.fileio import atomic_write_bytes, open_npz
from ttamer.loading import NpzFile, existing_file, load_json, refuse_booleans, scalar

FloatArray = NDArray[np.float64]

ROW_SUM_TOLERANCE = 1e-9


class ChainError(FieldError):
    """Invalid chain input. ``field`` names the offending field as it appears in a file."""


def _as_float_array(value: Any, field: str, ndim: int) -> FloatArray:
    arr = real_array(value, field, ChainError)
    if arr.ndim != ndim:
        shape = "a vector" if ndim == 1 else "a matrix (list of rows)"
        raise ChainError(field, f"must be {shape}, got an array of shape {arr.shape}")
    return arr


def _frozen_copy(arr: FloatArray) -> FloatArray:
    """A read-only copy, so that freezing never touches the caller's array."""
    out = np.array(arr, dtype=np.float64, copy=True)
    out.setflags(write=False)
    return out


def _check_finite_nonnegative(arr: FloatArray, field: str) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ChainError(field, f"entry {_fmt_index(where)} is not finite ({float(arr[where])})")
    neg = arr < 0
    if neg.any():
        where = tuple(int(i) for i in np.argwhere(neg)[0])
        raise ChainError(field, f"entry {_fmt_index(where)} is negative ({float(arr[where])})")


def _fmt_index(where: tuple[int, ...]) -> str:
    return "[" + "][".join(str(i) for i in where) + "]"


def _check_distribution(arr: FloatArray, field: str) -> None:
    """Rows of ``arr`` (or ``arr`` itself if 1-D) must be probability vectors."""
    _check_finite_nonnegative(arr, field)
    rows = arr.reshape(-1, arr.shape[-1])
    sums = rows.sum(axis=1)
    off = np.abs(sums - 1.0) > ROW_SUM_TOLERANCE
    if off.any():
        r = int(np.argmax(off))
        what = f"row {r}" if arr.ndim == 2 else "the vector"
        raise ChainError(field, f"{what} sums to {float(sums[r])!r}, not 1 (tolerance {ROW_SUM_TOLERANCE:g})")


@dataclass(frozen=True)
class Chain:
    """A validated chain. Build it with :meth:`Chain.build` (which validates)."""

    losses: tuple[FloatArray, ...]
    initial: FloatArray
    transitions: tuple[FloatArray, ...]
    costs: FloatArray
    name: str = ""

    @classmethod
    def build(
        cls,
        losses: Sequence[ArrayLike],
        initial: ArrayLike,
        transitions: Sequence[ArrayLike],
        costs: ArrayLike,
        name: str = "",
    ) -> Chain:
        """Validate and freeze a chain; every error names its field (1-based stages)."""
        if losses is None or len(losses) == 0:
            raise ChainError("losses", "the chain is empty: at least one stage is needed")
        n = len(losses)
        loss_arrays = []
        for i, raw in enumerate(losses):
            field = f"losses[{i + 1}]"
            arr = _as_float_array(raw, field, 1)
            if arr.size == 0:
                raise ChainError(field, "stage has no states")
            _check_finite_nonnegative(arr, field)
            loss_arrays.append(arr)
        init = _as_float_array(initial, "initial", 1)
        if init.shape != loss_arrays[0].shape:
            raise ChainError(
                "initial",
                f"has {init.size} entries but stage 1 has {loss_arrays[0].size} states",
            )
        _check_distribution(init, "initial")
        if len(transitions) != n - 1:
            raise ChainError(
                "transitions",
                f"expected {n - 1} matrices (T_2..T_{n}) for {n} stages, got {len(transitions)}",
            )
        mats = []
        for i, raw in enumerate(transitions):
            field = f"transitions[{i + 2}]"
            arr = _as_float_array(raw, field, 2)
            want = (loss_arrays[i].size, loss_arrays[i + 1].size)
            if arr.shape != want:
                raise ChainError(
                    field,
                    f"has shape {arr.shape}, expected {want} "
                    f"(states of stage {i + 1} x states of stage {i + 2})",
                )
            _check_distribution(arr, field)
            mats.append(arr)
        cost = _as_float_array(costs, "costs", 1)
        if cost.size != n:
            raise ChainError("costs", f"has {cost.size} entries for {n} stages")
        _check_finite_nonnegative(cost, "costs")
        frozen = [_frozen_copy(a) for a in (*loss_arrays, init, *mats, cost)]
        return cls(tuple(frozen[:n]), frozen[n], tuple(frozen[n + 1 : 2 * n]), frozen[-1], str(name))

    @property
    def n_stages(self) -> int:
        return len(self.losses)

    @property
    def n_states(self) -> tuple[int, ...]:
        return tuple(int(x.size) for x in self.losses)

    def support(self) -> FloatArray:
        """Sorted distinct loss values of all stages, with 0 prepended: shape (G,)."""
        return np.unique(np.concatenate([np.zeros(1), *self.losses]))

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "losses": [x.tolist() for x in self.losses],
            "initial": self.initial.tolist(),
            "transitions": [t.tolist() for t in self.transitions],
            "costs": self.costs.tolist(),
            "name": self.name,
        }


def check_lambda(lam: ArrayLike, field: str = "lam") -> FloatArray:
    """Trade-off weights as a 1-D float array, each in [0, 1]."""
    try:
        arr = np.atleast_1d(np.asarray(lam, dtype=np.float64))
    except (TypeError, ValueError):
        raise ChainError(field, f"must be a number in [0, 1], got {lam!r}") from None
    if arr.ndim != 1 or arr.size == 0:
        raise ChainError(field, "must be a number or a non-empty vector of numbers")
    bad = ~np.isfinite(arr) | (arr < 0) | (arr > 1)
    if bad.any():
        raise ChainError(field, f"must lie in [0, 1], got {float(arr[bad][0])!r}")
    return arr


# ---------------------------------------------------------------------------------- files


def chain_from_json_dict(data: Any) -> Chain:
    if not isinstance(data, dict):
        raise ChainError("file", "a chain file holds one JSON object")
    for key in ("losses", "initial", "costs"):
        if key not in data:
            raise ChainError(key, "is missing")
    losses = data["losses"]
    if not isinstance(losses, list):
        raise ChainError("losses", "must be a list of per-stage loss lists")
    transitions = data.get("transitions", [])
    if not isinstance(transitions, list):
        raise ChainError("transitions", "must be a list of matrices")
    for key, base in (("losses", 1), ("initial", 0), ("transitions", 2), ("costs", 0)):
        refuse_booleans(data.get(key), key, ChainError, base)
    if not isinstance(data.get("name", ""), str):
        raise ChainError("name", "must be a string")
    return Chain.build(losses, data["initial"], transitions, data["costs"], data.get("name", ""))


def _check_npz_shapes(npz: NpzFile, n: int) -> None:
    """The arrays' shapes, from their headers, before any data is read (a huge array with a
    wrong shape is refused without being loaded)."""
    sizes = []
    for i in range(1, n + 1):
        shape = npz.shape(f"losses_{i}")
        if len(shape) != 1:
            raise ChainError(f"losses_{i}", f"must be 1-D, got shape {shape}")
        sizes.append(shape[0])
    want: dict[str, tuple[int, ...]] = {"initial": (sizes[0],), "costs": (n,)}
    want.update({f"transitions_{i}": (sizes[i - 2], sizes[i - 1]) for i in range(2, n + 1)})
    for key, shape in want.items():
        if npz.shape(key) != shape:
            raise ChainError(key, f"has shape {npz.shape(key)}, expected {shape} from the losses")


def _read_npz(path: Path) -> Chain:
    with open_npz(path, ChainError) as npz:
        keys = set(npz.files)
        stages = sorted(int(k.split("_")[1]) for k in keys if k.startswith("losses_") and k[7:].isdigit())
        if not stages:
            raise ChainError("losses_1", "is missing (no losses_<i> arrays in the file)")
        n = len(stages)
        if stages != list(range(1, n + 1)):
            raise ChainError("losses", f"stages must be numbered 1..{n}, found {stages}")
        for key in ("initial", "costs", *(f"transitions_{i}" for i in range(2, n + 1))):
            if key not in keys:
                raise ChainError(key, "is missing")
        _check_npz_shapes(npz, n)
        name = scalar(npz, "name", "text") if "name" in keys else ""
        return Chain.build(
            [npz[f"losses_{i}"] for i in range(1, n + 1)],
            npz["initial"],
            [npz[f"transitions_{i}"] for i in range(2, n + 1)],
            npz["costs"],
            name,
        )


def load_chain(path: str | os.PathLike[str]) -> Chain:
    """Read a chain from ``.json`` (README: model) or ``.npz`` (``losses_1..n``, ``initial``,
    ``transitions_2..n``, ``costs``, optional ``name``)."""
    p = existing_file(path, ChainError)
    if p.suffix == ".npz":
        return _read_npz(p)
    return chain_from_json_dict(load_json(p, ChainError))


def save_chain(chain: Chain, path: str | os.PathLike[str]) -> None:
    """Write ``chain`` atomically as ``.json`` or ``.npz`` (chosen by the suffix)."""
    p = Path(path)
    if p.suffix == ".npz":
        import io

        arrays: dict[str, Any] = {f"losses_{i + 1}": x for i, x in enumerate(chain.losses)}
        arrays.update({f"transitions_{i + 2}": t for i, t in enumerate(chain.transitions)})
        arrays.update(initial=chain.initial, costs=chain.costs, name=np.array(chain.name))
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(p, buf.getvalue())
    else:
        atomic_write_bytes(p, (json.dumps(chain.to_json_dict()) + "\n").encode())
