"""Soft state aggregation (ttamer.solvers.aggregation): identity aggregation is exact, the lifted
policy never beats the optimum under exact evaluation, the gap shrinks with q on average, the
meta chain is a valid chain, and bad options name their field."""

from __future__ import annotations

from typing import cast

import numpy as np
import pytest

from tests._chains import random_chain, random_sized_chain
from ttamer.errors import FieldError
from ttamer.model.chain import Chain
from ttamer.model.synthetic import FAMILIES, SyntheticSpec, random_chains, shared_support_chain
from ttamer.solvers import ChainPolicy, RecallIndexPolicy, evaluate_policy, solve_recall
from ttamer.solvers.aggregation import (
    AggregatedChain,
    aggregate_chain,
    evaluate_aggregated_solution,
    membership_matrix,
    solve_recall_aggregated,
)

LAMS = np.array([0.0, 0.2, 0.5, 0.8, 1.0])


def _gap(chain: Chain, q: int, width: float, lam: np.ndarray = LAMS) -> np.ndarray:
    exact = solve_recall(chain, lam)
    sol = solve_recall_aggregated(chain, lam, q, width=width)
    objective = evaluate_aggregated_solution(chain, sol).objective
    return (objective - exact.value) / np.maximum(exact.value, 1e-300)


# ------------------------------------------------------------------------ identity aggregation


@pytest.mark.parametrize("width", [0.0, 0.5, 3.0])
def test_identity_aggregation_reproduces_exact_solver(width: float) -> None:
    rng = np.random.default_rng(11)
    for _ in range(25):
        chain = random_sized_chain(rng, n_max=5, k_max=7)
        q = max(chain.n_states) + int(rng.integers(0, 3))  # q >= every K_i
        exact = solve_recall(chain, LAMS)
        sol = solve_recall_aggregated(chain, LAMS, q, width=width)
        np.testing.assert_array_equal(sol.meta.value, exact.value)
        assert len(sol.index) == len(exact.index)
        for got, want in zip(sol.index, exact.index, strict=True):
            assert got.shape == want.shape
            np.testing.assert_array_equal(got, want)
        for m, k in zip(sol.aggregation.membership, chain.n_states, strict=True):
            np.testing.assert_array_equal(m, np.eye(k))
        ev = evaluate_aggregated_solution(chain, sol)
        np.testing.assert_allclose(ev.objective, exact.value, rtol=1e-12, atol=1e-14)


def test_partial_identity_when_stages_differ_in_size() -> None:
    """Stages with K_i <= q are kept as they are, larger ones aggregated to q meta-states."""
    chain = random_chain(np.random.default_rng(3), 3, [2, 9, 4])
    agg = aggregate_chain(chain, 4, width=0.0)
    assert agg.chain.n_states == (2, 4, 4)
    np.testing.assert_array_equal(agg.chain.losses[0], chain.losses[0])
    np.testing.assert_array_equal(agg.chain.losses[2], chain.losses[2])
    np.testing.assert_array_equal(agg.chain.initial, chain.initial)


# ------------------------------------------------------------------------ the gap is never < 0


@pytest.mark.parametrize("width", [0.0, 0.3, 1.0, 4.0])
def test_lifted_policy_never_beats_the_optimum(width: float) -> None:
    rng = np.random.default_rng(5)
    for _ in range(40):
        chain = random_sized_chain(rng, n_max=5, k_max=8)
        for q in (1, 2, 3, 5):
            gap = _gap(chain, q, width)
            assert (gap >= -1e-12).all(), (q, width, gap)


def test_batched_evaluation_matches_evaluate_policy() -> None:
    rng = np.random.default_rng(8)
    for _ in range(10):
        chain = random_sized_chain(rng, n_max=4, k_max=6)
        sol = solve_recall_aggregated(chain, LAMS, 2)
        batched = evaluate_aggregated_solution(chain, sol)
        for j, lam in enumerate(LAMS):
            policy = sol.policy(j)
            assert isinstance(policy, RecallIndexPolicy)
            one = evaluate_policy(chain, cast(ChainPolicy, policy), float(lam))
            np.testing.assert_allclose(one.objective[0], batched.objective[j], rtol=1e-12, atol=1e-15)


def test_gap_shrinks_with_q_on_average() -> None:
    qs = [1, 2, 3, 6, 12, 24]
    for width in (0.0, 0.5):
        gaps = []
        for family in FAMILIES:
            for chain in random_chains(SyntheticSpec(family, 4, 24), 4, seed=7):
                gaps.append([_gap(chain, q, width, np.array([0.2, 0.5, 0.8, 1.0])).mean() for q in qs])
        mean = np.mean(gaps, axis=0)
        assert (np.diff(mean) <= 1e-12).all(), (width, mean)
        assert mean[0] > 0.01 and abs(mean[-1]) <= 1e-12, (width, mean)


def test_large_chain_small_gap() -> None:
    """On a 300-state shared-support chain, 60 meta-states already get within 1% of J*."""
    chain = shared_support_chain(5, 300, seed=1)
    gap = _gap(chain, 60, 0.5, np.array([0.3, 0.7, 0.95]))
    assert (gap >= -1e-12).all() and (gap < 0.01).all(), gap


def test_meta_value_is_not_a_bound() -> None:
    """The meta chain's own optimum can lie on either side of J* (only the lifted policy's
    exact evaluation is certified): above on a shared-support chain, below on some improving
    chains."""
    lam = np.array([0.3, 0.7, 0.95])
    chain = shared_support_chain(5, 200, seed=0)
    over = solve_recall_aggregated(chain, lam, 10).meta.value - solve_recall(chain, lam).value
    assert (over > 0).all()
    under = [
        (solve_recall_aggregated(c, lam, 2).meta.value - solve_recall(c, lam).value).min()
        for c in random_chains(SyntheticSpec("improving", 5, 24), 5, seed=3)
    ]
    assert min(under) < -1e-6


