"""Fitting closures and trees from a trace (``ttamer.fitting.graph``): the chain fit's states
and losses, transitions counted between any two stages (checked by a plain loop), costs from
the skip structure, and the refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ttamer.errors import FieldError
from ttamer.fitting.chain import FitConfig, fit_chain
from ttamer.fitting.graph import check_parents, fit_closure, fit_tree
from ttamer.model.graph import structure
from ttamer.model.skip_costs import GROUP_FIELD, HEAD_FIELD, independent_meta, skip_cost_matrix
from ttamer.traces.trace import Trace

CONFIG = FitConfig(n_bins=4, transition_prior=0.5)


def correlated_trace(seed: int, n_stages: int = 4, n_samples: int = 600, meta: dict | None = None) -> Trace:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n_samples)
    skill = rng.random(n_samples)
    conf = np.clip(
        0.5
        + 0.5 * skill[:, None] * np.linspace(0.4, 1.0, n_stages)
        + 0.1 * rng.random((n_samples, n_stages)),
        0,
        1,
    )
    correct = rng.random((n_samples, n_stages)) < conf
    pred = np.where(correct, labels[:, None], 1 - labels[:, None])
    cost = np.linspace(1.0, 4.0, n_stages)
    if meta is None:
        meta = {HEAD_FIELD: json.dumps((0.2 * cost).tolist()), GROUP_FIELD: json.dumps([0] * n_stages)}
    return Trace.build(labels, pred, conf, cost, [f"s{i}" for i in range(n_stages)], "ms", meta=meta)


def counted(states: np.ndarray, u: int, v: int, ku: int, kv: int, prior: float) -> np.ndarray:
    counts = np.full((ku, kv), prior)
    for a, b in zip(states[:, u], states[:, v], strict=True):
        counts[a, b] += 1
    return counts / counts.sum(axis=1, keepdims=True)


def test_closure_fit_agrees_with_the_chain_fit_and_counts_every_pair() -> None:
    trace = correlated_trace(0)
    fitted = fit_closure(trace, CONFIG)
    chain = fit_chain(trace, CONFIG).chain
    g = fitted.graph
    assert structure(g) == "closure" and g.names == trace.stage_names
    for v in range(4):
        np.testing.assert_array_equal(g.nodes[v], chain.losses[v])
    np.testing.assert_allclose(g.edge(None, 0).transition[0], chain.initial)
    for u in range(3):
        np.testing.assert_allclose(g.edge(u, u + 1).transition, chain.transitions[u])
        assert g.edge(u, u + 1).cost == pytest.approx(chain.costs[u + 1])
    states = fitted.states(trace)
    ks = g.n_states
    for u in range(4):
        for v in range(u + 1, 4):
            np.testing.assert_allclose(g.edge(u, v).transition, counted(states, u, v, ks[u], ks[v], 0.5))
    expected = skip_cost_matrix(trace) / trace.cost.sum()
    for e in g.edges:
        assert e.cost == pytest.approx(expected[0 if e.source is None else e.source + 1, e.target])
    # skipping is cheaper than walking: one backbone, heads 20% of each stage
    assert g.edge(0, 3).cost < g.edge(0, 1).cost + g.edge(1, 2).cost + g.edge(2, 3).cost
    np.testing.assert_array_equal(
        fitted.estimated_loss(trace), fit_chain(trace, CONFIG).estimated_loss(trace)
    )


def test_tree_fit_costs_and_transitions() -> None:
    trace = correlated_trace(1, meta=independent_meta(4))
    fitted = fit_tree(trace, [None, 0, 0, 0], CONFIG)
    g = fitted.graph
    assert structure(g) == "tree" and fitted.parents == (None, 0, 0, 0)
    np.testing.assert_allclose([g.edge(None, 0).cost, *(g.edge(0, v).cost for v in (1, 2, 3))],
                               trace.cost / trace.cost.sum())  # fmt: skip
    states = fitted.states(trace)
    for v in (1, 2, 3):
        np.testing.assert_allclose(
            g.edge(0, v).transition, counted(states, 0, v, g.n_states[0], g.n_states[v], 0.5)
        )


def test_refusals() -> None:
    trace = correlated_trace(2)
    with pytest.raises(FieldError, match="agreement"):
        fit_closure(trace, FitConfig(n_bins=4, agreement=True))
    for parents, match in [
        ([None, 0, 0], "3 entries for 4"),
        ([None, 0, 5, 0], "parent 5 is not a stage"),
        ([None, 2, 1, 0], "cycle"),
        ([1, 0, 0, 0], "cycle"),
    ]:
        with pytest.raises(FieldError, match=match):
            check_parents(parents, 4)
    with pytest.raises(FieldError, match="parents"):
        fit_tree(trace, [None, 0, 0], CONFIG)
    bare = Trace.build(trace.labels, trace.pred, trace.conf, trace.cost)
    with pytest.raises(Exception, match="exit_head_cost"):
        fit_closure(bare, CONFIG)
    assert fit_closure(bare, CONFIG, assume="independent").graph.edge(0, 3).cost == pytest.approx(
        trace.cost[3] / trace.cost.sum()
    )
