"""Fitted models as JSON files (README: W&B), so that what a study fitted on each split can be
reloaded, inspected and solved again.

* A fitted chain (:class:`~ttamer.fitting.chain.FittedChain`) is a chain file (README: model)
  with three more keys: ``bin_edges`` (per stage, the interior edges of its score's bins on the
  fit split), ``fit_config`` (the :class:`~ttamer.fitting.chain.FitConfig`) and ``model``
  (``"fitted_chain"``). ``ttamer solve <file>`` and :func:`ttamer.model.chain.load_chain` read it
  as a chain; :func:`load_fitted_chain` gives back the chain with its bin edges, which map new
  samples to states.
* A fitted graph (:class:`~ttamer.fitting.graph.FittedGraph`) is a graph file (``nodes``,
  ``edges``; ``ttamer solve`` and :func:`ttamer.model.graph.load_graph` read it) with
  ``bin_edges``, ``fit_config``, ``structure``, ``parents`` and ``skips`` (the trace's stage
  costs, head costs and backbone groups: the true cost of what a policy runs).
* A posterior model (:class:`~ttamer.fitting.posterior.PosteriorModel`) is its fields as JSON
  (``model``: ``"posterior"``): score and incumbent edges, the estimated error probabilities,
  the compact transitions. It is not a chain file (the dense transitions can be large):
  ``load_posterior_model(path).chain(recall)`` is the chain its policy stops on.

Numbers are written with Python's shortest round-trip repr, so a model read back is equal to
the one written, bit for bit.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ttamer.errors import FieldError
from ttamer.fileio import atomic_write_bytes
from ttamer.fitting.chain import FitConfig, FittedChain
from ttamer.fitting.graph import FittedGraph
from ttamer.fitting.posterior import PosteriorConfig, PosteriorModel
from ttamer.loading import load_json
from ttamer.model.chain import chain_from_json_dict
from ttamer.model.graph import graph_from_json_dict
from ttamer.model.skip_costs import SkipStructure

FloatArray = NDArray[np.float64]


def _write(data: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    atomic_write_bytes(p, (json.dumps(data) + "\n").encode())
    return p


def _read(path: str | os.PathLike[str], model: str) -> dict[str, Any]:
    data = load_json(path)
    if not isinstance(data, dict) or data.get("model") != model:
        raise FieldError("model", f"{path} is not a {model} file (its 'model' key is not {model!r})")
    return data


def _floats(arrays: Any, dtype: type = np.float64) -> tuple[NDArray[Any], ...]:
    return tuple(np.asarray(a, dtype=dtype) for a in arrays)


def _lists(arrays: Any) -> list[Any]:
    return [np.asarray(a).tolist() for a in arrays]


def _config(cls: type, data: dict[str, Any]) -> Any:
    """The dataclass ``cls`` from its saved fields (lists back to tuples)."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names})


def save_fitted_chain(fitted: FittedChain, path: str | os.PathLike[str]) -> Path:
    """Write ``fitted`` as a chain file with its bin edges and fit config (module docstring)."""
    data = {
        **fitted.chain.to_json_dict(),
        "model": "fitted_chain",
        "bin_edges": _lists(fitted.edges),
        "fit_config": asdict(fitted.config),
    }
    return _write(data, path)


def load_fitted_chain(path: str | os.PathLike[str]) -> FittedChain:
    """A fitted chain written by :func:`save_fitted_chain`."""
    data = _read(path, "fitted_chain")
    return FittedChain(
        chain_from_json_dict(data), _floats(data["bin_edges"]), _config(FitConfig, data["fit_config"])
    )


def save_fitted_graph(fitted: FittedGraph, path: str | os.PathLike[str]) -> Path:
    """Write ``fitted`` as a graph file with its bin edges, fit config, structure, parents and
    skip costs (module docstring)."""
    s = fitted.skips
    data = {
        **fitted.graph.to_json_dict(),
        "model": "fitted_graph",
        "structure": fitted.structure,
        "parents": None if fitted.parents is None else list(fitted.parents),
        "bin_edges": _lists(fitted.edges),
        "fit_config": asdict(fitted.config),
        "skips": {"cost": s.cost.tolist(), "head": s.head.tolist(), "group": s.group.tolist()},
    }
    return _write(data, path)


def load_fitted_graph(path: str | os.PathLike[str]) -> FittedGraph:
    """A fitted graph written by :func:`save_fitted_graph`."""
    data = _read(path, "fitted_graph")
    s = data["skips"]
    skips = SkipStructure(
        np.asarray(s["cost"], float), np.asarray(s["head"], float), np.asarray(s["group"], np.int64)
    )
    parents = None if data["parents"] is None else tuple(data["parents"])
    return FittedGraph(
        graph_from_json_dict(data), data["structure"], _floats(data["bin_edges"]),
        _config(FitConfig, data["fit_config"]), skips, parents,
    )  # fmt: skip


POSTERIOR_ARRAYS = ("score_edges", "incumbent_edges", "p_cur", "p_inc", "observation")


def save_posterior_model(model: PosteriorModel, path: str | os.PathLike[str]) -> Path:
    """Write ``model``'s fields as JSON (module docstring)."""
    data: dict[str, Any] = {"model": "posterior", "config": asdict(model.config)}
    data.update({key: _lists(getattr(model, key)) for key in POSTERIOR_ARRAYS})
    data.update(successor=_lists(model.successor), initial=model.initial.tolist(), costs=model.costs.tolist())
    return _write(data, path)


def load_posterior_model(path: str | os.PathLike[str]) -> PosteriorModel:
    """A posterior model written by :func:`save_posterior_model`."""
    data = _read(path, "posterior")
    arrays = {key: _floats(data[key]) for key in POSTERIOR_ARRAYS}
    return PosteriorModel(
        config=_config(PosteriorConfig, data["config"]),
        initial=np.asarray(data["initial"], dtype=np.float64),
        successor=_floats(data["successor"], np.int64),
        costs=np.asarray(data["costs"], dtype=np.float64),
        **arrays,
    )
