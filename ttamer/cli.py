"""The plain command line: ``ttamer solve``.

Kept free of heavy imports (no pandas, matplotlib or Hydra) so that start-up stays short."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import numpy as np

from ttamer.chain import Chain, ChainError, check_lambda, load_chain

POLICIES = ("recall", "no-recall", "prophet")


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


def solve_one(chain: Chain, lam: float, policy: str) -> dict[str, Any]:
    """Solve ``chain`` at ``lam`` with ``policy``; the result as a JSON-ready dict."""
    from ttamer import solvers

    out: dict[str, Any] = {"name": chain.name, "policy": policy, "lam": lam}
    if policy == "recall":
        sol = solvers.solve_recall(chain, lam)
        ev = solvers.evaluate_recall_solution(chain, sol)
        out["index"] = [_floats(x[0]) for x in sol.index]
    elif policy == "no-recall":
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


def _cmd_solve(args: argparse.Namespace) -> int:
    lam = float(check_lambda(args.lam, field="--lam")[0])
    for path in args.files:
        try:
            chain = load_chain(path)
        except ChainError as exc:
            raise UsageError(str(exc) if exc.field == "file" else f"{path}: {exc}") from None
        result = {"file": str(path), **solve_one(chain, lam, args.policy)}
        print(json.dumps(result), flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ttamer", description="T-Tamer: optimal stopping with recall for cascades.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    solve = sub.add_parser(
        "solve",
        help="solve chain instance files (.json or .npz); one JSON line per file",
        description=(
            "Solve each chain file at trade-off weight LAM and print one JSON object per file: "
            "policy, lam, objective (= lam*expected_loss + (1-lam)*expected_cost), expected_loss, "
            "expected_cost, stop_distribution, and for recall the index (sigma per stage and state, "
            "in units of lam*loss; null for the last stage, which always stops)."
        ),
    )
    solve.add_argument("files", nargs="+", help="chain files (.json per SPEC §1.5, or .npz)")
    solve.add_argument("--lam", type=str, required=True, help="trade-off weight in [0, 1]")
    solve.add_argument("--policy", choices=POLICIES, default="recall")
    solve.set_defaults(func=_cmd_solve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args))
    except (UsageError, ChainError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
