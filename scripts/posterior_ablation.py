"""What each part of the posterior model's state buys: saving, hull area and calibration gap
of posterior recall with parts of its state removed, beside the chain policies, on the same
random fit/test splits of each trace.

Variants (fixed hyper-parameters, no cross-validation, so that only the state changes):
``chain`` recall and no recall (the fitted chain), posterior recall with the incumbent's
estimated error in 1 / 4 / 12 / 24 bins with and without agreement, and the cross-validated
``posterior_recall`` and ``posterior_no_recall``. Writes ``posterior_ablation.csv`` (one row per
trace, variant and metric: mean, 95% half-width, splits reached) into ``--out``.

    python scripts/posterior_ablation.py --frugalml ../shared/data/frugalml --out results/posterior
    python scripts/posterior_ablation.py --trace .cache/ttamer/traces/trace/fashion_mnist-*.npz \\
        --reference last_stage --out results/posterior
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

from ttamer.evaluation.pareto import summarise
from ttamer.evaluation.scoring import ScoringConfig, score_policies
from ttamer.fileio import atomic_write_bytes
from ttamer.policies import TracePolicy, make_policy
from ttamer.traces.importers import import_frugalml
from ttamer.traces.trace import Trace, load_trace

METRICS = ("saving_at_delta_1", "area", "calibration_gap")


def variants() -> dict[str, TracePolicy]:
    """Name -> policy; the posterior variants share n_bins = 10 and shrinkage = 10."""
    out: dict[str, TracePolicy] = {
        "chain recall": make_policy("recall"),
        "chain no recall": make_policy("no_recall"),
    }
    for agreement in (False, True):
        for e in (1, 4, 12, 24):
            name = f"posterior recall, E={e}" + (", agreement" if agreement else "")
            fixed = {"n_bins": (10,), "incumbent_bins": (e,), "shrinkage": (10.0,), "agreement": agreement}
            out[name] = make_policy("posterior_recall", **fixed)
    out["posterior_recall (cross-validated)"] = make_policy("posterior_recall")
    out["posterior_no_recall (cross-validated)"] = make_policy("posterior_no_recall")
    return out


def ablate(trace: Trace, label: str, reference: str, splits: int, seed: int) -> pd.DataFrame:
    """Every variant on the same splits of ``trace``: tidy rows ``trace, variant, metric, mean,
    ci95_half, n_splits``."""
    rows = []
    static_config = ScoringConfig(policies=("static",), n_splits=splits, seed=seed, progress=False)
    static = score_policies(trace, static_config)
    for name, policy in variants().items():
        t0 = time.perf_counter()
        config = ScoringConfig(
            policies=(policy,), n_splits=splits, seed=seed, progress=False, reference=reference
        )
        points = pd.concat([static, score_policies(trace, config)], ignore_index=True)
        summary = summarise(points, reference=reference)  # type: ignore[arg-type]
        summary = summary[(summary["policy"] == policy.name) & summary["metric"].isin(METRICS)]
        for _, r in summary.iterrows():
            half = (r["ci95_high"] - r["ci95_low"]) / 2
            rows.append((label, name, r["metric"], r["mean"], half, int(r["n_splits"])))
        print(f"{label}: {name} ({time.perf_counter() - t0:.1f} s)", flush=True)
    return pd.DataFrame(rows, columns=["trace", "variant", "metric", "mean", "ci95_half", "n_splits"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--frugalml", type=Path, default=None, help="folder holding mlserviceperformance_*")
    parser.add_argument("--trace", type=Path, action="append", default=[], help="a trace .npz (repeatable)")
    parser.add_argument("--reference", default="best_stage", choices=("best_stage", "last_stage"))
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    traces: list[tuple[str, Trace]] = []
    if args.frugalml is not None:
        for ds in ("IMDB", "SHOP"):
            traces.append(
                (f"frugalml_{ds.lower()}", import_frugalml(args.frugalml / f"mlserviceperformance_{ds}"))
            )
    traces += [(p.name.split("-")[0], load_trace(p)) for p in args.trace]
    if not traces:
        parser.error("give --frugalml and/or --trace")
    table = pd.concat([ablate(t, label, args.reference, args.splits, args.seed) for label, t in traces])
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "posterior_ablation.csv"
    old = pd.read_csv(path) if path.is_file() else None
    if old is not None:  # keep the rows of other traces
        table = pd.concat([old[~old["trace"].isin(table["trace"])], table], ignore_index=True)
    atomic_write_bytes(path, table.to_csv(index=False).encode())
    wide = table.pivot_table(index=["trace", "variant"], columns="metric", values="mean", sort=False)
    print(wide.round(4).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
