"""The plain command line: ``ttamer solve``, ``ttamer sweep`` (score trace policies on fit/test
splits, :func:`ttamer.evaluation.scoring.score_policies`), ``ttamer import-frugalml`` and
``ttamer import-csv``.

Kept free of heavy imports at the top (no pandas, matplotlib or Hydra; the trace commands import
what they need inside) so that start-up stays short. Bad input is reported on one line naming
the field or file, with exit code 2."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from typing import Any, NoReturn

import numpy as np

from ttamer.errors import FieldError
from ttamer.loading import one_line
from ttamer.model.chain import Chain, ChainError, check_lambda

SOLVE_POLICIES = ("recall", "no_recall", "prophet")
"""The policies ``ttamer solve`` solves a chain or graph for (the names the rest of the package uses)."""


class UsageError(Exception):
    """Bad command-line input: reported on one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def _floats(values: Any) -> Any:
    """JSON-safe floats: non-finite values become null."""
    if isinstance(values, np.ndarray):
        return [_floats(v) for v in values.tolist()]
    if isinstance(values, list):
        return [_floats(v) for v in values]
    if isinstance(values, float) and not math.isfinite(values):
        return None
    return values


def solve_one(
    chain: Chain, lam: float, policy: str, method: str = "dense", meta_states: int | None = None
) -> dict[str, Any]:
    """Solve ``chain`` at ``lam`` with ``policy``; the result as a JSON-ready dict. For recall,
    ``method`` (dense | banded, both exact) or ``meta_states`` (soft state aggregation into that
    many meta-states per stage; the lifted policy is then evaluated exactly)."""
    from ttamer import solvers

    out: dict[str, Any] = {"name": chain.name, "policy": policy, "lam": lam}
    if policy == "recall" and meta_states is not None:
        from ttamer.solvers.aggregation import evaluate_aggregated_solution, solve_recall_aggregated

        agg = solve_recall_aggregated(chain, lam, meta_states)
        ev = evaluate_aggregated_solution(chain, agg)
        out.update(meta_states=meta_states, index=[_floats(x[0]) for x in agg.index])
    elif policy == "recall":
        sol = solvers.solve_recall(chain, lam, method=method)
        ev = solvers.evaluate_recall_solution(chain, sol)
        out["index"] = [_floats(x[0]) for x in sol.index]
    elif policy == "no_recall":
        nsol = solvers.solve_no_recall(chain, lam)
        ev = solvers.evaluate_no_recall_solution(chain, nsol)
        out["stop"] = [x[0].tolist() for x in nsol.stop]
    else:
        ev = solvers.solve_prophet(chain, lam)
    out.update(
        objective=float(ev.objective[0]),
        expected_loss=float(ev.expected_loss[0]),
        expected_cost=float(ev.expected_cost[0]),
    )
    if policy != "prophet":
        out["stop_distribution"] = ev.stop_distribution[0].tolist()
    return out


def solve_graph_one(graph: Any, lam: float, policy: str) -> dict[str, Any]:
    """Solve a graph instance: a path as its chain (exactly the chain's answer), a branching
    tree or a transitive closure with the exact graph solvers, evaluated exactly."""
    from ttamer import solvers
    from ttamer.model.graph import structure, tree_as_chain

    kind = structure(graph)  # ChainError("edges", ...) for a general DAG
    chain = tree_as_chain(graph)
    if chain is not None:  # a path (a chain written as a graph): exactly the chain's answer
        return {**solve_one(chain, lam, policy), "structure": "path"}
    if policy == "prophet":
        raise ChainError(
            "--policy", "prophet is defined for chains (path graphs) only, not for trees or closures"
        )
    out: dict[str, Any] = {"name": graph.name, "policy": policy, "lam": lam, "structure": kind}
    sol: Any
    if policy == "recall":
        sol = (
            solvers.solve_tree_recall(graph, lam)
            if kind == "tree"
            else solvers.solve_closure_recall(graph, lam)
        )
        out["index"] = [_floats(x[0]) for x in sol.index]
        chosen = sol.policy(0)
        out["first_node"] = int(chosen.first_node())
    else:
        sol = (
            solvers.solve_tree_no_recall(graph, lam)
            if kind == "tree"
            else solvers.solve_closure_no_recall(graph, lam)
        )
        out["stop"] = [x[0].tolist() for x in sol.stop]
        out["next_node"] = [x[0].tolist() for x in sol.next_node]
        chosen = sol.policy(0)
        out["first_node"] = int(sol.first_node[0])
    evaluation = solvers.evaluate_graph_policy(graph, chosen, lam)
    out["objective"] = float(sol.value[0])
    out.update({k: v for k, v in evaluation.row().items() if k not in ("lam", "objective")})
    return out


