"""The recall solver's alternative exact paths against the dense one: the banded continuation
(``method="banded"``) and the reachable-row tables (``rows="reachable"``)."""

from __future__ import annotations

import numpy as np
import pytest
from _chains import random_sized_chain

from ttamer.errors import FieldError
from ttamer.model.synthetic import per_stage_support_chain, shared_support_chain
from ttamer.solvers import evaluate_policy, solve_recall
from ttamer.solvers.banded import leading_stop_rows


def _lams(rng: np.random.Generator) -> np.ndarray:
    return np.r_[0.0, rng.random(4), 1.0]


@pytest.mark.parametrize("seed", range(60))
def test_banded_equals_dense(seed: int) -> None:
    rng = np.random.default_rng(seed)
    chain = random_sized_chain(rng, 6, 6)
    lams = _lams(rng)
    dense, banded = solve_recall(chain, lams), solve_recall(chain, lams, method="banded")
    np.testing.assert_allclose(banded.value, dense.value, rtol=0, atol=1e-12)
    for a, b in zip(dense.index, banded.index, strict=True):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-12)  # inf where inf


@pytest.mark.parametrize("block", [1, 3, 64])
def test_banded_on_a_large_chain_and_any_block(block: int) -> None:
    from functools import partial

    import ttamer.solvers.recall as recall

    chain = shared_support_chain(5, 120, seed=block)
    lams = np.array([0.05, 0.5, 0.95, 1.0])
    dense = solve_recall(chain, lams)
    original = recall.banded_continuation
    try:
        recall.banded_continuation = partial(original, block=block)  # type: ignore[assignment]
        banded = solve_recall(chain, lams, method="banded")
    finally:
        recall.banded_continuation = original  # type: ignore[assignment]
    np.testing.assert_allclose(banded.value, dense.value, rtol=1e-13, atol=1e-13)
    for a, b in zip(dense.index, banded.index, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-13, atol=1e-13)


def test_leading_stop_rows() -> None:
    x = np.arange(4.0)[None, :, None]  # rows X = 0, 1, 2, 3
    cont = np.array([[[1.0, 0.0, 5.0], [1.0, 0.0, 5.0], [1.0, 0.0, 1.0], [9.0, 0.0, 9.0]]])
    # column 0: stops at rows 0, 1, not 2 (row 3 stops again but is not leading)
    np.testing.assert_array_equal(leading_stop_rows(x, cont), [[1, 0, 1]])


@pytest.mark.parametrize("seed", range(40))
def test_reachable_rows_give_the_same_value_and_policy(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    chain = random_sized_chain(rng, 6, 5)
    lams = _lams(rng)
    full, reach = solve_recall(chain, lams), solve_recall(chain, lams, rows="reachable")
    np.testing.assert_allclose(reach.value, full.value, rtol=0, atol=1e-12)
    for j, lam in enumerate(lams):  # the two index policies are worth the same (exactly evaluated)
        a = evaluate_policy(chain, full.policy(j), float(lam)).objective
        b = evaluate_policy(chain, reach.policy(j), float(lam)).objective
        assert b == pytest.approx(a, abs=1e-12)


def test_reachable_rows_on_per_stage_supports() -> None:
    chain = per_stage_support_chain(4, 30, seed=1)
    assert chain.support().size == 4 * 30 + 1
    lams = np.array([0.2, 0.8])
    full, reach = solve_recall(chain, lams), solve_recall(chain, lams, rows="reachable")
    np.testing.assert_allclose(reach.value, full.value, rtol=1e-13)
    # the index is the largest reachable stopping value: never above the full grid's
    for a, b in zip(full.index[:-1], reach.index[:-1], strict=True):
        assert (b <= a + 1e-15).all()


def test_bad_method_and_rows_name_the_field() -> None:
    chain = shared_support_chain(3, 5, seed=0)
    with pytest.raises(FieldError, match=r"^method:"):
        solve_recall(chain, 0.5, method="sparse")
    with pytest.raises(FieldError, match=r"^rows:"):
        solve_recall(chain, 0.5, rows="some")
    with pytest.raises(FieldError, match=r"^rows:"):
        solve_recall(chain, 0.5, method="banded", rows="reachable")


def test_cli_method_and_meta_states(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    import json

    from ttamer.cli import main
    from ttamer.model.chain import save_chain

    path = tmp_path / "c.json"
    save_chain(shared_support_chain(4, 30, seed=2), path)

    def solve(*extra: str) -> dict:  # type: ignore[type-arg]
        assert main(["solve", str(path), "--lam", "0.6", *extra]) == 0
        return json.loads(capsys.readouterr().out)

    dense, banded = solve(), solve("--method", "banded")
    assert banded["objective"] == pytest.approx(dense["objective"], abs=1e-12)
    exact_q = solve("--meta-states", "30")  # q >= K: no aggregation, the exact policy
    assert exact_q["objective"] == pytest.approx(dense["objective"], abs=1e-12)
    coarse = solve("--meta-states", "2")  # a lifted policy can never beat the optimum
    assert coarse["meta_states"] == 2 and coarse["objective"] >= dense["objective"] - 1e-12
    assert main(["solve", str(path), "--lam", "0.6", "--method", "sparse"]) == 2
    assert main(["solve", str(path), "--lam", "0.6", "--meta-states", "0"]) == 2
    assert "q: must be at least 1" in capsys.readouterr().err


def test_lambda_chunks_give_the_same_solution(monkeypatch: pytest.MonkeyPatch) -> None:
    import ttamer.solvers.recall as recall

    chain = shared_support_chain(4, 40, seed=5)
    lams = np.linspace(0.0, 1.0, 11)
    whole = solve_recall(chain, lams)
    monkeypatch.setattr(recall, "LAMBDA_CHUNK_BYTES", 1)  # one lam per chunk
    chunked = solve_recall(chain, lams)
    np.testing.assert_allclose(chunked.value, whole.value, rtol=1e-14, atol=1e-15)  # BLAS blocking
    for a, b in zip(whole.index, chunked.index, strict=True):
        assert a.shape == b.shape == (11, 40)
        np.testing.assert_array_equal(b, a)
