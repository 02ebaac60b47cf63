"""The synthetic study (README: synthetic study): how much recall buys, in three tidy tables.

(a) :func:`lower_bound_table` — the no-recall / recall ratio on the lower-bound family as the
    gamble parameter ``alpha`` grows: solver values beside the closed form, for several chain
    lengths and cost scales, plus the paper's exact Theorem 3.4 instance (n=2, cost 0, lam=1).
(b) :func:`ratio_table` — on many random chains of every family, the optimal objective of each
    compared policy divided by the optimal recall objective ``J*_recall``.
(c) :func:`pareto_table` — expected loss against expected cost on one random chain: recall and
    no-recall optima over a grid of ``lam``, every single-threshold rule, and the prophet.

Units: losses are error probabilities in [0, 1]; synthetic costs sum to 1, so a cost is a
fraction of the full chain's cost. Objectives ``J = lam*loss + (1-lam)*cost`` share those units.
Everything is plain numpy/pandas: no Hydra here; :mod:`ttamer.app.run` builds the config.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from tqdm.auto import tqdm

from ttamer.model.chain import Chain, check_lambda, save_chain
from ttamer.model.synthetic import (
    FAMILIES,
    SyntheticSpec,
    lower_bound_chain,
    lower_bound_values,
    random_chain,
)
from ttamer.solvers import (
    evaluate_no_recall_solution,
    evaluate_recall_solution,
    evaluate_thresholds,
    solve_no_recall,
    solve_prophet,
    solve_recall,
    threshold_candidates,
)

FloatArray = NDArray[np.float64]

SYNTHETIC_POLICIES = ("recall", "no_recall", "best_threshold", "prophet")
"""Policies the study can compare, in table order. ``recall`` is the reference and is always
required."""


def default_synthetic_policies() -> tuple[str, ...]:
    """The policies the synthetic study compares when no list is given: all of them."""
    return SYNTHETIC_POLICIES

_RATIO_STREAM, _PARETO_STREAM = 0, 1  # independent random streams, keyed by family


@dataclass(frozen=True)
class SyntheticStudyConfig:
    """Parameters of the synthetic study; ``seed`` drives every random choice.

    Lower-bound family (a): ``n_alphas`` values of ``alpha`` log-spaced in
    ``[alpha_min, alpha_max]``, every chain length in ``lower_bound_n_stages`` and cost scale in
    ``lower_bound_cost_scales`` (the family's total cost is ``cost_scale * alpha**-3``), all at
    ``lower_bound_lam``. Random chains (b): ``chains_per_family`` chains of ``n_stages`` stages
    with ``n_states`` confidence bins for each family in ``families``, each solved at every
    weight in ``ratio_lams``. Pareto (c): one chain of ``pareto_family``, with ``n_lam_grid``
    weights spaced evenly in logit between ``lam_grid_min`` and ``lam_grid_max``.
    ``policies`` (a subset of :data:`SYNTHETIC_POLICIES`) selects the comparators in (b) and (c)."""

    alpha_min: float = 1.1
    alpha_max: float = 1000.0
    n_alphas: int = 40
    lower_bound_n_stages: tuple[int, ...] = (2, 4, 8)
    lower_bound_cost_scales: tuple[float, ...] = (0.0, 10.0, 100.0)
    lower_bound_lam: float = 0.9
    families: tuple[str, ...] = FAMILIES
    chains_per_family: int = 200
    n_stages: int = 6
    n_states: int = 8
    ratio_lams: tuple[float, ...] = (0.9, 0.97)
    pareto_family: str = "overthinking"
    lam_grid_min: float = 0.05
    lam_grid_max: float = 0.999
    n_lam_grid: int = 60
    policies: tuple[str, ...] = SYNTHETIC_POLICIES
    seed: int = 0
    progress: bool = field(default=True, compare=False)

    def __post_init__(self) -> None:
        if not 1.0 < self.alpha_min <= self.alpha_max:
            raise ValueError(f"alpha_min: need 1 < alpha_min <= alpha_max, got {self.alpha_min}")
        if self.n_alphas < 1 or self.chains_per_family < 1 or self.n_lam_grid < 2:
            raise ValueError("n_alphas, chains_per_family: need >= 1; n_lam_grid: need >= 2")
        if min(self.lower_bound_n_stages, default=0) < 2:
            raise ValueError(f"lower_bound_n_stages: each needs >= 2, got {self.lower_bound_n_stages}")
        if min(self.lower_bound_cost_scales, default=-1.0) < 0:
            raise ValueError(f"lower_bound_cost_scales: must be >= 0, got {self.lower_bound_cost_scales}")
        unknown = [f for f in (*self.families, self.pareto_family) if f not in FAMILIES]
        if unknown or not self.families:
            raise ValueError(f"families: unknown or empty {unknown}; choose from {FAMILIES}")
        bad = [p for p in self.policies if p not in SYNTHETIC_POLICIES]
        if bad or "recall" not in self.policies:
            raise ValueError(
                f"policies: must include 'recall' and come from {SYNTHETIC_POLICIES}, got {self.policies}"
            )
        check_lambda(self.lower_bound_lam, "lower_bound_lam")
        check_lambda(self.ratio_lams, "ratio_lams")
        check_lambda([self.lam_grid_min, self.lam_grid_max], "lam_grid")
        if not 0.0 < self.lam_grid_min < self.lam_grid_max < 1.0:
            raise ValueError("lam_grid_min, lam_grid_max: need 0 < min < max < 1")

    @property
    def alphas(self) -> FloatArray:
        """Gamble parameters of the lower-bound family: shape ``(n_alphas,)``, log-spaced."""
        return np.geomspace(self.alpha_min, self.alpha_max, self.n_alphas)

    @property
    def lam_grid(self) -> FloatArray:
        """Trade-off weights of the Pareto sweep: shape ``(n_lam_grid,)``, even in logit.

        Even logit spacing makes the cost/loss exchange rate ``(1-lam)/lam`` log-spaced, so the
        sweep covers cheap and accurate operating points alike."""
        lo, hi = (np.log(x / (1.0 - x)) for x in (self.lam_grid_min, self.lam_grid_max))
        return 1.0 / (1.0 + np.exp(-np.linspace(lo, hi, self.n_lam_grid)))


@dataclass(frozen=True)
class SyntheticStudyResult:
    """The three tables of the study (see the module docstring for their meaning)."""

    lower_bound: pd.DataFrame
    ratios: pd.DataFrame
    pareto: pd.DataFrame


def _rng(seed: int, stream: int, family: str) -> np.random.Generator:
    """A generator for one (stream, family): independent of which other families are run."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, FAMILIES.index(family))))


# ----------------------------------------------------------------------- (a) lower bound


def _lower_bound_row(alpha: float, n: int, cost_scale: float, lam: float, case: str) -> dict[str, object]:
    chain = lower_bound_chain(alpha, n, cost_scale)
    no_recall = float(solve_no_recall(chain, lam).value[0])
    recall = float(solve_recall(chain, lam).value[0])
    nr_closed, r_closed = lower_bound_values(alpha, n, cost_scale, lam)
    return {
        "case": case,
        "alpha": alpha,
        "n_stages": n,
        "cost_scale": cost_scale,
        "lam": lam,
        "no_recall": no_recall,
        "recall": recall,
        "prophet": float(solve_prophet(chain, lam).objective[0]),
        "no_recall_closed": nr_closed,
        "recall_closed": r_closed,
        "ratio": no_recall / recall,
        "ratio_closed": nr_closed / r_closed,
    }


def lower_bound_table(cfg: SyntheticStudyConfig) -> pd.DataFrame:
    """Table (a): one row per (case, alpha, n_stages, cost_scale).

    ``case`` is ``"generalised"`` (the grid of the config at ``lower_bound_lam``) or
    ``"theorem_3_4"`` (n=2, cost 0, lam=1, where the ratio is exactly ``alpha``). Columns
    ``no_recall``, ``recall``, ``prophet``: solver objectives; ``*_closed``: closed forms of
    :func:`ttamer.model.synthetic.lower_bound_values`; ``ratio`` = no_recall/recall (solver) and
    ``ratio_closed`` (closed form)."""
    rows = [
        _lower_bound_row(float(a), n, cs, cfg.lower_bound_lam, "generalised")
        for n in cfg.lower_bound_n_stages
        for cs in cfg.lower_bound_cost_scales
        for a in cfg.alphas
    ]
    rows += [_lower_bound_row(float(a), 2, 0.0, 1.0, "theorem_3_4") for a in cfg.alphas]
    return pd.DataFrame(rows)


def instance_name(row: Mapping[Any, Any]) -> str:
    """The file name of one lower-bound instance: ``<case>_n<stages>_c<cost scale>_a<alpha>.json``."""
    return f"{row['case']}_n{row['n_stages']}_c{float(row['cost_scale']):g}_a{float(row['alpha']):.6g}.json"


def write_lower_bound_instances(table: pd.DataFrame, folder: Path) -> list[str]:
    """Every instance of the lower-bound table as a chain JSON file in ``folder`` (atomic writes,
    readable by ``ttamer solve``); the file names, in table order."""
    names = []
    for row in table.to_dict("records"):
        name = instance_name(row)
        chain = lower_bound_chain(float(row["alpha"]), int(row["n_stages"]), float(row["cost_scale"]))
        save_chain(replace(chain, name=name.removesuffix(".json")), folder / name)
        names.append(name)
    return names


# ---------------------------------------------------------------------- (b) random chains


def _chains(cfg: SyntheticStudyConfig) -> Iterator[tuple[str, int, Chain]]:
    """``(family, index within family, chain)`` for every random chain of table (b)."""
    for family in cfg.families:
        rng = _rng(cfg.seed, _RATIO_STREAM, family)
        spec = SyntheticSpec(family, cfg.n_stages, cfg.n_states)
        for j in range(cfg.chains_per_family):
            yield family, j, random_chain(spec, rng)


def write_random_chains(cfg: SyntheticStudyConfig, folder: Path) -> list[str]:
    """Every random chain of table (b) as ``<family>_<index>.json`` in ``folder`` (readable by
    ``ttamer solve``; the same chains the table solved, regenerated from the seed)."""
    names = []
    for family, j, chain in _chains(cfg):
        name = f"{family}_{j}.json"
        save_chain(chain, folder / name)
        names.append(name)
    return names


def best_threshold_values(chain: Chain, lams: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Best single-threshold objective and its threshold for each weight: shapes ``(L,)``.

    Every candidate rule is evaluated once (its loss and cost do not depend on ``lam``)."""
    cands = threshold_candidates(chain)
    ev = evaluate_thresholds(chain, cands, float(lams[0]))
    obj = lams[:, None] * ev.expected_loss[None, :] + (1.0 - lams[:, None]) * ev.expected_cost[None, :]
    best = np.argmin(obj, axis=1)
    return obj[np.arange(lams.size), best], cands[best]


def chain_objectives(chain: Chain, lams: FloatArray, policies: tuple[str, ...]) -> dict[str, FloatArray]:
    """Optimal objective of each policy at each weight: ``{"j_<policy>": (L,)}``; with
    ``best_threshold`` also ``"threshold"``, the minimising loss threshold (L,)."""
    out = {"j_recall": solve_recall(chain, lams).value}
    if "no_recall" in policies:
        out["j_no_recall"] = solve_no_recall(chain, lams).value
    if "best_threshold" in policies:
        out["j_best_threshold"], out["threshold"] = best_threshold_values(chain, lams)
    if "prophet" in policies:
        out["j_prophet"] = solve_prophet(chain, lams).objective
    return out


def ratio_table(cfg: SyntheticStudyConfig) -> pd.DataFrame:
    """Table (b): one row per (chain, lam). Columns ``family``, ``chain`` (index within the
    family), ``name``, ``lam``, ``j_<policy>`` (optimal objectives) and
    ``ratio_<policy>`` = ``j_<policy> / j_recall`` for every other compared policy
    (>= 1 for no_recall and best_threshold, <= 1 for the prophet)."""
    lams = np.asarray(cfg.ratio_lams, dtype=np.float64)
    total = len(cfg.families) * cfg.chains_per_family
    frames = []
    for family, j, chain in tqdm(_chains(cfg), total=total, desc="random chains", disable=not cfg.progress):
        cols = chain_objectives(chain, lams, cfg.policies)
        frames.append(pd.DataFrame({"family": family, "chain": j, "name": chain.name, "lam": lams, **cols}))
    df = pd.concat(frames, ignore_index=True)
    for p in (p for p in SYNTHETIC_POLICIES if p in cfg.policies and p != "recall"):
        df[f"ratio_{p}"] = df[f"j_{p}"] / df["j_recall"]
    return df


def ratio_summary(ratios: pd.DataFrame) -> pd.DataFrame:
    """Per (family, lam, ratio): median, 90th percentile, max, and the fraction of chains
    where the ratio exceeds 1.01 (a gap of over 1% to the recall optimum)."""
    ratio_cols = [c for c in ratios.columns if c.startswith("ratio_")]
    long = ratios.melt(id_vars=["family", "lam"], value_vars=ratio_cols, var_name="ratio", value_name="value")
    g = long.groupby(["family", "lam", "ratio"], sort=False)["value"]
    return pd.DataFrame(
        {
            "median": g.median(),
            "p90": g.quantile(0.9),
            "max": g.max(),
            "frac_above_1pct": g.apply(lambda v: float((v > 1.01).mean())),
        }
    ).reset_index()


# ------------------------------------------------------------------------------ (c) Pareto


def pareto_chain(cfg: SyntheticStudyConfig) -> Chain:
    """The random chain of table (c), drawn from its own stream of ``seed``."""
    spec = SyntheticSpec(cfg.pareto_family, cfg.n_stages, cfg.n_states)
    return random_chain(spec, _rng(cfg.seed, _PARETO_STREAM, cfg.pareto_family))


def _points(policy: str, knob: str, values: FloatArray, loss: FloatArray, cost: FloatArray) -> pd.DataFrame:
    return pd.DataFrame(
        {"policy": policy, "knob": knob, "knob_value": values, "expected_loss": loss, "expected_cost": cost}
    )


def pareto_table(cfg: SyntheticStudyConfig) -> pd.DataFrame:
    """Table (c): one row per operating point on :func:`pareto_chain`. Columns ``chain``,
    ``policy``, ``knob`` (``"lam"`` or ``"threshold"``), ``knob_value``, ``expected_loss``
    (error probability) and ``expected_cost`` (fraction of the full chain), both exact."""
    chain, lams = pareto_chain(cfg), cfg.lam_grid
    frames = []
    ev = evaluate_recall_solution(chain, solve_recall(chain, lams))
    frames.append(_points("recall", "lam", lams, ev.expected_loss, ev.expected_cost))
    if "no_recall" in cfg.policies:
        ev = evaluate_no_recall_solution(chain, solve_no_recall(chain, lams))
        frames.append(_points("no_recall", "lam", lams, ev.expected_loss, ev.expected_cost))
    if "best_threshold" in cfg.policies:
        cands = threshold_candidates(chain)
        ev = evaluate_thresholds(chain, cands, 1.0)
        frames.append(_points("threshold", "threshold", cands, ev.expected_loss, ev.expected_cost))
    if "prophet" in cfg.policies:
        ev = solve_prophet(chain, lams)
        frames.append(_points("prophet", "lam", lams, ev.expected_loss, ev.expected_cost))
    df = pd.concat(frames, ignore_index=True)
    df.insert(0, "chain", chain.name)
    return df


# ---------------------------------------------------------------------------------- all


def run_synthetic_study(cfg: SyntheticStudyConfig) -> SyntheticStudyResult:
    """Compute the three tables."""
    return SyntheticStudyResult(lower_bound_table(cfg), ratio_table(cfg), pareto_table(cfg))


def summary_metrics(result: SyntheticStudyResult) -> dict[str, float]:
    """Flat scalar metrics for a tracker, keys like ``ratios/dirichlet/lam=0.9/ratio_no_recall/max``."""
    lb = result.lower_bound
    out = {
        "lower_bound/max_ratio": float(lb["ratio"].max()),
        "lower_bound/max_rel_error_closed_form": float(
            (np.abs(lb["ratio"] - lb["ratio_closed"]) / lb["ratio_closed"]).max()
        ),
        "ratios/n_chains": float(result.ratios.groupby(["family", "chain"]).ngroups),
    }
    for row in ratio_summary(result.ratios).itertuples(index=False):
        for stat in ("median", "max"):
            out[f"ratios/{row.family}/lam={row.lam:g}/{row.ratio}/{stat}"] = float(getattr(row, stat))
    return out
