"""Theorem 3.4's instance (README: model): n = 2, zero costs, lam = 1; stage 1 has one state with
loss 1/a^2, stage 2 has loss 0 w.p. 1 - 1/a and 1/a w.p. 1/a. Every recall-free rule pays
1/a^2, the recall optimum and the prophet pay 1/a^3: the ratio is a."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ttamer.model.chain import Chain
from ttamer.solvers import (
    best_threshold,
    evaluate_policy,
    evaluate_stop_sets,
    evaluate_thresholds,
    solve_no_recall,
    solve_prophet,
    solve_recall,
    threshold_candidates,
)

ALPHAS = [2.0, 10.0, 100.0, 1000.0]


def lower_bound_chain(a: float) -> Chain:
    return Chain.build(
        losses=[[1.0 / a**2], [0.0, 1.0 / a]],
        initial=[1.0],
        transitions=[[[1.0 - 1.0 / a, 1.0 / a]]],
        costs=[0.0, 0.0],
        name=f"theorem-3.4-alpha-{a:g}",
    )


def rel_close(x, y, tol):
    return abs(x - y) <= tol * abs(y)


@pytest.mark.parametrize("a", ALPHAS)
def test_no_recall_over_recall_ratio_is_alpha(a):
    chain = lower_bound_chain(a)
    rec = solve_recall(chain, 1.0).value[0]
    nor = solve_no_recall(chain, 1.0).value[0]
    assert rel_close(rec, 1.0 / a**3, 1e-9), rec
    assert rel_close(nor, 1.0 / a**2, 1e-9), nor
    assert rel_close(nor / rec, a, 1e-9), nor / rec
    # the recall policy really runs stage 2 and keeps stage 1's answer when stage 2 is worse
    ev = evaluate_policy(chain, solve_recall(chain, 1.0).policy(0), 1.0)
    assert rel_close(ev.objective[0], 1.0 / a**3, 1e-9)
    assert rel_close(ev.stop_distribution[0, 1], 1.0, 1e-12)


@pytest.mark.parametrize("a", ALPHAS)
def test_every_threshold_rule_pays_one_over_alpha_squared(a):
    chain = lower_bound_chain(a)
    ts = np.concatenate([threshold_candidates(chain), np.linspace(-1.0, 1.0, 41), [1.0 / a**2, 1.0 / a]])
    ev = evaluate_thresholds(chain, ts, 1.0)
    for t, obj in zip(ts, ev.objective, strict=True):
        assert rel_close(obj, 1.0 / a**2, 1e-9), f"threshold {t} pays {obj}"
    _, ev_best = best_threshold(chain, 1.0)
    assert rel_close(ev_best.objective.min(), 1.0 / a**2, 1e-9)
    # and so does every recall-free rule: the only choice is stopping at stage 1 or not
    both = evaluate_stop_sets(chain, (np.array([[True], [False]]), np.ones((2, 2), bool)), 1.0)
    assert np.allclose(both.objective, 1.0 / a**2, rtol=1e-9, atol=0)


@pytest.mark.parametrize("a", ALPHAS)
def test_prophet_pays_one_over_alpha_cubed(a):
    chain = lower_bound_chain(a)
    pro = solve_prophet(chain, 1.0)
    assert rel_close(pro.objective[0], 1.0 / a**3, 1e-9), pro.objective[0]
    assert rel_close(pro.expected_loss[0], 1.0 / a**3, 1e-9)


def test_ratio_grows_without_bound():
    chains = [lower_bound_chain(a) for a in ALPHAS]
    ratios = [solve_no_recall(c, 1.0).value[0] / solve_recall(c, 1.0).value[0] for c in chains]
    assert all(r2 > 4 * r1 for r1, r2 in itertools.pairwise(ratios))
