"""The ordering J*_prophet <= J*_recall <= J*_no-recall <= J(any threshold rule),
on random instances of varied size, plus the consistency of the solvers' outputs with the
exact evaluators and of vectorised solves over lam with one solve per lam."""

from __future__ import annotations

import numpy as np
import pytest
from _chains import assert_close, random_sized_chain

from ttamer.solvers import (
    StopSetPolicy,
    best_threshold,
    evaluate_no_recall_solution,
    evaluate_policy,
    evaluate_recall_solution,
    evaluate_thresholds,
    solve_no_recall,
    solve_prophet,
    solve_recall,
    threshold_candidates,
    threshold_policy,
)

N_INSTANCES = 220
SLACK = 1e-12


def make_cases():
    rng = np.random.default_rng(777)
    cases = []
    for k in range(N_INSTANCES):
        chain = random_sized_chain(rng, n_max=8, k_max=10)
        lams = np.concatenate([[0.0, 1.0], rng.random(3)])
        cases.append(pytest.param(chain, lams, id=f"inst{k}-n{chain.n_stages}"))
    return cases


CASES = make_cases()


def assert_le(a, b, what):
    a, b = np.asarray(a), np.asarray(b)
    ok = a <= b + SLACK * (1.0 + np.abs(b))
    assert ok.all(), f"{what}: {a} is not <= {b}"


def test_instances_vary_in_size():
    sizes = {c.values[0].n_stages for c in CASES}
    assert sizes == set(range(1, 9))
    assert max(max(c.values[0].n_states) for c in CASES) == 10


@pytest.mark.parametrize(("chain", "lams"), CASES)
def test_prophet_recall_no_recall_threshold_ordering(chain, lams):
    pro = solve_prophet(chain, lams).objective
    rec = solve_recall(chain, lams).value
    nor = solve_no_recall(chain, lams).value
    assert_le(pro, rec, "prophet <= recall")
    assert_le(rec, nor, "recall <= no recall")
    for j, lam in enumerate(lams):
        t, ev = best_threshold(chain, lam)
        best = ev.objective.min()
        assert_le(nor[j], ev.objective, f"no recall <= every threshold rule (lam={lam})")
        assert_close(
            evaluate_policy(chain, threshold_policy(chain, t), lam).objective[0],
            best,
            1e-12,
            "best_threshold's t achieves the minimum",
        )
        # the threshold rule with recall is a recall policy: the recall optimum beats it too
        with_recall = evaluate_policy(chain, threshold_policy(chain, t, recall=True), lam).objective[0]
        assert_le(rec[j], with_recall, "recall <= threshold rule with recall")
        assert_le(with_recall, best, "recall can only help a threshold rule")


@pytest.mark.parametrize(("chain", "lams"), CASES)
def test_solutions_agree_with_exact_evaluation(chain, lams):
    rec = solve_recall(chain, lams)
    nor = solve_no_recall(chain, lams)
    pro = solve_prophet(chain, lams)
    ev_rec = evaluate_recall_solution(chain, rec)
    assert_close(ev_rec.objective, rec.value, 1e-12, "evaluate_recall_solution vs value")
    assert_close(
        evaluate_no_recall_solution(chain, nor).objective,
        nor.value,
        1e-12,
        "evaluate_no_recall_solution vs value",
    )
    assert_close(ev_rec.stop_distribution.sum(axis=1), np.ones(lams.size), 1e-12, "stop distribution sums")
    assert_close(
        pro.objective,
        lams * pro.expected_loss + (1 - lams) * pro.expected_cost,
        1e-12,
        "prophet objective = lam*loss + (1-lam)*cost",
    )
    for j, lam in enumerate(lams):
        # the no-recall stop sets, run with recall, form a recall policy: never better than optimal
        stop_sets = tuple(s[j] for s in nor.stop)
        with_recall = evaluate_policy(chain, StopSetPolicy(stop_sets, recall=True), lam).objective[0]
        assert_le(rec.value[j], with_recall, "recall optimum <= no-recall stop sets with recall")
        assert_le(with_recall, nor.value[j], "recall never hurts a stopping rule")


@pytest.mark.parametrize(("chain", "lams"), CASES)
def test_vectorised_lam_equals_per_lam(chain, lams):
    rec = solve_recall(chain, lams)
    nor = solve_no_recall(chain, lams)
    pro = solve_prophet(chain, lams)
    np.testing.assert_array_equal(rec.lam, lams)
    for j, lam in enumerate(lams):
        one = solve_recall(chain, lam)
        assert_close(rec.value[j], one.value[0], 1e-12, f"recall value at lam={lam}")
        for i in range(chain.n_stages):
            a, b = rec.index[i][j], one.index[i][0]
            assert np.array_equal(np.isinf(a), np.isinf(b)), f"index infinities at stage {i + 1}"
            fin = np.isfinite(a)
            assert_close(a[fin], b[fin], 1e-9, f"index at stage {i + 1}, lam={lam}")
        assert rec.policy(j).lam == lam
        assert_close(
            solve_no_recall(chain, lam).value[0], nor.value[j], 1e-12, f"no-recall value at lam={lam}"
        )
        p1 = solve_prophet(chain, lam)
        assert_close(p1.objective[0], pro.objective[j], 1e-12, f"prophet at lam={lam}")
        assert_close(p1.expected_loss[0], pro.expected_loss[j], 1e-12, f"prophet loss at lam={lam}")
        t_ev = evaluate_thresholds(chain, threshold_candidates(chain), lam)
        assert_close(t_ev.objective.min(), best_threshold(chain, lam)[1].objective.min(), 1e-12, "thresholds")
