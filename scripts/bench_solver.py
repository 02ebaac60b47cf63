"""Benchmark the exact recall solver against the matrix products it cannot avoid (README: performance).

For a chain of ``n`` stages whose stages share one support of ``K`` loss values (``K`` states
per stage, dense random transitions; :func:`ttamer.model.synthetic.shared_support_chain`), the dense
recall solver does, per stage after the first, one dense product ``(G x K) @ (K x K)`` with
``G = K + 1`` grid rows. The reference is those ``n - 1`` products on random arrays of the same
shapes, timed in the same process with the same BLAS; ``ratio_solver_to_matmul`` = solver time
over reference time (one ``lam``). Also measured:

- peak memory of one solve (``tracemalloc``, which sees numpy's buffers) over the size of one
  stage's value table (``L x G x K`` float64);
- ``lambda_batch_speedup``: 64 ``lam`` values in one call against 64 separate calls, and
  ``lambda_batch_ceiling``: the 64 separate calls against the products alone of 64 ``lam``
  (the most any method that does each ``lam``'s own products could gain by batching);
- the per-stage-support case (every stage with its own ``K`` values, ``G ~ n K``): the dense
  solver on the whole grid and on the reachable rows only (``rows="reachable"``), against the
  shared-support time;
- the banded continuation (``method="banded"``, :mod:`ttamer.solvers.banded`) against the
  dense one at a few ``lam``, with the band's share of the table;
- the torch backend (``--torch-device``) in float64 and float32: one ``lam``'s time, the error
  against numpy, and its own 64-``lam`` batch speed-up (where per-call fixed costs such as
  kernel launches and copies to the device dominate, batching pays).

    python scripts/bench_solver.py --quick            # K = 1000, n = 12 (about 2 minutes)
    python scripts/bench_solver.py --out results/bench_solver.json   # the full grid

Prints tables and, as its LAST line, one JSON object (also written to ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import tracemalloc
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ttamer.fileio import atomic_write_bytes
from ttamer.model.chain import Chain
from ttamer.model.synthetic import per_stage_support_chain, shared_support_chain
from ttamer.policies.grids import lambda_grid
from ttamer.solvers import solve_recall
from ttamer.solvers.recall import stage_rows

N_BATCH = 64


def median_time(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls (seconds)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def call_all(calls: Sequence[Callable[[], object]]) -> None:
    """Call every function of ``calls`` in turn."""
    for call in calls:
        call()


def matmul_reference(row_counts: list[int], k: int, repeats: int) -> float:
    """Seconds for the products ``(G_i x K) @ (K x K)^T`` (one per entry of ``row_counts``)."""
    rng = np.random.default_rng(0)
    b = rng.random((k, k))
    blocks = {g: rng.random((g, k)) for g in set(row_counts)}
    blocks[row_counts[0]] @ b.T  # warm-up

    def run() -> None:
        for g in row_counts:
            blocks[g] @ b.T

    return median_time(run, repeats)


def peak_bytes(fn: Callable[[], object]) -> int:
    """Peak traced allocation (bytes) while ``fn()`` runs."""
    tracemalloc.start()
    try:
        fn()
        return int(tracemalloc.get_traced_memory()[1])
    finally:
        tracemalloc.stop()


def table_bytes(chain: Chain, n_lam: int) -> int:
    """One stage's value table: ``L x G x K`` float64 (the largest stage)."""
    return 8 * n_lam * chain.support().size * max(chain.n_states)


def dense_row(chain: Chain, repeats: int) -> dict[str, Any]:
    """Solver vs matmul reference at one ``lam`` (0.5), and peak memory."""
    k, g = max(chain.n_states), chain.support().size
    solver = median_time(lambda: solve_recall(chain, 0.5), repeats)
    reference = matmul_reference([g] * (chain.n_stages - 1), k, repeats)
    peak = peak_bytes(lambda: solve_recall(chain, 0.5))
    return {
        "K": k,
        "n": chain.n_stages,
        "grid_rows": g,
        "solver_s": solver,
        "matmul_s": reference,
        "ratio_solver_to_matmul": solver / reference,
        "peak_mb": peak / 2**20,
        "table_mb": table_bytes(chain, 1) / 2**20,
        "peak_over_table": peak / table_bytes(chain, 1),
    }


