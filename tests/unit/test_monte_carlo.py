"""Exact policy evaluation against Monte Carlo simulation (README: model): the exact expected
objective, loss and cost must lie within 4.5 standard errors of the simulated means, and the
exact stop distribution within 4.5 binomial standard errors of the simulated frequencies."""

from __future__ import annotations

import numpy as np
import pytest
from _chains import random_chain

from ttamer.solvers import (
    evaluate_policy,
    simulate,
    solve_no_recall,
    solve_recall,
    static_policy,
    threshold_policy,
)

N_SAMPLES = 200_000
Z = 4.5

# (seed, states per stage): n up to 6, K up to 8
SHAPES = [
    (1, [8, 8, 8, 8, 8, 8]),
    (2, [3, 5, 8, 2, 7, 4]),
    (3, [1, 6, 6, 6]),
    (4, [8, 1, 8]),
    (5, [5, 5]),
    (6, [7]),
    (7, [2, 8, 3, 8, 1, 6]),
    (8, [4, 4, 4, 4, 4]),
]


def make_case(seed, ks):
    rng = np.random.default_rng(1000 + seed)
    chain = random_chain(rng, len(ks), ks)
    lam = float(rng.uniform(0.2, 0.95))
    return chain, lam, rng


def policies(chain, lam, rng):
    """The policies under test, by name."""
    all_losses = np.concatenate(chain.losses)
    t = float(np.quantile(all_losses, 0.4))
    return {
        "recall_index": solve_recall(chain, lam).policy(0),
        "no_recall": solve_no_recall(chain, lam).policy(0),
        "threshold": threshold_policy(chain, t),
        "threshold_with_recall": threshold_policy(chain, t, recall=True),
        "static": static_policy(chain, int(rng.integers(chain.n_stages))),
    }


def assert_within(exact, mc, se, what):
    slack = Z * se + 1e-12 * (1.0 + abs(exact))
    assert abs(exact - mc) <= slack, f"{what}: exact {exact}, simulated {mc} +- {se} (|diff| > {slack})"


CASES = [
    pytest.param(seed, ks, name, id=f"seed{seed}-{name}")
    for seed, ks in SHAPES
    for name in ("recall_index", "no_recall", "threshold", "threshold_with_recall", "static")
]


@pytest.mark.parametrize(("seed", "ks", "name"), CASES)
def test_exact_evaluation_matches_simulation(seed, ks, name):
    chain, lam, rng = make_case(seed, ks)
    policy = policies(chain, lam, rng)[name]
    ev = evaluate_policy(chain, policy, lam)
    mc = simulate(chain, policy, lam, N_SAMPLES, seed=seed)
    assert mc.n_samples == N_SAMPLES
    assert_within(ev.objective[0], mc.objective, mc.objective_se, "objective")
    assert_within(ev.expected_loss[0], mc.expected_loss, mc.expected_loss_se, "expected loss")
    assert_within(ev.expected_cost[0], mc.expected_cost, mc.expected_cost_se, "expected cost")

    p = ev.stop_distribution[0]
    assert p.shape == (chain.n_stages,)
    assert abs(p.sum() - 1.0) <= 1e-12 and abs(mc.stop_distribution.sum() - 1.0) <= 1e-12
    binom_se = np.sqrt(p * (1.0 - p) / N_SAMPLES)
    diff = np.abs(mc.stop_distribution - p)
    assert (diff <= Z * binom_se + 1e-12).all(), f"stop distribution {p} vs {mc.stop_distribution}"
    # consistency of the simulated numbers among themselves
    assert abs(mc.objective - (lam * mc.expected_loss + (1.0 - lam) * mc.expected_cost)) <= 1e-9


def test_simulation_is_seeded_and_its_error_shrinks():
    chain, lam, rng = make_case(*SHAPES[1])
    policy = policies(chain, lam, rng)["recall_index"]
    a = simulate(chain, policy, lam, 20_000, seed=11)
    b = simulate(chain, policy, lam, 20_000, seed=11)
    c = simulate(chain, policy, lam, 20_000, seed=12)
    assert a.objective == b.objective and a.objective_se == b.objective_se
    assert a.objective != c.objective
    big = simulate(chain, policy, lam, 320_000, seed=11)
    assert 0 < big.objective_se < a.objective_se / 3.0  # SE scales like 1/sqrt(N): ratio ~4


def test_simulation_detects_a_wrong_policy_value():
    """Sanity check of the test's power: a policy's exact value is not within 4.5 SE of a
    clearly different policy's simulation."""
    chain, lam, rng = make_case(*SHAPES[0])
    pols = policies(chain, lam, rng)
    first = evaluate_policy(chain, static_policy(chain, 0), lam).objective[0]
    last = evaluate_policy(chain, static_policy(chain, chain.n_stages - 1), lam).objective[0]
    mc_last = simulate(chain, static_policy(chain, chain.n_stages - 1), lam, N_SAMPLES, seed=3)
    assert abs(first - last) > 10 * mc_last.objective_se  # the instance separates them
    assert abs(first - mc_last.objective) > Z * mc_last.objective_se
    assert pols["recall_index"].recall and not pols["no_recall"].recall
