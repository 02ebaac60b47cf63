"""Benchmark ``ttamer solve`` end to end (process start-up included) on a 12-stage chain whose
stages share one support of 1,000 loss values (an ``.npz`` instance), for every policy.

Prints a table and, as its last line, one JSON object. The reference time is that of the
``n - 1`` dense ``(G x K) @ (K x K)`` matrix products (G = K + 1 support rows) that the recall
solver cannot avoid, measured in the same process with the same BLAS.

    python scripts/bench_solve_cli.py [--stages 12] [--values 1000] [--repeats 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ttamer.model.chain import atomic_write_bytes, load_chain, save_chain
from ttamer.model.synthetic import shared_support_chain
from ttamer.solvers import evaluate_recall_solution, solve_recall


def _time_cli(path: Path, policy: str, repeats: int) -> float:
    cmd = [sys.executable, "-m", "ttamer.cli", "solve", str(path), "--lam", "0.5", "--policy", policy]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _time_matmuls(n: int, k: int, repeats: int) -> float:
    rng = np.random.default_rng(0)
    a, b = rng.random((k + 1, k)), rng.random((k, k))
    a @ b  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n - 1):
            a @ b
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _time_in_process(path: Path, repeats: int) -> dict[str, float]:
    t0 = time.perf_counter()
    chain = load_chain(path)
    load = time.perf_counter() - t0
    solve, evaluate = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sol = solve_recall(chain, 0.5)
        t1 = time.perf_counter()
        evaluate_recall_solution(chain, sol)
        solve.append(t1 - t0)
        evaluate.append(time.perf_counter() - t1)
    return {
        "load_s": load,
        "recall_solve_s": statistics.median(solve),
        "recall_evaluate_s": statistics.median(evaluate),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stages", type=int, default=12)
    ap.add_argument("--values", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON result here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chain.npz"
        save_chain(shared_support_chain(args.stages, args.values, seed=0), path)
        cli = {p: _time_cli(path, p, args.repeats) for p in ("recall", "no_recall", "prophet")}
        inproc = _time_in_process(path, args.repeats)
    mm = _time_matmuls(args.stages, args.values, args.repeats)
    result = {
        "benchmark": "ttamer solve, shared support",
        "n_stages": args.stages,
        "n_values": args.values,
        **{f"cli_{p}_s": round(t, 3) for p, t in cli.items()},
        **{k: round(v, 3) for k, v in inproc.items()},
        "matmul_reference_s": round(mm, 3),
        "ratio_solver_to_matmul": round(inproc["recall_solve_s"] / mm, 3),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpu_count": __import__("os").cpu_count(),
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    print(f"{'policy':<12}{'ttamer solve (s, start-up included)':>38}")
    for p, t in cli.items():
        print(f"{p:<12}{t:>38.2f}")
    print(
        f"in process: load {inproc['load_s']:.2f} s, recall solve {inproc['recall_solve_s']:.2f} s, "
        f"evaluate {inproc['recall_evaluate_s']:.2f} s; {args.stages - 1} matmuls {mm:.2f} s"
    )
    line = json.dumps(result)
    if args.out:
        atomic_write_bytes(args.out, (json.dumps(result, indent=2) + "\n").encode())
    print(line)


if __name__ == "__main__":
    main()