def lambda_batch(chain: Chain) -> dict[str, float]:
    """64 ``lam`` in one call against 64 calls of one ``lam`` each (seconds, one run each).

    Also the floor of any method that does each ``lam``'s own ``n - 1`` products: 64 times the
    products of one ``lam``, or of 8 ``lam`` stacked into one taller product (per ``lam``),
    whichever BLAS runs faster; ``lambda_batch_ceiling`` = the 64 separate calls / that floor,
    the most such a method could gain by batching."""
    lams = lambda_grid(N_BATCH, 1e-2, 1e4)
    batch = median_time(lambda: solve_recall(chain, lams), 1)
    separate = median_time(partial(call_all, [partial(solve_recall, chain, float(v)) for v in lams]), 1)
    peak = peak_bytes(lambda: solve_recall(chain, lams))
    rows, k, n = chain.support().size, chain.n_states[0], chain.n_stages
    one = matmul_reference([rows] * (n - 1), k, 1)
    stacked = matmul_reference([8 * rows] * (n - 1), k, 1) / 8
    floor = N_BATCH * min(one, stacked)
    return {
        "batch_s": batch,
        "separate_s": separate,
        "lambda_batch_speedup": separate / batch,
        "batch_peak_over_table": peak / table_bytes(chain, N_BATCH),
        "products_one_lam_s": one,
        "products_per_lam_stacked8_s": stacked,
        "products_floor_64_s": floor,
        "lambda_batch_ceiling": separate / floor,
    }


def per_stage_support(n: int, k: int, shared_s: float, repeats: int) -> dict[str, float]:
    """The dense solver on a chain whose stages have their own supports, whole grid and
    reachable rows, against the shared-support time and the products each one does."""
    chain = per_stage_support_chain(n, k, seed=0)
    grid = chain.support()
    reach = [r.size for r in stage_rows(chain, grid, "reachable")][:-1]
    all_rows = median_time(lambda: solve_recall(chain, 0.5), repeats)
    reachable = median_time(lambda: solve_recall(chain, 0.5, rows="reachable"), repeats)
    return {
        "grid_rows": float(grid.size),
        "all_rows_s": all_rows,
        "reachable_rows_s": reachable,
        "all_rows_matmul_s": matmul_reference([grid.size] * (n - 1), k, repeats),
        "reachable_rows_matmul_s": matmul_reference(reach, k, repeats),
        "all_rows_over_shared": all_rows / shared_s,
        "reachable_rows_over_shared": reachable / shared_s,
    }


def band_share(chain: Chain, lam: float) -> float:
    """Share of the gathered next-stage tables that lies in the band (mean over stages)."""
    sol = solve_recall(chain, lam)
    grid = chain.support()
    shares = []
    for i in range(1, chain.n_stages):
        pos = np.searchsorted(grid, chain.losses[i])
        idx = sol.index[i][0]
        stop = np.where(np.isinf(idx), grid.size - 1, np.searchsorted(lam * grid, idx, side="right") - 1)
        shares.append(np.maximum(pos - stop, 0).sum() / (grid.size * chain.n_states[i]))
    return float(np.mean(shares))


def banded(chain: Chain, lams: tuple[float, ...], repeats: int) -> list[dict[str, float]]:
    rows = []
    for lam in lams:
        dense = median_time(partial(solve_recall, chain, lam), repeats)
        band = median_time(partial(solve_recall, chain, lam, method="banded"), repeats)
        rows.append({"lam": lam, "band_share": band_share(chain, lam), "dense_s": dense, "banded_s": band,
                     "banded_over_dense": band / dense})  # fmt: skip
    return rows


def torch_rows(chain: Chain, device: str, repeats: int) -> list[dict[str, Any]]:
    """The torch backend in float64 and float32 on ``device`` (one ``lam``), against the numpy
    solver: time and the largest relative error of the values against numpy float64."""
    import torch

    from ttamer.solvers.torch_backend import solve_recall_torch

    lams = lambda_grid(8, 1e-2, 1e4)
    exact = solve_recall(chain, lams).value
    rows = []
    sweep = lambda_grid(N_BATCH, 1e-2, 1e4)
    for dtype in (torch.float64, torch.float32):
        solve_recall_torch(chain, 0.5, device, dtype)  # warm-up (CUDA context, kernels)
        seconds = median_time(partial(solve_recall_torch, chain, 0.5, device, dtype), repeats)
        value = solve_recall_torch(chain, lams, device, dtype).value
        batch = median_time(partial(solve_recall_torch, chain, sweep, device, dtype), 1)
        one_by_one = [partial(solve_recall_torch, chain, float(v), device, dtype) for v in sweep]
        separate = median_time(partial(call_all, one_by_one), 1)
        rows.append({"device": device, "dtype": str(dtype).removeprefix("torch."), "seconds": seconds,
                     "max_rel_error": float(np.max(np.abs(value - exact) / np.abs(exact))),
                     "lambda_batch_s": batch, "lambda_separate_s": separate,
                     "lambda_batch_speedup": separate / batch})  # fmt: skip
    return rows