def _cmd_solve(args: argparse.Namespace) -> int:
    from ttamer.model.graph import Graph, load_instance

    lam = float(check_lambda(args.lam, field="--lam")[0])
    for path in args.files:
        try:
            instance = load_instance(path)
            if isinstance(instance, Graph):
                result = solve_graph_one(instance, lam, args.policy)
            else:
                result = solve_one(instance, lam, args.policy, args.method, args.meta_states)
        except ChainError as exc:
            raise UsageError(str(exc) if exc.field == "file" else f"{path}: {exc}") from None
        print(json.dumps({"file": str(path), **result}), flush=True)
    return 0


# ---------------------------------------------------------------------------------- traces


def _load_trace_arg(path: str, option: str) -> Any:
    """Load a trace file, turning any error into a one-line message naming the option and file."""
    from ttamer.traces.trace import TraceError, load_trace

    try:
        return load_trace(path)
    except TraceError as exc:
        msg = str(exc).removeprefix("file: ") if exc.field == "file" else f"{path}: {exc}"
        raise UsageError(f"{option}: {msg}") from None


def _write_out(path: str, data: bytes) -> None:
    from ttamer.fileio import atomic_write_bytes

    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise UsageError(f"--out: cannot write {path} ({exc.strerror or exc})") from None


def _scoring_config(args: argparse.Namespace) -> Any:
    """The :class:`~ttamer.evaluation.scoring.ScoringConfig` of ``ttamer sweep``'s options; bad
    values and unknown policy names fail here, before any trace is read."""
    from ttamer.evaluation.scoring import ScoringConfig, resolve_policies
    from ttamer.fitting.chain import FitConfig

    if args.fit is not None and args.splits is not None:
        raise UsageError("--splits: does not apply with --fit (the fit trace is the one fit split)")
    if args.policies is None:
        from ttamer.policies import default_trace_policies

        names: tuple[str, ...] = default_trace_policies()  # those the trace cannot support are skipped
    else:
        names = tuple(x.strip() for x in args.policies.split(",") if x.strip())
    try:
        fit_config = FitConfig(score=args.score, n_bins=args.bins, agreement=args.agreement)
        config = ScoringConfig(
            policies=names,
            n_splits=5 if args.splits is None else args.splits,
            fit_fraction=args.fit_fraction,
            seed=args.seed,
            fit_config=fit_config,
            progress=not args.no_progress,
            target=args.target,
            skip_unsupported=args.policies is None,
        )
        resolve_policies(config.policies)
    except FieldError as exc:
        message = str(exc).removeprefix(f"{exc.field}: ")
        raise UsageError(f"--{_OPTION.get(exc.field, exc.field)}: {message}") from None
    return config


