"""The posterior model and its policies against independent computations.

- the fitted states, error estimates and transitions against a plain per-sample walk and
  plain counting (with vanishing shrinkage they are the fit samples' empirical rates);
- the optimal values against a brute force over every deterministic stop rule on the
  histories of the fitted kernel (tiny models), for both posterior policies;
- the solver's own rule evaluated forward on the fitted kernel equals its value to 1e-9;
- the policies' decisions, accuracy, cost and predicted accuracy against per-sample loops;
- cross-validation picks the candidate of least held-out cost, recomputed by hand.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from test_trace_policies import check_against_reference, context, first_exit, random_trace

from ttamer.errors import FieldError
from ttamer.evaluation.pareto import cost_to_reach, upper_hull
from ttamer.fitting.posterior import PosteriorConfig, fit_posterior, solve_posterior
from ttamer.policies import POLICIES, ScoringContext, make_policy, score_decisions
from ttamer.policies.cross_validation import CrossValidation, cv_costs, kfold_indices
from ttamer.solvers import evaluate_stop_sets, solve_no_recall
from ttamer.traces.trace import stage_scores

TINY = 1e-9  # shrinkage small enough that estimates are the empirical rates


# ------------------------------------------------------------------------------ fitting


def plain_walk(trace, model):
    """States and returned stages, one sample at a time, in plain Python."""
    score = stage_scores(trace, model.config.score)
    states, returned = [], []
    for k in range(trace.n_samples):
        zs, rs = [], []
        for i in range(trace.n_stages):
            b = int(np.searchsorted(model.score_edges[i], score[k, i], side="right"))
            if i == 0:
                z, inc_est, r = b, None, 0
            else:
                z_prev = zs[-1]
                inc_est = min(float(model.p_cur[i - 1][z_prev]), float(model.p_inc[i - 1][z_prev]))
                e = int(np.searchsorted(model.incumbent_edges[i], inc_est, side="right"))
                agree = int(trace.pred[k, i] == trace.pred[k, rs[-1]])
                n_b, n_e = model.bin_counts(i)
                z = b + n_b * (e + n_e * agree)
                r = i if float(model.p_cur[i][z]) < float(model.p_inc[i][z]) else rs[-1]
            zs.append(z)
            rs.append(r)
        states.append(zs)
        returned.append(rs)
    return np.array(states), np.array(returned)


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_walk_and_estimates_equal_plain_counting(kind):
    trace = random_trace(3, kind, seed=5)
    model = fit_posterior(
        trace, PosteriorConfig(n_bins=3, incumbent_bins=3, shrinkage=TINY, transition_shrinkage=TINY)
    )
    states, returned = plain_walk(trace, model)
    walk = model.walk(trace)
    assert np.array_equal(walk.states, states) and np.array_equal(walk.returned, returned)
    for i in range(trace.n_stages):
        inc = returned[:, i - 1] if i else np.zeros(trace.n_samples, dtype=int)
        for z in set(states[:, i].tolist()):
            rows = states[:, i] == z
            cur_err = np.mean(trace.pred[rows, i] != trace.labels[rows])
            assert model.p_cur[i][z] == pytest.approx(cur_err, abs=1e-6)
            if i:
                inc_err = np.mean(trace.pred[rows, inc[rows]] != trace.labels[rows])
                assert model.p_inc[i][z] == pytest.approx(inc_err, abs=1e-6)
        if i:  # transition rows of visited states: empirical frequencies
            t = model.transitions[i - 1]
            for z in set(states[:, i - 1].tolist()):
                rows = states[:, i - 1] == z
                freq = np.bincount(states[rows, i], minlength=t.shape[1]) / rows.sum()
                np.testing.assert_allclose(t[z], freq, atol=1e-6)


def test_estimates_are_shrunk_and_agreeing_answers_share_one_estimate():
    trace = random_trace(4, "multiclass", seed=11)
    model = fit_posterior(trace, PosteriorConfig(n_bins=10, incumbent_bins=12, shrinkage=10.0))
    for i in range(4):
        for p in (model.p_cur[i], model.p_inc[i][: model.p_cur[i].size] if i else model.p_cur[i]):
            assert np.all((p > 0) & (p < 1))
        if i:
            n_b, n_e = model.bin_counts(i)
            agree = np.arange(model.p_cur[i].size) >= n_b * n_e
            np.testing.assert_array_equal(model.p_cur[i][agree], model.p_inc[i][agree])
            t = model.transitions[i - 1]
            np.testing.assert_allclose(t.sum(axis=1), 1.0, atol=1e-12)
            # the incumbent bin of every successor is the one of the answer the state returns
            e_next = (np.arange(t.shape[1]) // n_b) % n_e
            assert np.all((t > 0).sum(axis=1) <= 2 * n_b)
            for z in range(t.shape[0]):
                assert np.unique(e_next[t[z] > 0]).size == 1


def test_bad_config_names_the_field():
    for kwargs, field in [({"n_bins": 0}, "n_bins"), ({"incumbent_bins": 1.5}, "incumbent_bins"),
                          ({"shrinkage": 0.0}, "shrinkage"), ({"score": "x"}, "score")]:  # fmt: skip
        with pytest.raises(FieldError) as err:
            PosteriorConfig(**kwargs)
        assert err.value.field == field
    with pytest.raises(FieldError) as err:
        make_policy("posterior_recall", shrinkage=())
    assert err.value.field == "shrinkage"


# ------------------------------------------------------------------------------ exactness


def positive_paths(model):
    """Every state path of positive probability under the fitted kernel, with its probability."""
    paths = [((z,), float(p)) for z, p in enumerate(model.initial) if p > 0]
    for t in model.transitions:
        paths = [
            ((*path, z), p * float(t[path[-1], z])) for path, p in paths for z in np.flatnonzero(t[path[-1]])
        ]
    return paths


def brute_force(model, lam, recall):
    """min over every deterministic stop rule on histories of E[lam*loss + (1-lam)*cost]."""
    paths = positive_paths(model)
    n = model.n_stages
    loss = [
        np.minimum(c, p) if recall and i else c
        for i, (c, p) in enumerate(zip(model.p_cur, model.p_inc, strict=True))
    ]
    cum = np.cumsum(model.costs)
    prefixes = sorted({path[: i + 1] for path, _ in paths for i in range(n - 1)})
    where = {h: j for j, h in enumerate(prefixes)}
    best = np.inf
    for rule in itertools.product((False, True), repeat=len(prefixes)):
        total = 0.0
        for path, p in paths:
            i = first_exit(n, lambda i, path=path, rule=rule: rule[where[path[: i + 1]]])
            total += p * (lam * float(loss[i][path[i]]) + (1 - lam) * float(cum[i]))
        best = min(best, total)
    return best


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("recall", [True, False])
def test_optimal_value_equals_brute_force_over_stop_rules(seed, recall):
    trace = random_trace(3, "binary" if seed % 2 else "multiclass", seed=seed)
    config = PosteriorConfig(n_bins=2, incumbent_bins=2, shrinkage=3.0, transition_shrinkage=3.0)
    model = fit_posterior(trace, config)
    lams = np.array([0.0, 0.2, 0.5, 0.8, 0.95, 1.0])
    sol = solve_posterior(model, lams, recall)
    assert len(positive_paths(model)) > 8
    for j, lam in enumerate(lams):
        assert sol.value[j] == pytest.approx(brute_force(model, float(lam), recall), abs=1e-12)


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_own_rule_evaluated_forward_equals_its_value(kind):
    trace = random_trace(5, kind, seed=21)
    model = fit_posterior(trace, PosteriorConfig())
    lams = np.linspace(0.0, 1.0, 21)
    for recall in (True, False):
        chain = model.chain(recall)  # the dense kernel
        sol = solve_posterior(model, lams, recall)
        ev = evaluate_stop_sets(chain, sol.stop, lams)
        np.testing.assert_allclose(ev.objective, sol.value, atol=1e-9, rtol=0)
        np.testing.assert_allclose(solve_no_recall(chain, lams).value, sol.value, atol=1e-12, rtol=0)
    rec = solve_posterior(model, lams, True).value
    nor = solve_posterior(model, lams, False).value
    assert np.all(rec <= nor + 1e-12)


# ------------------------------------------------------------------------------ policies


CASES = [(n, kind) for n in (1, 2, 3, 5) for kind in ("binary", "multiclass")]


@pytest.mark.parametrize("name", ["posterior_recall", "posterior_no_recall"])
@pytest.mark.parametrize(("n", "kind"), CASES, ids=[f"n{n}-{k}" for n, k in CASES])
def test_policy_decisions_equal_per_sample_loop(name, n, kind):
    ctx = context(n, kind)
    policy = make_policy(name, n_bins=(4,), incumbent_bins=(6,), shrinkage=(5.0,), n_lams=17)
    dec = policy.decide(ctx)
    model = fit_posterior(ctx.fit, policy.configs()[0])
    recall = name == "posterior_recall"
    sol = solve_no_recall(model.chain(recall), dec.knobs)  # dense: independent of the compact solver
    states, returned = plain_walk(ctx.test, model)

    def reference(m, k):
        stop = first_exit(n, lambda i: bool(sol.stop[i][m, states[k, i]]))
        return stop, int(returned[k, stop]) if recall else stop

    check_against_reference(ctx, dec, reference)
    for m in range(dec.knobs.size):
        est = []
        for k in range(ctx.test.n_samples):
            stop, _ = reference(m, k)
            c, p = float(model.p_cur[stop][states[k, stop]]), float(model.p_inc[stop][states[k, stop]])
            est.append(min(c, p) if recall and stop else c)
        assert dec.estimated_error[m] == pytest.approx(np.mean(est), abs=1e-12)


def test_recall_and_no_recall_predicted_error_is_the_fitted_loss_of_the_answer():
    ctx = context(3, "multiclass")
    chain, states = ctx.fitted.chain, ctx.test_states
    for name in ("recall", "no_recall"):
        dec = POLICIES[name]().decide(ctx)
        loss = np.stack([chain.losses[i][states[:, i]] for i in range(3)], axis=1)
        want = [np.mean([loss[k, dec.returned[m, k]] for k in range(ctx.test.n_samples)]) for m in range(64)]
        np.testing.assert_allclose(dec.estimated_error, want, atol=1e-12)
    assert POLICIES["max_softmax"]().decide(ctx).estimated_error is None


# ------------------------------------------------------------------------------ cross-validation


def test_kfold_partitions_the_fit_split():
    pairs = kfold_indices(23, 5, seed=1)
    held = np.concatenate([h for _, h in pairs])
    assert np.array_equal(np.sort(held), np.arange(23))
    for fit, h in pairs:
        assert np.intersect1d(fit, h).size == 0 and fit.size + h.size == 23
    with pytest.raises(FieldError):
        kfold_indices(3, 5, seed=0)


def held_out_cost(policy, fold: ScoringContext, delta: float) -> float:
    """The cross-validation criterion recomputed: cost to reach the best stage - delta."""
    s = score_decisions(policy.decide(fold), fold.test)
    hull = upper_hull(s.normalized_cost, s.accuracy)
    target = fold.test.correct.mean(axis=0).max() - delta / 100
    c = float(cost_to_reach(hull, target))
    return c if np.isfinite(c) else 1 + target - hull.accuracy[-1]


def test_cross_validation_picks_the_least_held_out_cost():
    trace = random_trace(4, "multiclass", seed=3)
    ctx = ScoringContext(trace.subset(np.arange(200)), trace.subset(np.arange(200, 300)))
    policy = make_policy("posterior_recall", n_bins=(2, 6), incumbent_bins=(3,), shrinkage=(1.0, 30.0))
    cv = policy.cross_validation()
    deciders = [
        make_policy("posterior_recall", n_bins=(c.n_bins,), incumbent_bins=(3,), shrinkage=(c.shrinkage,))
        for c in policy.configs()
    ]
    costs = cv_costs(ctx, cv, [d.decide for d in deciders])
    folds = [ScoringContext(ctx.fit.subset(f), ctx.fit.subset(h)) for f, h in kfold_indices(200, 5, 0)]
    want = [np.mean([held_out_cost(d, f, 1.0) for f in folds]) for d in deciders]
    np.testing.assert_allclose(costs, want, atol=1e-12)
    dec = policy.decide(ctx)
    best = policy.configs()[int(np.argmin(want))]
    assert dec.selected == f"n_bins={best.n_bins} incumbent_bins=3 shrinkage={best.shrinkage:g}"
    fixed = make_policy(
        "posterior_recall", n_bins=(best.n_bins,), incumbent_bins=(3,), shrinkage=(best.shrinkage,)
    )
    assert np.array_equal(fixed.decide(ctx).stop, dec.stop)


def test_auto_returns_the_cross_validated_choice():
    ctx = context(3, "binary")
    auto = make_policy("auto", candidates=("no_recall", "max_softmax", "static"))
    dec = auto.decide(ctx)
    costs = cv_costs(ctx, CrossValidation(), [make_policy(n).decide for n in auto.candidates])
    chosen = auto.candidates[int(np.argmin(costs))]
    assert dec.selected == chosen
    assert np.array_equal(dec.stop, make_policy(chosen).decide(ctx).stop)
    with pytest.raises(FieldError):
        make_policy("auto", candidates=("auto",))


def test_auto_skips_candidates_the_trace_cannot_support():
    trace = random_trace(3, "multiclass", seed=4)
    bare = type(trace).build(trace.labels, trace.pred, trace.conf, trace.cost)  # no probs: no entropy
    ctx = ScoringContext(bare.subset(np.arange(150)), bare.subset(np.arange(150, 300)))
    dec = make_policy("auto", candidates=("entropy", "max_softmax")).decide(ctx)
    assert dec.selected == "max_softmax"


def test_a_full_swap_margin_is_posterior_no_recall() -> None:
    """With ``swap_margin`` 1 the incumbent is never returned: the decisions are posterior no
    recall's; a margin between 0 and 1 returns it only where its estimate is lower by that much."""
    ctx = context(3, "multiclass")
    grid = {"n_bins": (4,), "incumbent_bins": (6,), "shrinkage": (5.0,)}
    never = make_policy("posterior_recall", swap_margin=(1.0,), **grid).decide(ctx)
    plain = make_policy("posterior_no_recall", **grid).decide(ctx)
    np.testing.assert_array_equal(never.returned, never.stop)
    np.testing.assert_array_equal(never.stop, plain.stop)
    policy = make_policy("posterior_recall", swap_margin=(0.05,), **grid)
    model = fit_posterior(ctx.fit, policy.configs()[0])
    for i in range(1, 3):
        swap = ~model.keep_current[i]
        assert np.all(model.p_inc[i][swap] + 0.05 <= model.p_cur[i][swap])
        np.testing.assert_array_equal(model.loss[i], np.where(swap, model.p_inc[i], model.p_cur[i]))
    with pytest.raises(FieldError):
        PosteriorConfig(swap_margin=-0.1)
