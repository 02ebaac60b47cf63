"""Input validation (README: model) and instance files: every bad input raises a
ChainError whose ``field`` names the offending field (1-based stages); files round-trip."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from _chains import random_sized_chain

from ttamer.model.chain import Chain, ChainError, check_lambda, load_chain, save_chain
from ttamer.solvers import (
    best_threshold,
    evaluate_policy,
    simulate,
    solve_no_recall,
    solve_prophet,
    solve_recall,
    static_policy,
)

NAN, INF = float("nan"), float("inf")


def valid_kwargs():
    """A valid 3-stage chain with 2, 3 and 1 states."""
    return {
        "losses": [[0.1, 0.5], [0.2, 0.3, 0.0], [1.0]],
        "initial": [0.4, 0.6],
        "transitions": [[[0.5, 0.25, 0.25], [0.0, 1.0, 0.0]], [[1.0], [1.0], [1.0]]],
        "costs": [1.0, 0.5, 2.0],
    }


def modified(path, value):
    """``valid_kwargs()`` with the entry at ``path`` (a tuple of keys/indices) replaced."""
    kw = copy.deepcopy(valid_kwargs())
    target = kw
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return kw


BAD_INPUTS = {
    # rows / vectors not summing to 1
    "row_sum_above_tol": (("transitions", 0, 0), [0.5, 0.25, 0.25 + 2e-9], "transitions[2]"),
    "row_sum_below_tol": (("transitions", 0, 1), [0.0, 1.0 - 2e-9, 0.0], "transitions[2]"),
    "row_sum_far_off": (("transitions", 1, 2), [0.5], "transitions[3]"),
    "initial_sum": (("initial",), [0.4, 0.5], "initial"),
    "initial_sum_above_tol": (("initial",), [0.4, 0.6 + 2e-9], "initial"),
    # negative / non-finite entries
    "negative_loss": (("losses", 1, 2), -1e-12, "losses[2]"),
    "nan_loss": (("losses", 0, 1), NAN, "losses[1]"),
    "inf_loss": (("losses", 2, 0), INF, "losses[3]"),
    "neg_inf_loss": (("losses", 0, 0), -INF, "losses[1]"),
    "negative_cost": (("costs", 1), -0.5, "costs"),
    "nan_cost": (("costs", 0), NAN, "costs"),
    "inf_cost": (("costs", 2), INF, "costs"),
    "negative_transition": (("transitions", 0, 1), [1.5, -0.5, 0.0], "transitions[2]"),
    "nan_transition": (("transitions", 1, 0), [NAN], "transitions[3]"),
    "negative_initial": (("initial",), [1.2, -0.2], "initial"),
    "nan_initial": (("initial",), [NAN, 1.0], "initial"),
    # shape mismatches
    "initial_too_long": (("initial",), [0.4, 0.3, 0.3], "initial"),
    "initial_too_short": (("initial",), [1.0], "initial"),
    "initial_matrix": (("initial",), [[0.4, 0.6]], "initial"),
    "transition_too_few_columns": (("transitions", 0), [[0.5, 0.5], [0.0, 1.0]], "transitions[2]"),
    "transition_too_many_rows": (("transitions", 1), [[1.0], [1.0], [1.0], [1.0]], "transitions[3]"),
    "transition_vector": (("transitions", 1), [1.0, 1.0, 1.0], "transitions[3]"),
    "transition_ragged": (("transitions", 0), [[0.5, 0.5, 0.0], [1.0]], "transitions[2]"),
    "too_few_costs": (("costs",), [1.0, 0.5], "costs"),
    "too_many_costs": (("costs",), [1.0, 0.5, 2.0, 0.1], "costs"),
    "scalar_costs": (("costs",), 1.0, "costs"),
    "too_few_transitions": (("transitions",), [[[0.5, 0.25, 0.25], [0.0, 1.0, 0.0]]], "transitions"),
    "too_many_transitions": (
        ("transitions",),
        [[[0.5, 0.25, 0.25], [0.0, 1.0, 0.0]], [[1.0], [1.0], [1.0]], [[1.0]]],
        "transitions",
    ),
    "stage_without_states": (("losses", 2), [], "losses[3]"),
    "loss_matrix": (("losses", 0), [[0.1, 0.5]], "losses[1]"),
    "loss_not_numeric": (("losses", 1), ["a", 0.3, 0.0], "losses[2]"),
}


@pytest.mark.parametrize(("path", "value", "field"), list(BAD_INPUTS.values()), ids=list(BAD_INPUTS))
def test_bad_input_names_its_field(path, value, field):
    with pytest.raises(ChainError) as info:
        Chain.build(**modified(path, value))
    assert info.value.field == field, str(info.value)
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith(field)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("transitions", 0, 0), [0.5, 0.25, 0.25 + 5e-10]),
        (("transitions", 0, 1), [0.0, 1.0 - 5e-10, 0.0]),
        (("initial",), [0.4, 0.6 + 5e-10]),
        (("losses", 1, 2), 0.0),
        (("costs",), [0.0, 0.0, 0.0]),
    ],
    ids=["row_within_tol_above", "row_within_tol_below", "initial_within_tol", "zero_loss", "zero_costs"],
)
def test_input_within_tolerance_is_accepted(path, value):
    chain = Chain.build(**modified(path, value))
    assert chain.n_states == (2, 3, 1)
    assert solve_recall(chain, 0.5).value.shape == (1,)


def test_valid_chain_is_frozen_and_described():
    chain = Chain.build(**valid_kwargs(), name="demo")
    assert chain.n_stages == 3 and chain.n_states == (2, 3, 1) and chain.name == "demo"
    with pytest.raises(ValueError, match="read-only"):
        chain.losses[0][0] = 5.0
    with pytest.raises(ValueError, match="read-only"):
        chain.transitions[0][0, 0] = 5.0


def test_single_stage_chain_needs_no_transitions():
    chain = Chain.build([[0.3, 0.1]], [0.5, 0.5], [], [2.0])
    assert chain.n_stages == 1
    assert np.isclose(solve_no_recall(chain, 0.5).value[0], 0.5 * 0.2 + 0.5 * 2.0)


@pytest.mark.parametrize("losses", [[], ()], ids=["list", "tuple"])
def test_empty_chain(losses):
    with pytest.raises(ChainError) as info:
        Chain.build(losses, [], [], [])
    assert info.value.field == "losses"


# --------------------------------------------------------------------------------- lambda

BAD_LAMS = {
    "negative": -0.1,
    "above_one": 1.0 + 1e-12,
    "nan": NAN,
    "inf": INF,
    "vector_with_bad": [0.5, 2.0],
    "empty": [],
    "matrix": [[0.5]],
    "text": "half",
}


@pytest.mark.parametrize("lam", list(BAD_LAMS.values()), ids=list(BAD_LAMS))
def test_check_lambda_rejects(lam):
    with pytest.raises(ChainError) as info:
        check_lambda(lam)
    assert info.value.field == "lam"


@pytest.mark.parametrize("lam", [-0.5, 1.5, NAN], ids=["negative", "above_one", "nan"])
def test_solvers_reject_bad_lambda(lam):
    chain = Chain.build(**valid_kwargs())
    calls = [
        lambda: solve_recall(chain, lam),
        lambda: solve_recall(chain, [0.2, lam]),
        lambda: solve_no_recall(chain, lam),
        lambda: solve_prophet(chain, lam),
        lambda: best_threshold(chain, lam),
        lambda: evaluate_policy(chain, static_policy(chain, 1), lam),
        lambda: simulate(chain, static_policy(chain, 1), lam, 10, seed=0),
    ]
    for call in calls:
        with pytest.raises(ChainError) as info:
            call()
        assert info.value.field == "lam"


def test_check_lambda_accepts_endpoints_and_vectors():
    np.testing.assert_array_equal(check_lambda(0), [0.0])
    np.testing.assert_array_equal(check_lambda(1), [1.0])
    np.testing.assert_array_equal(check_lambda([0.0, 0.25, 1.0]), [0.0, 0.25, 1.0])


# ---------------------------------------------------------------------------------- files


def assert_same_chain(a: Chain, b: Chain):
    assert a.name == b.name
    assert a.n_states == b.n_states
    for x, y in zip(
        (*a.losses, a.initial, *a.transitions, a.costs),
        (*b.losses, b.initial, *b.transitions, b.costs),
        strict=True,
    ):
        assert x.shape == y.shape and x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)  # bit-exact


def round_trip_cases():
    rng = np.random.default_rng(5)
    chains = [random_sized_chain(rng, 5, 6) for _ in range(6)]
    chains.append(Chain.build([[1 / 3, 0.0]], [0.1, 0.9], [], [1e-300], name=""))
    chains.append(Chain.build(**valid_kwargs(), name="naïve name with spaces"))
    return chains


@pytest.mark.parametrize("suffix", [".json", ".npz"])
@pytest.mark.parametrize("chain", round_trip_cases())
def test_round_trip(tmp_path, chain, suffix):
    path = tmp_path / f"sub/chain{suffix}"
    save_chain(chain, path)
    back = load_chain(path)
    assert_same_chain(chain, back)
    lams = [0.0, 0.3, 1.0]
    np.testing.assert_array_equal(solve_recall(back, lams).value, solve_recall(chain, lams).value)
    assert [p.name for p in path.parent.iterdir()] == [path.name], "no temporary files left behind"


def test_json_file_layout(tmp_path):
    chain = Chain.build(**valid_kwargs(), name="layout")
    save_chain(chain, tmp_path / "c.json")
    data = json.loads((tmp_path / "c.json").read_text())
    assert data == {**valid_kwargs(), "name": "layout"}


def test_npz_file_layout(tmp_path):
    chain = Chain.build(**valid_kwargs(), name="layout")
    save_chain(chain, tmp_path / "c.npz")
    with np.load(tmp_path / "c.npz", allow_pickle=False) as npz:
        assert set(npz.files) == {
            "losses_1",
            "losses_2",
            "losses_3",
            "initial",
            "transitions_2",
            "transitions_3",
            "costs",
            "name",
        }
        np.testing.assert_array_equal(npz["transitions_3"], [[1.0], [1.0], [1.0]])
    # an npz written by hand, without a name, loads with the empty name
    np.savez(tmp_path / "hand.npz", **npz_arrays(valid_kwargs()))
    back = load_chain(tmp_path / "hand.npz")
    assert back.name == ""
    assert_same_chain(back, Chain.build(**valid_kwargs()))


def npz_arrays(kw):
    """The arrays of an npz instance file for the chain given by ``kw``."""
    arrays = {f"losses_{i + 1}": np.array(x) for i, x in enumerate(kw["losses"])}
    arrays.update({f"transitions_{i + 2}": np.array(t) for i, t in enumerate(kw["transitions"])})
    arrays.update(initial=np.array(kw["initial"]), costs=np.array(kw["costs"]))
    return arrays


def write_json(tmp_path, data, raw=None):
    path = tmp_path / "bad.json"
    path.write_text(raw if raw is not None else json.dumps(data))
    return path


def without(key):
    kw = valid_kwargs()
    del kw[key]
    return kw


BAD_JSON = {
    "not_json": (None, "{ losses: [", "file"),
    "truncated": (None, '{"losses": [[0.1, 0.5]], "initial": [1', "file"),
    "top_level_list": ([1, 2, 3], None, "file"),
    "missing_losses": (without("losses"), None, "losses"),
    "missing_initial": (without("initial"), None, "initial"),
    "missing_costs": (without("costs"), None, "costs"),
    "missing_transitions": (without("transitions"), None, "transitions"),
    "losses_not_list": ({**valid_kwargs(), "losses": 3}, None, "losses"),
    "transitions_not_list": ({**valid_kwargs(), "transitions": {"a": 1}}, None, "transitions"),
    "nan_literal": (None, json.dumps(valid_kwargs()).replace("0.1", "NaN", 1), "losses[1]"),
    "bad_row_in_file": (modified(("transitions", 1, 0), [0.9]), None, "transitions[3]"),
    "null_costs": ({**valid_kwargs(), "costs": None}, None, "costs"),
    "empty_losses": ({"losses": [], "initial": [], "transitions": [], "costs": []}, None, "losses"),
}


@pytest.mark.parametrize(("data", "raw", "field"), list(BAD_JSON.values()), ids=list(BAD_JSON))
def test_malformed_json(tmp_path, data, raw, field):
    with pytest.raises(ChainError) as info:
        load_chain(write_json(tmp_path, data, raw))
    assert info.value.field == field, str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(ChainError) as info:
        load_chain(tmp_path / "nowhere.json")
    assert info.value.field == "file"


@pytest.mark.parametrize(
    ("drop", "field"),
    [("initial", "initial"), ("costs", "costs"), ("transitions_3", "transitions_3"), ("losses_1", "losses")],
)
def test_npz_missing_arrays(tmp_path, drop, field):
    arrays = npz_arrays(valid_kwargs())
    del arrays[drop]
    np.savez(tmp_path / "c.npz", **arrays)
    with pytest.raises(ChainError) as info:
        load_chain(tmp_path / "c.npz")
    assert info.value.field == field, str(info.value)


def test_npz_garbage(tmp_path):
    (tmp_path / "c.npz").write_bytes(b"this is not a zip file")
    with pytest.raises(ChainError) as info:
        load_chain(tmp_path / "c.npz")
    assert info.value.field == "file"


def test_npz_bad_values_name_the_field(tmp_path):
    np.savez(tmp_path / "c.npz", **npz_arrays(modified(("costs", 1), -1.0)))
    with pytest.raises(ChainError) as info:
        load_chain(tmp_path / "c.npz")
    assert info.value.field == "costs"
