"""Remedies for the recall policy on the FrugalML cascades (recall loses to optimal
stopping there): vary the chain fitted from the trace (bins, agreement with the previous stage
in the state, the score binned) and record recall's and no-recall's metrics over the same
random splits. Writes ``results/frugalml_remedies.csv`` (atomically) and prints a table.

    python scripts/frugalml_remedies.py [--data-root ../shared/data] [--splits 10]
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import pandas as pd

from ttamer.evaluation.pareto import summarise
from ttamer.evaluation.scoring import ScoringConfig, score_policies
from ttamer.fileio import atomic_write_bytes
from ttamer.fitting.chain import FitConfig
from ttamer.traces.importers import import_frugalml

VARIANTS = [
    *(FitConfig(n_bins=b, agreement=a) for b, a in itertools.product((5, 10, 20, 40), (False, True))),
    FitConfig(score="entropy"),
    FitConfig(score="margin"),
]
METRICS = ("area", "saving_at_delta_0", "saving_at_delta_1", "saving_at_delta_2")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--splits", type=int, default=10)
    ap.add_argument("--out", type=Path, default=Path("results/frugalml_remedies.csv"))
    args = ap.parse_args()
    rows = []
    for dataset in ("IMDB", "SHOP"):
        trace = import_frugalml(args.data_root / "frugalml" / f"mlserviceperformance_{dataset}")
        for fit in VARIANTS:
            cfg = ScoringConfig(("recall", "no_recall", "static"), args.splits, 0.5, 0, fit, progress=False)
            summary = summarise(score_policies(trace, cfg), reference="best_stage")
            summary = summary[
                summary["metric"].isin(METRICS) & summary["policy"].isin(["recall", "no_recall"])
            ]
            summary.insert(0, "dataset", dataset)
            summary.insert(1, "fit", f"{fit.score},bins={fit.n_bins},agreement={fit.agreement}")
            rows.append(summary)
    table = pd.concat(rows, ignore_index=True)
    atomic_write_bytes(args.out, table.to_csv(index=False).encode())
    wide = table.pivot_table(index=["dataset", "fit"], columns=["metric", "policy"], values="mean")
    print(wide.round(4).to_string())


if __name__ == "__main__":
    main()
