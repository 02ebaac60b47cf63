"""Ablation of soft state aggregation (``ttamer.solvers.aggregation``) against the exact recall
solver: objective gap and solve time against the number ``q`` of meta-states per stage.

On a chain of ``--stages`` stages whose stages share one support of ``--values`` loss values
(``ttamer.model.synthetic.shared_support_chain``, dense random transitions), for every ``lam`` and
``q``: the time of the aggregated solver (aggregation + meta solve + lift, one ``lam`` per
call), the exact solver's time on the same ``lam`` (each the best of ``--repeats`` rounds that
time every configuration once, in turn; BLAS threads as numpy starts them), and the lifted
policy's objective evaluated exactly on the original chain (``evaluate_policy``), with
``gap = (J_lifted - J*) / J*``.

Writes ``aggregation_ablation.csv`` (columns ``q, lam, solve_seconds, exact_seconds, objective,
optimum, gap, n_stages, K, width, meta_value``; ``meta_value`` is the optimum of the meta chain
itself) and ``fig_aggregation_ablation.png`` (drawn from the CSV only) under ``--out``. Prints a
table and, as the last line, one JSON object: ``q_values``, ``gap_at_q`` (largest gap over the
``lam`` values), ``speedup_at_q`` (exact time / aggregated time, median over ``lam``),
``exact_seconds`` (median over ``lam``).

    python scripts/bench_aggregation.py [--quick] [--out results/aggregation]
    python scripts/bench_aggregation.py --plot-only [--out results/aggregation]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ttamer.fileio import atomic_write_bytes
from ttamer.model.chain import Chain
from ttamer.model.synthetic import shared_support_chain
from ttamer.plots.synthetic import new_figure, save_figure
from ttamer.solvers import evaluate_policy, solve_recall
from ttamer.solvers.aggregation import DEFAULT_WIDTH, solve_recall_aggregated

CSV_NAME = "aggregation_ablation.csv"
FIG_NAME = "fig_aggregation_ablation.png"
COLUMNS = [
    "q",
    "lam",
    "solve_seconds",
    "exact_seconds",
    "objective",
    "optimum",
    "gap",
    "n_stages",
    "K",
    "width",
    "meta_value",
]
FULL_Q = [5, 10, 20, 50, 100, 200, 500, 1000]
QUICK_Q = [2, 5, 10, 20, 50]
LAMS = [0.3, 0.7, 0.95]
ZERO_GAP = 1e-12
"""Gaps at most this are 0 up to rounding (the lifted policy is then the optimal one)."""


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def run_ablation(
    chain: Chain, lams: Sequence[float], qs: Sequence[int], width: float, repeats: int
) -> pd.DataFrame:
    """One row per ``(q, lam)``: times, the lifted policy's exact objective and the gap.

    Times are the smallest of ``repeats`` rounds; each round times every configuration once,
    in turn, so that a burst of load from other processes on the shared machine hits one round
    of every configuration rather than every repeat of one."""
    k = max(chain.n_states)
    solve_recall(chain, lams[0])  # warm-up (BLAS threads, page faults)
    exact_fns = {lam: partial(solve_recall, chain, lam) for lam in lams}
    agg_fns = {
        (lam, q): partial(solve_recall_aggregated, chain, lam, q, width=width) for lam in lams for q in qs
    }
    exact_s = dict.fromkeys(lams, float("inf"))
    agg_s = dict.fromkeys(agg_fns, float("inf"))
    exact_sol, agg_sol = {}, {}
    for r in range(repeats):
        for lam in lams:
            t, exact_sol[lam] = _timed(exact_fns[lam])
            exact_s[lam] = min(exact_s[lam], t)
            for q in qs:
                t, agg_sol[lam, q] = _timed(agg_fns[lam, q])
                agg_s[lam, q] = min(agg_s[lam, q], t)
        print(f"  timing round {r + 1}/{repeats} done", flush=True)
    rows: list[dict[str, float | int]] = []
    for lam in lams:
        optimum = float(exact_sol[lam].value[0])
        for q in qs:
            sol = agg_sol[lam, q]
            objective = float(evaluate_policy(chain, sol.policy(0), lam).objective[0])
            rows.append(
                {
                    "q": int(q),
                    "lam": float(lam),
                    "solve_seconds": agg_s[lam, q],
                    "exact_seconds": exact_s[lam],
                    "objective": objective,
                    "optimum": optimum,
                    "gap": (objective - optimum) / optimum,
                    "n_stages": chain.n_stages,
                    "K": k,
                    "width": width,
                    "meta_value": float(sol.meta.value[0]),
                }
            )
            print(
                f"  lam={lam:<5g} q={q:<5d} gap={rows[-1]['gap']:<11.3e} "
                f"aggregated {agg_s[lam, q]:7.4f} s  exact {exact_s[lam]:7.4f} s",
                flush=True,
            )
    return pd.DataFrame(rows, columns=COLUMNS)


def plot_aggregation(table: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Two panels from the ablation CSV: relative objective gap against ``q`` (log-log; a gap
    of 0 up to rounding, at most ``ZERO_GAP``, is an open marker at the panel's floor) and
    solve time against ``q`` with the exact solver's time as a horizontal line per ``lam``."""
    fig, axes = new_figure(1, 2, figsize=(12.5, 4.8))
    gap_ax, time_ax = axes[0, 0], axes[0, 1]
    lams = sorted(table["lam"].unique())
    positive = table.loc[table["gap"] > ZERO_GAP, "gap"]
    floor = float(positive.min()) / 3.0 if not positive.empty else ZERO_GAP
    for c, lam in enumerate(lams):
        d = table[table["lam"] == lam].sort_values("q")
        color = f"C{c}"
        raw = d["gap"].to_numpy(dtype=float)
        gap = np.where(raw > ZERO_GAP, raw, floor)
        gap_ax.plot(d["q"], gap, "o-", color=color, label=f"λ = {lam:g}")
        zero = raw <= ZERO_GAP
        gap_ax.plot(d["q"][zero], gap[zero], "o", color=color, mfc="white", ms=8)
        time_ax.plot(d["q"], d["solve_seconds"], "o-", color=color, label=f"aggregated, λ = {lam:g}")
        time_ax.axhline(
            float(d["exact_seconds"].iloc[0]),
            color=color,
            ls="--",
            lw=1.2,
            label=f"exact solver, λ = {lam:g}",
        )
    n, k = int(table["n_stages"].iloc[0]), int(table["K"].iloc[0])
    width = float(table["width"].iloc[0]) if "width" in table.columns else float("nan")
    gap_ax.axhline(floor, color="0.6", lw=0.8, ls=":")
    gap_ax.set_xscale("log")
    gap_ax.set_yscale("log")
    gap_ax.set_xlabel("q (meta-states per stage, log scale)")
    gap_ax.set_ylabel("relative objective gap (J_lifted − J*) / J*  (dimensionless)")
    gap_ax.set_title(
        "Lifted policy, evaluated exactly on the original chain\n"
        f"(open markers: gap ≤ {ZERO_GAP:g}, i.e. 0 up to rounding, as at q = K; drawn at {floor:.1e})",
        fontsize=10,
    )
    time_ax.set_xscale("log")
    time_ax.set_yscale("log")
    time_ax.set_xlabel("q (meta-states per stage, log scale)")
    time_ax.set_ylabel("solve time for one λ (seconds, best of rounds)")
    time_ax.set_title("Aggregate + solve + lift (solid) vs the exact solver (dashed)", fontsize=10)
    for ax in (gap_ax, time_ax):
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=8)
    fig.suptitle(
        f"Soft state aggregation on a shared-support chain: n = {n} stages, K = {k} states per stage, "
        f"kernel width {width:g} centre spacings",
        fontsize=11,
    )
    fig.tight_layout()
    return save_figure(fig, path)


