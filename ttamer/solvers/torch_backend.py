"""A torch backend for the exact recall solver (``solve_recall``), for CPU or GPU.

Same backward induction as :func:`ttamer.solvers.recall.solve_recall`, stage by stage, for a
vector of trade-off weights ``lam`` at once: per stage one gather along ``X -> min(X, lam*l)``
and one dense matrix product ``(L*G, K_{i+1}) @ (K_{i+1}, K_i)``, on ``device`` in ``dtype``
(``torch.float64`` or ``torch.float32``). Only the loop over stages runs in Python.

Tie rule: stopping is optimal at ``X`` when ``X <= C(X) * (1 + tol) + tol`` (``C >= 0``, so a
relative plus an absolute slack), with ``tol = TIE_TOLERANCE[dtype]``:

- ``float64``: ``1e-12``, the numpy solver's tolerance, so both agree (values to rounding,
  indices exactly except at differences of about ``1e-12`` between ``X`` and ``C(X)``);
- ``float32``: ``1e-5`` (about 80 float32 epsilons), above the rounding error that ``n`` stages
  of float32 products accumulate, so exact ties still stop; a non-tie within ``1e-5`` relative
  may then stop, which changes the objective by at most that relative amount.

The index is returned in float64: the grid position is decided in ``dtype`` and the float64 grid
value ``lam * loss`` at that position is returned, so the online rule ``lam * best <= index``
still stops at its own grid value. Values are computed in ``dtype`` and returned as float64.
With float32 on a GPU, TF32 matrix products (``torch.backends.cuda.matmul.allow_tf32``) make
the error larger than the float32 figures measured by the tests; they are off by default.
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import ArrayLike

from ttamer.errors import FieldError
from ttamer.model.chain import Chain, check_lambda
from ttamer.solvers.grid import support_positions
from ttamer.solvers.recall import TIE_TOLERANCE as NUMPY_TIE_TOLERANCE
from ttamer.solvers.recall import FloatArray, RecallSolution

# (relative, absolute) slack of the tie rule ``X <= C * (1 + rel) + abs``, per dtype
TIE_TOLERANCE: dict[torch.dtype, tuple[float, float]] = {
    torch.float64: (NUMPY_TIE_TOLERANCE, NUMPY_TIE_TOLERANCE),
    torch.float32: (1e-5, 0.0),
}


def available_devices() -> list[str]:
    """Devices this process can solve on: ``"cpu"``, plus ``"cuda"`` when a GPU is usable."""
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def _check_dtype(dtype: object) -> torch.dtype:
    if not isinstance(dtype, torch.dtype) or dtype not in TIE_TOLERANCE:
        raise FieldError("dtype", f"must be torch.float64 or torch.float32, got {dtype!r}")
    return dtype


def _check_device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise FieldError("device", f"not a torch device: {device!r} ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise FieldError("device", f"{device!r} requested but CUDA is not available")
    return dev


def _gather_after_min(table: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """``out[l, g, s'] = table[l, min(g, pos[s']), s']``; ``table``: shape ``(L, G, K')``,
    ``pos``: long, shape ``(K',)`` (same device)."""
    top = table[:, pos, torch.arange(pos.numel(), device=pos.device)]  # (L, K')
    below = torch.arange(table.shape[1], device=pos.device)[:, None] <= pos[None, :]  # (G, K')
    return torch.where(below, table, top[:, None, :])


def _stopping_rows(x: torch.Tensor, cont: torch.Tensor, tol: tuple[float, float]) -> torch.Tensor:
    """Row of the largest grid value ``X`` at which stopping is optimal, per ``(lam, state)``.

    ``x``: scaled grid, shape ``(L, G, 1)``; ``cont``: continuation values, ``(L, G, K)``.
    The stopping rows are a prefix (``X - C(X)`` is non-decreasing). Returns long ``(L, K)``."""
    stops = x <= cont * (1.0 + tol[0]) + tol[1]
    return (stops.sum(dim=1) - 1).clamp_(min=0)


def _continuation(value: torch.Tensor, pos: torch.Tensor, trans_t: torch.Tensor) -> torch.Tensor:
    """``C(X, s) = sum_{s'} T[s, s'] V(min(X, lam*l(s')), s')`` (costs not added).

    ``value``: ``(L, G, K')``; ``trans_t``: the transposed transition matrix, ``(K', K)``.
    Returns ``(L, G, K)``."""
    nxt = _gather_after_min(value, pos)
    n_lam, n_grid, k_next = nxt.shape
    cont = (nxt.reshape(-1, k_next) @ trans_t).reshape(n_lam, n_grid, -1)
    del nxt
    return cont


def solve_recall_torch(
    chain: Chain,
    lam: ArrayLike,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float64,
) -> RecallSolution:
    """:func:`~ttamer.solvers.recall.solve_recall` on ``device`` in ``dtype``.

    ``lam``: scalar or vector in [0, 1], shape ``(L,)``. Returns float64 numpy arrays: values
    ``(L,)`` (objective units: ``lam`` times loss plus ``1 - lam`` times cost) and indices
    ``(L, K_i)`` per stage in scaled-loss units (``+inf`` for the last stage). Memory on the
    device: a few tables of shape ``(L, G, K)`` with ``G`` the loss support size plus one."""
    lams = check_lambda(lam)
    dt, dev = _check_dtype(dtype), _check_device(device)
    tol = TIE_TOLERANCE[dt]
    grid = chain.support()
    pos = [torch.as_tensor(p, dtype=torch.long, device=dev) for p in support_positions(chain, grid)]
    x64 = lams[:, None, None] * grid[None, :, None]  # (L, G, 1), float64 numpy
    x = torch.tensor(x64, dtype=dt, device=dev)
    value = x.expand(-1, -1, chain.n_states[-1])  # V_n(X, s) = X (a view: never written)
    rows: list[torch.Tensor] = []
    for i in range(chain.n_stages - 2, -1, -1):
        trans_t = torch.tensor(chain.transitions[i], dtype=dt, device=dev).T
        cont = _continuation(value, pos[i + 1], trans_t)
        del value, trans_t
        cont += torch.tensor((1.0 - lams) * chain.costs[i + 1], dtype=dt, device=dev)[:, None, None]
        rows.append(_stopping_rows(x, cont, tol))
        value = torch.minimum(x, cont, out=cont)
    first = value[:, pos[0], torch.arange(chain.n_states[0], device=dev)]  # (L, K_1)
    expect = (first @ torch.tensor(chain.initial, dtype=dt, device=dev)).double().cpu().numpy()
    del value, first
    total = (1.0 - lams) * chain.costs[0] + expect
    return RecallSolution(lams, total, _indices(x64, rows, chain.n_states[-1]))


def _indices(x64: FloatArray, rows: list[torch.Tensor], k_last: int) -> tuple[FloatArray, ...]:
    """Float64 index tables from the stopping rows (collected last stage first, ``(L, K_i)``)."""
    grid = x64[:, :, 0]  # (L, G)
    index = [np.take_along_axis(grid, r.cpu().numpy(), axis=1) for r in reversed(rows)]
    index.append(np.full((x64.shape[0], k_last), np.inf))
    return tuple(index)