def _cmd_sweep(args: argparse.Namespace) -> int:
    """``ttamer sweep``: score trace policies over their knob grids (README: traces)."""
    from ttamer.evaluation.scoring import score_policies

    t0 = time.perf_counter()
    config = _scoring_config(args)
    trace = _load_trace_arg(args.trace, "TRACE")
    fit_trace = None
    if args.fit is not None:
        fit_trace = _load_trace_arg(args.fit, "--fit")
        if fit_trace.n_stages != trace.n_stages:
            raise UsageError(
                f"--fit: {args.fit} has {fit_trace.n_stages} stages but {args.trace} has {trace.n_stages}"
            )
    try:
        df = score_policies(trace, config, fit_trace=fit_trace)
    except FieldError as exc:
        raise UsageError(f"{args.trace}: {exc}") from None
    _write_out(args.out, df.to_csv(index=False).encode())
    if float(trace.cost.sum()) == 0.0:
        print(
            "note: every stage of the trace costs 0: normalized_cost is 0 for every policy", file=sys.stderr
        )
    n_pol = df["policy"].nunique()
    n_split = df["split"].nunique()
    where = f"fitted on {args.fit}" if args.fit is not None else f"{n_split} random fit/test splits"
    print(
        f"wrote {len(df)} rows to {args.out}: {n_pol} policies, {where}, "
        f"{int(df['n_test'].iloc[0])} test samples, cost in {trace.cost_unit or 'trace units'}, "
        f"{time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    return 0


_OPTION = {"n_bins": "bins", "n_splits": "splits", "fit_fraction": "fit-fraction", "seed": "seed"}


def _summarise_trace(trace: Any, out: str, seconds: float) -> str:
    acc = trace.correct.mean(axis=0)
    stages = ", ".join(
        f"{name} (cost {c:g}, acc {a:.3f})"
        for name, c, a in zip(trace.stage_names, trace.cost, acc, strict=True)
    )
    unit = f" [{trace.cost_unit}]" if trace.cost_unit else ""
    return (
        f"wrote {out}: {trace.n_samples} samples, {trace.n_stages} stages{unit}: {stages} in {seconds:.2f} s"
    )


def _save_trace_out(trace: Any, out: str) -> None:
    from ttamer.traces.trace import save_trace

    if not out.endswith(".npz"):
        raise UsageError(f"--out: a trace is written as .npz, got {out}")
    try:
        save_trace(trace, out)  # atomic
    except OSError as exc:
        raise UsageError(f"--out: cannot write {out} ({exc.strerror or exc})") from None


def _cmd_import_frugalml(args: argparse.Namespace) -> int:
    from ttamer.traces.frugalml import import_frugalml
    from ttamer.traces.trace import TraceError

    t0 = time.perf_counter()
    try:
        trace = import_frugalml(args.folder)
    except TraceError as exc:
        raise UsageError(
            f"DIR: {str(exc).removeprefix('file: ')}" if exc.field == "file" else str(exc)
        ) from None
    _save_trace_out(trace, args.out)
    print(_summarise_trace(trace, args.out, time.perf_counter() - t0), flush=True)
    return 0


def _cmd_import_csv(args: argparse.Namespace) -> int:
    from ttamer.traces.csv_trace import import_csv
    from ttamer.traces.trace import TraceError

    t0 = time.perf_counter()
    costs = None
    if args.costs is not None:
        try:
            costs = [float(x) for x in args.costs.split(",")]
        except ValueError:
            raise UsageError(f"--costs: expected comma-separated numbers, got {args.costs!r}") from None
    try:
        trace = import_csv(args.file, costs=costs, cost_unit=args.cost_unit)
    except TraceError as exc:
        raise UsageError(
            f"FILE: {str(exc).removeprefix('file: ')}" if exc.field == "file" else f"{args.file}: {exc}"
        ) from None
    _save_trace_out(trace, args.out)
    print(_summarise_trace(trace, args.out, time.perf_counter() - t0), flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ttamer", description="T-Tamer: optimal stopping with recall for cascades.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_solve_command(sub)
    _add_sweep_command(sub)
    _add_import_commands(sub)
    return parser


def _add_solve_command(sub: Any) -> None:
    """``ttamer solve``: solve chain or graph instance files."""
    solve = sub.add_parser(
        "solve",
        help="solve chain or graph instance files (.json or .npz); one JSON line per file",
        description=(
            "Solve each chain file at trade-off weight LAM and print one JSON object per file: "
            "policy, lam, objective (= lam*expected_loss + (1-lam)*expected_cost), expected_loss, "
            "expected_cost, stop_distribution, and for recall the index (sigma per stage and state, "
            "in units of lam*loss; null for the last stage, which always stops). "
            "Graph files ({nodes, edges}) are accepted too: a path (a chain written as a graph) "
            "gives exactly the chain's answer (structure: path). A branching tree (structure: tree) "
            "or the transitive closure of a chain (structure: closure, stages may be skipped) "
            "prints the optimal objective, first_node, expected_loss, expected_cost, and per node "
            "the probability of being returned and of being run; recall adds the index per node "
            "(trees: one value per state of the node's parent; closures: per state of the node), "
            "no_recall the stop sets and next_node (trees: the best descending walk). General DAGs and "
            "--policy prophet on non-path graphs exit with code 2."
        ),
    )
    solve.add_argument("files", nargs="+", help="chain or graph files (.json or .npz)")
    solve.add_argument("--lam", type=str, required=True, help="trade-off weight in [0, 1]")
    solve.add_argument(
        "--policy", choices=SOLVE_POLICIES, default="recall", help="the policy to solve for (default recall)"
    )
    solve.add_argument(
        "--method", choices=("dense", "banded"), default="dense",
        help="recall on chains: dense matrix products, or the band-structured step (both exact)",
    )  # fmt: skip
    solve.add_argument(
        "--meta-states", type=int, default=None, metavar="Q",
        help="recall on chains: soft state aggregation into Q meta-states per stage (approximate; "
        "the lifted policy is evaluated exactly, so objective is its true value)",
    )  # fmt: skip
    solve.set_defaults(func=_cmd_solve)


def _add_sweep_command(sub: Any) -> None:
    """``ttamer sweep``: score trace policies on fit/test splits of a trace."""
    sweep = sub.add_parser(
        "sweep",
        help="score trace policies on fit/test splits of a trace; writes a tidy CSV",
        description=(
            "Fit every policy on a fit split and score it on the disjoint test split of TRACE "
            "(R random splits), or fit on the separate trace FIT and score on all of TRACE. Writes "
            "one row per (split, policy, knob value) with the columns policy, knob, knob_name, "
            "accuracy, error_rate, mean_cost, normalized_cost, split, n_test, cost_unit, "
            "predicted_accuracy, selected, target."
        ),
    )
    sweep.add_argument("trace", help="trace file (.npz) to score on")
    sweep.add_argument("--out", required=True, help="results CSV (written atomically)")
    sweep.add_argument(
        "--fit", default=None, help="separate trace to fit on (then split = 0, no random split)"
    )
    sweep.add_argument(
        "--policies", default=None, help="comma-separated policy names (default: every default policy)"
    )
    sweep.add_argument("--splits", type=int, default=None, help="random fit/test splits R (default 5)")
    sweep.add_argument("--fit-fraction", type=float, default=0.5, help="share of samples fitted on (0.5)")
    sweep.add_argument("--seed", type=int, default=0, help="seed of the random splits (0)")
    sweep.add_argument(
        "--bins", type=int, default=10, help="quantile bins per stage for the fitted chain (10)"
    )
    sweep.add_argument(
        "--score",
        choices=("max_softmax", "entropy", "margin"),
        default="max_softmax",
        help="score binned into the chain's states",
    )
    sweep.add_argument(
        "--agreement", action="store_true", help="add agreement with the previous stage to the state"
    )
    sweep.add_argument(
        "--target",
        choices=("label", "last_stage"),
        default="label",
        help="accuracy against the labels, or agreement with the last stage's prediction",
    )
    sweep.add_argument("--no-progress", action="store_true", help="no progress bar")
    sweep.set_defaults(func=_cmd_sweep)


def _add_import_commands(sub: Any) -> None:
    """``ttamer import-frugalml`` and ``ttamer import-csv``: build a trace from other formats."""
    frugal = sub.add_parser(
        "import-frugalml",
        help="turn a FrugalML dataset folder into a trace",
        description=(
            "Read a FrugalML folder (meta.csv and Model<m>_{PredictedLabel,Confidence,TrueLabel}.txt) "
            "into a trace: models ordered by price, cost = price per 10k calls."
        ),
    )
    frugal.add_argument("folder", help="e.g. .../frugalml/mlserviceperformance_IMDB")
    frugal.add_argument("--out", required=True, help="trace file (.npz), written atomically")
    frugal.set_defaults(func=_cmd_import_frugalml)

    csv = sub.add_parser(
        "import-csv",
        help="turn a long CSV (sample, stage, label, pred, conf[, cost, p0..]) into a trace",
        description=(
            "Read a CSV with one row per (sample, stage) and the columns sample, stage, label, pred, "
            "conf; optional cost (per stage), stage_name, cost_unit and p0..p{C-1} (probabilities)."
        ),
    )
    csv.add_argument("file", help="CSV file")
    csv.add_argument("--out", required=True, help="trace file (.npz), written atomically")
    csv.add_argument(
        "--costs", default=None, help="comma-separated cost per stage (replaces the cost column)"
    )
    csv.add_argument("--cost-unit", default=None, help="cost unit (replaces the cost_unit column)")
    csv.set_defaults(func=_cmd_import_csv)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args))
    except (UsageError, FieldError) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except (OSError, MemoryError, RecursionError) as exc:  # I/O, or an input too large or deep
        where = f"{exc.filename}: " if isinstance(exc, OSError) and exc.filename else ""
        print(f"error: {where}{one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