def summary(table: pd.DataFrame) -> dict[str, Any]:
    """The JSON summary: per ``q`` the largest gap over ``lam`` and the median speed-up."""
    qs = sorted(int(q) for q in table["q"].unique())
    gap_at_q, speedup_at_q = {}, {}
    for q in qs:
        d = table[table["q"] == q]
        gap_at_q[str(q)] = float(d["gap"].max())
        speedup_at_q[str(q)] = round(float(np.median(d["exact_seconds"] / d["solve_seconds"])), 3)
    exact = float(table.groupby("lam")["exact_seconds"].first().median())
    return {
        "q_values": qs,
        "gap_at_q": gap_at_q,
        "speedup_at_q": speedup_at_q,
        "exact_seconds": round(exact, 4),
    }


def print_table(table: pd.DataFrame) -> None:
    print(f"{'q':>6} {'max gap':>11} {'mean gap':>11} {'aggregated s':>13} {'exact s':>9} {'speed-up':>9}")
    for q in sorted(int(x) for x in table["q"].unique()):
        d = table[table["q"] == q]
        speed = float(np.median(d["exact_seconds"] / d["solve_seconds"]))
        print(
            f"{q:>6} {d['gap'].max():>11.3e} {d['gap'].mean():>11.3e} "
            f"{d['solve_seconds'].median():>13.4f} {d['exact_seconds'].median():>9.4f} {speed:>9.2f}"
        )


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small chain (6 stages, 120 states), q up to 50")
    ap.add_argument("--out", type=Path, default=Path("results/aggregation"))
    ap.add_argument("--plot-only", action="store_true", help="redraw the figure from the saved CSV")
    ap.add_argument("--stages", type=int, default=None, help="stages (default 12; quick: 6)")
    ap.add_argument("--values", type=int, default=None, help="states per stage K (default 1000; quick: 120)")
    ap.add_argument("--q", type=int, nargs="+", default=None, help="meta-state counts to try")
    ap.add_argument("--lam", type=float, nargs="+", default=LAMS)
    ap.add_argument("--width", type=float, default=DEFAULT_WIDTH, help="kernel width, centre spacings")
    ap.add_argument("--repeats", type=int, default=None, help="timing rounds (default 5; quick: 2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--blas-threads",
        type=int,
        default=None,
        help="limit BLAS threads for both solvers (threadpoolctl); default: numpy's own setting",
    )
    args = ap.parse_args(argv)
    csv_path, fig_path = args.out / CSV_NAME, args.out / FIG_NAME
    if args.plot_only:
        table = pd.read_csv(csv_path)
    else:
        n = args.stages or (6 if args.quick else 12)
        k = args.values or (120 if args.quick else 1000)
        qs = args.q or [q for q in (QUICK_Q if args.quick else FULL_Q) if q <= k]
        repeats = args.repeats or (2 if args.quick else 5)
        t0 = time.perf_counter()
        chain = shared_support_chain(n, k, seed=args.seed)
        print(
            f"shared-support chain: {n} stages x {k} states, lam {args.lam}, q {qs}, "
            f"width {args.width:g}, BLAS threads {args.blas_threads or 'default'}, {repeats} rounds"
        )
        with contextlib.ExitStack() as stack:
            if args.blas_threads is not None:
                from threadpoolctl import threadpool_limits

                stack.enter_context(threadpool_limits(limits=args.blas_threads, user_api="blas"))
            table = run_ablation(chain, args.lam, qs, args.width, repeats)
        buf = io.StringIO()
        table.to_csv(buf, index=False)
        atomic_write_bytes(csv_path, buf.getvalue().encode())
        print(f"wrote {csv_path} ({len(table)} rows) in {time.perf_counter() - t0:.1f} s")
    plot_aggregation(table, fig_path)
    print(f"wrote {fig_path}")
    print_table(table)
    print(json.dumps(summary(table)))


if __name__ == "__main__":
    main()