def print_rows(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    keys = list(rows[0])
    print("  ".join(f"{k:>12}" for k in keys))
    for r in rows:
        print("  ".join(f"{v:>12.4g}" if isinstance(v, float) else f"{v!s:>12}" for v in r.values()))


def machine() -> dict[str, Any]:
    return {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, tuple[int, int], list[tuple[int, int]]]:
    """The options, the (K, n) of the main chain and the (K, n) sizes of the grid."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="K = 1000, n = 12 only")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON result here")
    ap.add_argument("--torch-device", default="cpu", help="device of the torch backend rows (cpu, cuda)")
    ap.add_argument(
        "--sizes", default=None, help="K:n pairs of the grid, e.g. 100:6,1000:12 (overrides --quick)"
    )
    ap.add_argument("--main", default="1000:12", help="K:n of the chain of the batch, support, banded rows")
    args = ap.parse_args(argv)
    k_main, n_main = (int(v) for v in args.main.split(":"))
    if args.sizes:
        sizes = [(int(k), int(n)) for k, n in (pair.split(":") for pair in args.sizes.split(","))]
    else:
        sizes = (
            [(k_main, n_main)]
            if args.quick
            else [(k, n) for k in (100, 300, 1000, 3000) for n in (6, 12, 24)]
        )
    return args, (k_main, n_main), sizes


def main(argv: list[str] | None = None) -> None:
    args, (k_main, n_main), sizes = _parse_args(argv)
    grid_rows = []
    for k, n in sizes:
        reps = 1 if k >= 3000 else args.repeats
        grid_rows.append(dense_row(shared_support_chain(n, k, seed=0), reps))
        print_rows("dense recall solver (one lam) vs its n - 1 matrix products", grid_rows[-1:])
    main_chain = shared_support_chain(n_main, k_main, seed=0)
    head = next((r for r in grid_rows if (r["K"], r["n"]) == (k_main, n_main)), None) or dense_row(
        main_chain, 1
    )
    batch = lambda_batch(main_chain)
    where = f"K = {k_main}, n = {n_main}"
    print_rows(f"{N_BATCH} lam values: one call vs separate calls ({where})", [batch])
    small = [
        {"K": k, **lambda_batch(shared_support_chain(n_main, k, seed=0))} for k in (100, 300) if k < k_main
    ]
    if small:
        print_rows(f"{N_BATCH} lam values, smaller supports (n = {n_main})", small)
    per_stage = per_stage_support(n_main, k_main, head["solver_s"], args.repeats)
    print_rows(f"per-stage supports ({where} values per stage) vs shared support", [per_stage])
    band = banded(main_chain, (0.1, 0.5, 0.9, 0.99), 1)
    print_rows(f"banded vs dense continuation ({where})", band)
    backend = torch_rows(main_chain, args.torch_device, args.repeats)
    print_rows(f"torch backend vs numpy ({where}, numpy {head['solver_s']:.3f} s)", backend)
    result = {
        "benchmark": "exact recall solver vs its matrix products",
        "K": k_main,
        "n": n_main,
        "ratio_solver_to_matmul": round(head["ratio_solver_to_matmul"], 3),
        "lambda_batch_speedup": round(batch["lambda_batch_speedup"], 3),
        "lambda_batch_ceiling": round(batch["lambda_batch_ceiling"], 3),
        "peak_memory_over_table": round(head["peak_over_table"], 3),
        "batch_peak_memory_over_table": round(batch["batch_peak_over_table"], 3),
        "grid": grid_rows,
        "lambda_batch": batch,
        "lambda_batch_smaller_k": small,
        "per_stage_support": per_stage,
        "banded": band,
        "torch": backend,
        **machine(),
    }
    if args.out:
        atomic_write_bytes(args.out, (json.dumps(result, indent=2) + "\n").encode())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
