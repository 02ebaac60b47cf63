"""Exact solvers against an independent brute force on tiny chains (README: model).

Nothing here uses ``ttamer.solvers`` to compute an expected value: paths are enumerated one by
one, every deterministic adaptive policy (a stop/continue decision for every history
``(s_1..s_i)``, ``i < n``) is enumerated, and optimal values are also recomputed by a backward
induction over full histories (no Markov shortcut).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from _chains import assert_close, random_chain

from ttamer.model.chain import Chain
from ttamer.solvers import (
    evaluate_no_recall_solution,
    evaluate_policy,
    evaluate_recall_solution,
    solve_no_recall,
    solve_prophet,
    solve_recall,
)

N_INSTANCES = 240
TOL = 1e-12


# ----------------------------------------------------------------------------- brute force


def enumerate_paths(chain):
    """All state paths ``(s_1..s_n)`` with their probabilities (zero-probability ones included)."""
    ranges = [range(k) for k in chain.n_states]
    paths, probs = [], []
    for path in itertools.product(*ranges):
        p = chain.initial[path[0]]
        for i in range(1, len(path)):
            p *= chain.transitions[i - 1][path[i - 1], path[i]]
        paths.append(path)
        probs.append(p)
    return paths, np.array(probs)


def cumulative_costs(chain):
    out, total = [], 0.0
    for c in chain.costs:
        total += float(c)
        out.append(total)
    return out


def outcome_table(chain, paths, lam, recall):
    """``out[r, i]``: objective of path ``r`` when stopping after stage ``i``."""
    cum = cumulative_costs(chain)
    out = np.empty((len(paths), chain.n_stages))
    for r, path in enumerate(paths):
        best = np.inf
        for i, s in enumerate(path):
            loss = float(chain.losses[i][s])
            best = min(best, loss)
            returned = best if recall else loss
            out[r, i] = lam * returned + (1.0 - lam) * cum[i]
    return out


def history_ids(paths, n):
    """Number every history ``(s_1..s_{i+1})`` with ``i < n - 1``; ``ids[r, i]`` for path ``r``."""
    numbering: dict[tuple[int, ...], int] = {}
    ids = np.zeros((len(paths), max(n - 1, 0)), dtype=np.int64)
    for r, path in enumerate(paths):
        for i in range(n - 1):
            ids[r, i] = numbering.setdefault(tuple(path[: i + 1]), len(numbering))
    return ids, len(numbering)


def all_policy_stop_stages(paths, n):
    """Stop stage of every deterministic adaptive policy on every path: shape ``(P, R)``."""
    ids, n_hist = history_ids(paths, n)
    n_pol = 2**n_hist
    bits = ((np.arange(n_pol)[:, None] >> np.arange(n_hist)[None, :]) & 1).astype(bool)  # (P, H)
    stage = np.full((n_pol, len(paths)), n - 1)
    for i in range(n - 2, -1, -1):
        stage = np.where(bits[:, ids[:, i]], i, stage)
    return stage


def brute_force_optimum(chain, lam, recall):
    paths, probs = enumerate_paths(chain)
    out = outcome_table(chain, paths, lam, recall)
    stage = all_policy_stop_stages(paths, chain.n_stages)
    per_policy = out[np.arange(len(paths))[None, :], stage] @ probs
    return per_policy.min()


def history_dp(chain, lam, recall):
    """Backward induction over full histories. Returns ``J*`` and, for every history with
    ``i < n - 1``, ``(stage i, state s_i, best loss b, stop value, continuation value, prob)``."""
    n = chain.n_stages
    kappa = [(1.0 - lam) * float(c) for c in chain.costs]
    records = []

    def value(prefix, prob):
        i = len(prefix) - 1
        best = min(float(chain.losses[j][prefix[j]]) for j in range(i + 1))
        stop = lam * (best if recall else float(chain.losses[i][prefix[-1]]))
        if i == n - 1:
            return stop
        row = chain.transitions[i][prefix[-1]]
        cont = kappa[i + 1] + sum(
            row[t] * value((*prefix, t), prob * row[t]) for t in range(chain.n_states[i + 1])
        )
        records.append((i, prefix[-1], best, stop, cont, prob))
        return min(stop, cont)

    total = kappa[0] + sum(chain.initial[s] * value((s,), chain.initial[s]) for s in range(chain.n_states[0]))
    return total, records


def exact_evaluation(chain, lam, decide, recall):
    """Expected (objective, loss, cost, stop distribution) of the policy that stops after
    stage ``i`` iff ``decide(i, best_loss, state)``, by path enumeration."""
    paths, probs = enumerate_paths(chain)
    cum = cumulative_costs(chain)
    n = chain.n_stages
    loss = cost = 0.0
    dist = np.zeros(n)
    for path, p in zip(paths, probs, strict=True):
        best = np.inf
        for i, s in enumerate(path):
            best = min(best, float(chain.losses[i][s]))
            if i == n - 1 or decide(i, best, s):
                loss += p * (best if recall else float(chain.losses[i][s]))
                cost += p * cum[i]
                dist[i] += p
                break
    return lam * loss + (1.0 - lam) * cost, loss, cost, dist


def brute_force_prophet(chain, lam):
    """E[min_i v_i], with v_i = lam*l_i + (1-lam)*(c_1+..+c_i); ties go to the earliest stage."""
    paths, probs = enumerate_paths(chain)
    cum = cumulative_costs(chain)
    value = loss = cost = 0.0
    for path, p in zip(paths, probs, strict=True):
        vals = [lam * float(chain.losses[i][s]) + (1.0 - lam) * cum[i] for i, s in enumerate(path)]
        i_star = min(range(len(vals)), key=lambda i: (vals[i], i))
        value += p * vals[i_star]
        loss += p * float(chain.losses[i_star][path[i_star]])
        cost += p * cum[i_star]
    return value, loss, cost


# ------------------------------------------------------------------------------ instances


def tiny_cases():
    rng = np.random.default_rng(20240611)
    cases = []
    for k in range(N_INSTANCES):
        n = int(rng.integers(1, 4))
        ks = rng.integers(1, 4, size=n)
        chain = random_chain(rng, n, ks)
        lams = np.array([rng.random(), 0.0, 1.0])
        cases.append(pytest.param(chain, lams, id=f"tiny{k}-n{n}-K{''.join(map(str, ks))}"))
    return cases


CASES = tiny_cases()


# ---------------------------------------------------------------------------------- tests


def test_instances_cover_the_awkward_cases():
    chains = [c.values[0] for c in CASES]
    assert any(c.n_stages == 3 and min(c.n_states) == 3 for c in chains)
    assert any(c.n_stages == 1 for c in chains)
    assert any(any(np.unique(x).size < x.size for x in c.losses) for c in chains), "no tied losses"
    assert any(any((x == 0).any() for x in c.losses) for c in chains), "no zero losses"
    assert any(any((t == 0).any() for t in c.transitions) for c in chains), "no zero transitions"
    assert any((c.costs == 0).any() for c in chains), "no zero costs"


@pytest.mark.parametrize(("chain", "lams"), CASES)
def test_optimal_values_equal_brute_force(chain, lams):
    rec = solve_recall(chain, lams)
    nor = solve_no_recall(chain, lams)
    for j, lam in enumerate(lams):
        bf_rec = brute_force_optimum(chain, lam, recall=True)
        bf_nor = brute_force_optimum(chain, lam, recall=False)
        # the two brute forces (policy enumeration, history DP) must agree with each other
        assert_close(history_dp(chain, lam, True)[0], bf_rec, TOL, "history DP (recall)")
        assert_close(history_dp(chain, lam, False)[0], bf_nor, TOL, "history DP (no recall)")
        assert_close(rec.value[j], bf_rec, TOL, f"solve_recall at lam={lam}")
        assert_close(nor.value[j], bf_nor, TOL, f"solve_no_recall at lam={lam}")


@pytest.mark.parametrize(("chain", "lams"), CASES)
def test_policies_reproduce_their_values(chain, lams):
    rec = solve_recall(chain, lams)
    nor = solve_no_recall(chain, lams)
    for j, lam in enumerate(lams):
        pol = rec.policy(j)
        ev = evaluate_policy(chain, pol, lam)
        assert_close(ev.objective, rec.value[j], TOL, "evaluate_policy(recall index policy)")

        def decide(i, best, s, pol=pol):
            return pol.lam * best <= pol.index[i][s]

        obj, loss, cost, dist = exact_evaluation(chain, lam, decide, recall=True)
        assert_close(obj, rec.value[j], TOL, "path enumeration of the recall index policy")
        assert_close(ev.expected_loss, loss, TOL, "expected loss of the recall index policy")
        assert_close(ev.expected_cost, cost, TOL, "expected cost of the recall index policy")
        assert_close(ev.stop_distribution[0], dist, TOL, "stop distribution of the recall index policy")

        npol = nor.policy(j)
        ev = evaluate_policy(chain, npol, lam)
        assert_close(ev.objective, nor.value[j], TOL, "evaluate_policy(no-recall policy)")
        obj, loss, cost, dist = exact_evaluation(
            chain, lam, lambda i, b, s, j=j: bool(nor.stop[i][j, s]), recall=False
        )
        assert_close(obj, nor.value[j], TOL, "path enumeration of the no-recall policy")
        assert_close(ev.expected_loss, loss, TOL, "expected loss of the no-recall policy")
        assert_close(ev.expected_cost, cost, TOL, "expected cost of the no-recall policy")
        assert_close(ev.stop_distribution[0], dist, TOL, "stop distribution of the no-recall policy")

    assert_close(evaluate_recall_solution(chain, rec).objective, rec.value, TOL, "evaluate_recall_solution")
    assert_close(
        evaluate_no_recall_solution(chain, nor).objective, nor.value, TOL, "evaluate_no_recall_solution"
    )


@pytest.mark.parametrize(("chain", "lams"), CASES)
def test_online_run_matches_the_decision_rule(chain, lams):
    """``RecallIndexPolicy.run`` on every path: the stages it runs and the stage it returns."""
    rec = solve_recall(chain, lams)
    paths, probs = enumerate_paths(chain)
    for j in range(lams.size):
        pol = rec.policy(j)
        total = 0.0
        for path, p in zip(paths, probs, strict=True):
            ls = [float(chain.losses[i][s]) for i, s in enumerate(path)]
            run, returned = pol.run(path, ls)
            assert 1 <= run <= chain.n_stages
            assert returned < run and ls[returned] == min(ls[:run])
            assert returned == ls.index(min(ls[:run])), "ties: the earliest best stage is returned"
            total += p * (lams[j] * ls[returned] + (1.0 - lams[j]) * float(np.sum(chain.costs[:run])))
        assert_close(total, rec.value[j], TOL, "online run of the index policy")


@pytest.mark.parametrize(("chain", "lams"), CASES)
def test_prophet_equals_brute_force(chain, lams):
    pro = solve_prophet(chain, lams)
    for j, lam in enumerate(lams):
        value, loss, cost = brute_force_prophet(chain, lam)
        assert_close(pro.objective[j], value, TOL, f"prophet value at lam={lam}")
        assert_close(pro.expected_loss[j], loss, TOL, f"prophet expected loss at lam={lam}")
        assert_close(pro.expected_cost[j], cost, TOL, f"prophet expected cost at lam={lam}")


@pytest.mark.parametrize(
    ("losses", "costs", "lam", "want_loss", "want_cost"),
    [
        ([[0.5], [0.5]], [1.0, 2.0], 1.0, 0.5, 1.0),  # equal losses at lam = 1: stage 1
        ([[1.0], [0.0]], [0.0, 1.0], 0.5, 1.0, 0.0),  # 0.5*1 + 0.5*0 == 0.5*0 + 0.5*1: stage 1
        ([[0.7], [0.2]], [0.3, 0.0], 0.0, 0.7, 0.3),  # lam = 0, free stage 2: stage 1
    ],
    ids=["equal-loss", "equal-value", "lam0-free-stage"],
)
def test_prophet_ties_go_to_the_earliest_stage(losses, costs, lam, want_loss, want_cost):
    chain = Chain.build(losses, [1.0], [[[1.0]]], costs)
    pro = solve_prophet(chain, lam)
    value, loss, cost = brute_force_prophet(chain, lam)
    assert (loss, cost) == (want_loss, want_cost)  # the brute force breaks ties as intended
    assert_close(pro.expected_loss[0], want_loss, TOL, "prophet loss under a tie")
    assert_close(pro.expected_cost[0], want_cost, TOL, "prophet cost under a tie")
    assert_close(pro.objective[0], value, TOL, "prophet value under a tie")


@pytest.mark.parametrize(("chain", "lams"), CASES)
def test_index_decides_optimally_on_every_history(chain, lams):
    """For every history (stage i < n, state s, best loss b; zero-probability histories too,
    the backward induction being defined there as well): stopping iff ``lam*b <= index``
    is an optimal decision. Where stopping and continuing tie (within TOL) either is accepted;
    otherwise the index must pick the strictly better one."""
    rec = solve_recall(chain, lams)
    for j, lam in enumerate(lams):
        assert np.isposinf(rec.index[-1][j]).all(), "last-stage index must be +inf"
        _, records = history_dp(chain, lam, recall=True)
        for i, s, best, stop, cont, prob in records:
            index_stops = bool(lam * best <= rec.index[i][j, s])
            tol = TOL * (1.0 + abs(cont))
            where = f"stage {i + 1}, state {s}, best loss {best}, lam {lam}, prob {prob}"
            if index_stops:
                assert stop <= cont + tol, f"index stops, continuing is better ({stop} > {cont}): {where}"
            else:
                assert cont <= stop + tol, f"index continues, stopping is better ({cont} > {stop}): {where}"
