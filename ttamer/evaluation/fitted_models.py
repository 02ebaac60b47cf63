"""The models the scored policies fitted, split by split, recomputed and written as files
(README: W&B).

A trace study fits its models on the fit part of each split and throws them away; here they are
fitted again from the very same splits (:func:`ttamer.evaluation.scoring.fit_test_splits` of the
retargeted trace, the same seed and fit fraction) with the same fit config, so each file is the
model the scored policy used:

* ``chain/split_<k>.json``: the chain of ``recall`` and ``no_recall``
  (:func:`ttamer.fitting.chain.fit_chain`), a chain file with its bin edges;
* ``posterior_recall/split_<k>.json``, ``posterior_no_recall/split_<k>.json``: the posterior
  model of the configuration cross-validation chose on that split (the points table's
  ``selected``);
* ``closure/split_<k>.json`` or ``tree/split_<k>.json`` (graph studies): the fitted graph.

File formats: :mod:`ttamer.fitting.model_files`. Fitting is cheap next to scoring (no
cross-validation is redone: the chosen configuration is read from the points table).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ttamer.evaluation.scoring import ScoringConfig, fit_test_splits, resolve_policies, retarget
from ttamer.fitting.chain import FittedChain, fit_chain
from ttamer.fitting.graph import FittedGraph, fit_closure, fit_tree
from ttamer.fitting.model_files import save_fitted_chain, save_fitted_graph, save_posterior_model
from ttamer.fitting.posterior import PosteriorConfig, PosteriorModel, fit_posterior
from ttamer.policies.posterior import PosteriorRecallPolicy, describe
from ttamer.studies.graph_study import GraphStudyConfig
from ttamer.traces.trace import Trace, repeated_splits

CHAIN_POLICIES = ("recall", "no_recall")
"""Policies that use the fitted chain of :func:`ttamer.fitting.chain.fit_chain`."""


@dataclass(frozen=True)
class SplitModel:
    """One fitted model: ``kind`` (``chain``, ``posterior_recall``, ``posterior_no_recall``,
    ``closure`` or ``tree``), the 0-based ``split`` it was fitted on, and the model."""

    kind: str
    split: int
    model: FittedChain | FittedGraph | PosteriorModel

    def file_name(self) -> str:
        return f"{self.kind}/split_{self.split}.json"


def chosen_posterior_config(policy: PosteriorRecallPolicy, selected: str) -> PosteriorConfig:
    """The grid point of ``policy`` that cross-validation chose, from the points table's
    ``selected`` text (empty: the grid has one point)."""
    configs = policy.configs()
    if len(configs) == 1:
        return configs[0]
    match = [c for c in configs if describe(c) == selected]
    if not match:
        raise ValueError(f"{policy.name}: {selected!r} is not a point of its grid")
    return match[0]


def _selected(points: pd.DataFrame, policy: str, split: int) -> str:
    rows = points[(points["policy"] == policy) & (points["split"] == split)]
    value = rows["selected"].iloc[0] if len(rows) else ""
    return "" if pd.isna(value) else str(value)


def chain_models(trace: Trace, scoring: ScoringConfig, points: pd.DataFrame) -> list[SplitModel]:
    """The fitted chain (when ``recall`` or ``no_recall`` was scored) and the chosen posterior
    models (when a posterior policy was scored) of every split of a trace study whose points
    table is ``points``."""
    scored = set(points["policy"].astype(str))
    posterior = [
        p for p in resolve_policies(scoring.policies)
        if isinstance(p, PosteriorRecallPolicy) and p.name in scored
    ]  # fmt: skip
    want_chain = bool(scored & set(CHAIN_POLICIES))
    out: list[SplitModel] = []
    for r, split in enumerate(fit_test_splits(retarget(trace, scoring.target), scoring)):
        if not (want_chain or posterior):
            break
        fit, _ = split()
        if want_chain:
            out.append(SplitModel("chain", r, fit_chain(fit, scoring.fit_config)))
        for policy in posterior:
            config = chosen_posterior_config(policy, _selected(points, policy.name, r))
            out.append(SplitModel(policy.name, r, fit_posterior(fit, config)))
    return out


def graph_models(trace: Trace, config: GraphStudyConfig, points: pd.DataFrame) -> list[SplitModel]:
    """The chain policies' models (:func:`chain_models`) and the fitted graph of every split of
    a graph study whose points table is ``points``."""
    scoring = ScoringConfig(
        config.chain_policies, config.n_splits, config.fit_fraction, config.seed, config.fit_config,
        progress=False,
    )  # fmt: skip
    out = chain_models(trace, scoring, points)
    for r, (fit_idx, _) in enumerate(
        repeated_splits(trace.n_samples, config.n_splits, config.fit_fraction, config.seed)
    ):
        fit = trace.subset(fit_idx)
        if config.structure == "skip":
            out.append(SplitModel("closure", r, fit_closure(fit, config.fit_config)))
        else:
            assert config.parents is not None
            out.append(SplitModel("tree", r, fit_tree(fit, config.parents, config.fit_config)))
    return out


def write_models(models: Sequence[SplitModel], folder: str | os.PathLike[str]) -> list[Path]:
    """Every model as ``<folder>/<kind>/split_<k>.json`` (module docstring); returns the paths.
    Model files of an earlier run that these do not replace (fewer splits, other policies) are
    removed once the new ones are written, so the folder holds this run's models only."""
    paths = _write_each(models, Path(folder))
    for old in Path(folder).glob("*/split_*.json"):
        if old not in paths:
            old.unlink()
    for sub in Path(folder).iterdir():
        if sub.is_dir() and not any(sub.iterdir()):
            sub.rmdir()
    return paths


def _write_each(models: Sequence[SplitModel], folder: Path) -> list[Path]:
    paths = []
    for m in models:
        path = folder / m.file_name()
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(m.model, FittedChain):
            save_fitted_chain(m.model, path)
        elif isinstance(m.model, FittedGraph):
            save_fitted_graph(m.model, path)
        else:
            save_posterior_model(m.model, path)
        paths.append(path)
    return paths
