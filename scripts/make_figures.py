#!/usr/bin/env python
"""Regenerate every figure and the headline table from saved results only (README: experiments).

    python scripts/make_figures.py [--results results] [--out results/figures] [--readme PATH]

Discovers every results folder under ``--results`` (the folder itself included): a folder
holding a ``<tag>_points.csv`` (a trace workload, as written by ``ttamer-run``) or the
``synthetic_*.csv`` tables of the synthetic study (:mod:`ttamer.evaluation.results`). From those
tables alone, with no model run, no solver call and no trace loaded, it writes into ``--out``:

* ``fig_<folder>.png`` per trace workload: accuracy against normalised cost for every policy
  (x label with the cost unit of the points table's ``cost_unit`` column; stage names from the
  folder's ``benchmark-infer-*.csv`` when there is one, else "stage k");
* ``fig_<folder>_usage.png`` per graph study (a ``<tag>_usage.csv``): how often each stage ran,
  answered and was skipped, against normalised cost;
* ``fig_<folder>_calibration.png`` where a policy has a fitted model (a ``<tag>_calibration.csv``);
* ``fig_<folder>_lower_bound.png``, ``fig_<folder>_ratio_distribution.png`` and
  ``fig_<folder>_pareto.png`` per synthetic folder (:mod:`ttamer.plots.report_figures`);
* ``summary.csv``: workload x policy -> saving at the reference accuracy minus δ = 0 and 1
  points (mean, 95% half-width, splits reached / unreached) and the area under the hull, read
  from the saved ``<tag>_summary.csv`` (recomputed from the points table with
  :func:`ttamer.evaluation.pareto.summarise` only when that file is missing or lacks a metric);
* ``summary_synthetic.csv``: the synthetic study's objective ratios per family and λ;
* ``summary.md``: both tables and, per folder, the command that produced it, the reference
  accuracy and where the costs come from (:mod:`ttamer.evaluation.report`).

With ``--readme`` (default ``<results>/README.md``, if it exists) the Markdown between the
lines ``<!-- BEGIN make_figures -->`` and ``<!-- END make_figures -->`` is replaced by the same
tables, so the README stays in sync. Every file is written atomically. One progress line per
file on stdout. A missing or malformed results folder: one line on stderr, exit code 2, and
nothing written (every table is read and checked before anything is drawn).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ttamer.evaluation.report import (
    BEGIN_MARK,
    END_MARK,
    build_report,
    load_results,
    report_files,
    update_readme,
)
from ttamer.evaluation.results import ResultsError, display_path, write_text
from ttamer.plots.report_figures import figure_jobs


def make_figures(root: Path, out: Path, readme: Path | None) -> None:
    """Every figure, the headline tables and ``summary.md`` of ``root`` into ``out``; the marked
    section of ``readme`` (if given and present) receives the tables."""
    traces, synthetic = load_results(root, skip=out)  # everything read and checked before writing
    jobs = figure_jobs(traces, synthetic, out)
    for i, job in enumerate(jobs, 1):
        job.draw(job.path)
        print(
            f"[{i}/{len(jobs)}] wrote {display_path(job.path)} (from {display_path(job.source)})", flush=True
        )
    report = build_report(traces, synthetic)
    for name, text in report_files(report, root).items():
        write_text(out / name, text)
        print(f"wrote {display_path(out / name)}", flush=True)
    if readme is None or not readme.is_file():
        return
    if update_readme(readme, report.markdown):
        print(f"updated the table section of {display_path(readme)}", flush=True)
    else:
        print(
            f"note: {display_path(readme)} has no {BEGIN_MARK} / {END_MARK} markers; left unchanged",
            flush=True,
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--results", type=Path, default=Path("results"), help="root of the results folders")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: <results>/figures)")
    parser.add_argument(
        "--readme",
        type=Path,
        default=None,
        help="Markdown file whose marked section receives the tables (default: <results>/README.md)",
    )
    parser.add_argument("--no-readme", action="store_true", help="do not touch any README")
    args = parser.parse_args(argv)
    out = args.out if args.out is not None else args.results / "figures"
    readme = (
        None if args.no_readme else (args.readme if args.readme is not None else args.results / "README.md")
    )
    try:
        make_figures(args.results, out, readme)
    except ResultsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