# ----------------------------------------------------------------------- the aggregated chain


@pytest.mark.parametrize("width", [0.0, 0.5, 2.0])
def test_aggregated_chain_is_valid(width: float) -> None:
    rng = np.random.default_rng(2)
    for _ in range(20):
        chain = random_sized_chain(rng, n_max=5, k_max=9)
        q = int(rng.integers(1, 6))
        agg = aggregate_chain(chain, q, width=width)
        assert isinstance(agg, AggregatedChain)
        meta = agg.chain
        assert meta.n_stages == chain.n_stages
        assert meta.n_states == tuple(min(q, k) for k in chain.n_states)
        np.testing.assert_allclose(meta.initial.sum(), 1.0, atol=1e-12)
        for t in meta.transitions:
            np.testing.assert_allclose(t.sum(axis=1), 1.0, atol=1e-12)
            assert (t >= 0).all()
        np.testing.assert_array_equal(meta.costs, chain.costs)
        for i in range(chain.n_stages):
            m, d = agg.membership[i], agg.disaggregation[i]
            assert m.shape == (chain.n_states[i], meta.n_states[i])
            assert d.shape == (meta.n_states[i], chain.n_states[i])
            np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-12)
            np.testing.assert_allclose(d.sum(axis=1), 1.0, atol=1e-12)
            assert (m.sum(axis=0) > 0).all()  # no empty meta-state
            lo, hi = chain.losses[i].min(), chain.losses[i].max()
            assert (meta.losses[i] >= lo - 1e-12).all() and (meta.losses[i] <= hi + 1e-12).all()
        # a valid chain by the library's own validation
        Chain.build(list(meta.losses), meta.initial, list(meta.transitions), meta.costs)


def test_meta_chain_preserves_marginals() -> None:
    """μ̄ = μ M_0 and, with hard blocks, p̄_i = p_i M_i propagates through T̄ exactly."""
    chain = random_chains(SyntheticSpec("correlated", 5, 20), 1, seed=4)[0]
    agg = aggregate_chain(chain, 5, width=0.0)
    p_bar = agg.chain.initial
    for i, t in enumerate(agg.chain.transitions):
        np.testing.assert_allclose(p_bar, agg.marginals[i] @ agg.membership[i], atol=1e-12)
        p_bar = p_bar @ t
    np.testing.assert_allclose(p_bar, agg.marginals[-1] @ agg.membership[-1], atol=1e-12)


def test_hard_membership_blocks_and_soft_limit() -> None:
    losses = np.random.default_rng(0).random(12)
    hard = membership_matrix(losses, 5, 0.0)
    assert set(np.unique(hard)) == {0.0, 1.0}
    block = hard.argmax(axis=1)
    order = np.argsort(losses)
    assert (np.diff(block[order]) >= 0).all()  # contiguous blocks by loss
    assert sorted(np.bincount(block).tolist()) == [2, 2, 2, 3, 3]
    np.testing.assert_allclose(membership_matrix(losses, 5, 1e-3), hard, atol=1e-12)
    soft = membership_matrix(losses, 5, 0.7)
    assert (soft > 0).sum() > (hard > 0).sum()
    np.testing.assert_allclose(soft.sum(axis=1), 1.0)


def test_lift_and_policy_shapes() -> None:
    chain = shared_support_chain(4, 40, seed=3)
    sol = solve_recall_aggregated(chain, [0.3, 0.9], 1)
    assert [x.shape for x in sol.index] == [(2, 40)] * 4
    assert np.isinf(sol.index[-1]).all()
    for x in sol.index[:-1]:  # one meta-state per stage: one threshold per stage
        assert np.isfinite(x).all()
        assert (x == x[:, :1]).all()
    stages_run, returned = sol.policy(1).run(states=[0, 1, 2, 3], losses=[c[0] for c in chain.losses])
    assert 1 <= stages_run <= 4 and 0 <= returned < stages_run


def test_reusing_an_aggregation() -> None:
    chain = shared_support_chain(3, 30, seed=2)
    agg = aggregate_chain(chain, 6)
    a = solve_recall_aggregated(chain, 0.5, 6, aggregation=agg)
    b = solve_recall_aggregated(chain, 0.5, 6)
    for x, y in zip(a.index, b.index, strict=True):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(FieldError) as err:
        solve_recall_aggregated(shared_support_chain(3, 20, seed=2), 0.5, 6, aggregation=agg)
    assert err.value.field == "aggregation"


# --------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("q", [0, -1, -10, 2.5, True, "5", None])
def test_bad_q_raises_field_error(q: object) -> None:
    chain = shared_support_chain(2, 5, seed=0)
    with pytest.raises(FieldError) as err:
        aggregate_chain(chain, q)  # type: ignore[arg-type]
    assert err.value.field == "q"
    assert "q" in str(err.value)
    with pytest.raises(FieldError) as err2:
        solve_recall_aggregated(chain, 0.5, q)  # type: ignore[arg-type]
    assert err2.value.field == "q"


@pytest.mark.parametrize("width", [-0.1, float("nan"), float("inf"), "wide"])
def test_bad_width_raises_field_error(width: object) -> None:
    chain = shared_support_chain(2, 5, seed=0)
    with pytest.raises(FieldError) as err:
        aggregate_chain(chain, 2, width=width)  # type: ignore[arg-type]
    assert err.value.field == "width"


def test_numpy_integer_q_is_accepted() -> None:
    chain = shared_support_chain(2, 8, seed=0)
    assert aggregate_chain(chain, np.int64(3)).chain.n_states == (3, 3)  # type: ignore[arg-type]
