"""The torch recall backend against the numpy solver (``solve_recall``).

float64 must agree with numpy to rounding (values and indices to 1e-12). float32 values must lie
within ``F32_VALUE_RTOL`` (relative) of float64, and the float32 index policy, evaluated exactly
in float64, must be optimal within ``F32_REGRET_RTOL`` (relative): its tie rule stops when
``X <= C * (1 + 1e-5)``, so near-ties may stop where float64 continues.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _chains import assert_close, random_chain, random_sized_chain

from ttamer.errors import FieldError
from ttamer.model.synthetic import shared_support_chain
from ttamer.solvers import evaluate_recall_solution, solve_recall
from ttamer.solvers.recall import RecallSolution
from ttamer.solvers.torch_backend import available_devices, solve_recall_torch

TOL = 1e-12
F32_VALUE_RTOL = 1e-5  # measured: at most about 3e-7 on these chains (float32 eps is 1.2e-7)
F32_REGRET_RTOL = 2e-5  # tie slack 1e-5 plus rounding; measured: at most about 4e-6
TINY = 1e-30  # absolute floor: float32 may flush values below ~1e-38 to zero
LAMS = np.array([0.0, 0.1, 0.37, 0.5, 0.9, 1.0])


def _random_chains(seed: int, count: int):
    rng = np.random.default_rng(seed)
    chains = [random_sized_chain(rng, 6, 7) for _ in range(count)]
    chains += [random_chain(rng, 1, [3]), random_chain(rng, 2, [1, 1]), random_chain(rng, 4, [5, 1, 5, 2])]
    return chains


def assert_same_solution(actual: RecallSolution, expected: RecallSolution, tol: float = TOL) -> None:
    assert actual.value.dtype == np.float64 and actual.value.shape == expected.value.shape
    assert_close(actual.value, expected.value, tol, "value")
    assert len(actual.index) == len(expected.index)
    for i, (a, e) in enumerate(zip(actual.index, expected.index, strict=True)):
        assert a.dtype == np.float64 and a.shape == e.shape
        assert np.array_equal(np.isinf(a), np.isinf(e)), f"index[{i}]: inf pattern"
        fin = np.isfinite(e)
        assert_close(a[fin], e[fin], tol, f"index[{i}]")
    assert np.isinf(actual.index[-1]).all()


def assert_float32_close(chain, f32: RecallSolution, f64: RecallSolution) -> None:
    err = np.abs(f32.value - f64.value)
    assert (err <= F32_VALUE_RTOL * np.abs(f64.value) + TINY).all(), f"float32 value error {err}"
    grid = f64.lam[:, None] * chain.support()[None, :]  # (L, G): float32 indices are grid values
    for a in f32.index[:-1]:
        assert all(np.isin(a[j], grid[j]).all() for j in range(a.shape[0])), "index off the grid"
    regret = evaluate_recall_solution(chain, f32).objective - f64.value
    assert (regret <= F32_REGRET_RTOL * f64.value + TINY).all(), f"float32 policy regret {regret}"


@pytest.mark.parametrize("seed", range(4))
def test_float64_cpu_matches_numpy(seed):
    for chain in _random_chains(seed, 60):
        assert_same_solution(solve_recall_torch(chain, LAMS), solve_recall(chain, LAMS))


@pytest.mark.parametrize("seed", range(4))
def test_float32_cpu_close_to_float64(seed):
    for chain in _random_chains(100 + seed, 60):
        f64 = solve_recall(chain, LAMS)
        f32 = solve_recall_torch(chain, LAMS, dtype=torch.float32)
        assert f32.value.dtype == np.float64
        assert np.isinf(f32.index[-1]).all()
        assert_float32_close(chain, f32, f64)


def test_scalar_lambda_and_single_stage():
    rng = np.random.default_rng(7)
    chain = random_chain(rng, 1, [4])
    sol = solve_recall_torch(chain, 0.3)
    assert sol.value.shape == (1,) and sol.index[0].shape == (1, 4)
    assert_same_solution(sol, solve_recall(chain, 0.3))


def test_shared_support_chain_k200():
    chain = shared_support_chain(n_stages=4, n_values=200, seed=3)
    lams = np.linspace(0.0, 1.0, 5)
    f64 = solve_recall(chain, lams)
    assert_same_solution(solve_recall_torch(chain, lams), f64)
    assert_float32_close(chain, solve_recall_torch(chain, lams, dtype=torch.float32), f64)


def test_index_policy_runs_online():
    """The returned index drives the online policy exactly as the numpy one does."""
    chain = shared_support_chain(n_stages=3, n_values=20, seed=5)
    sol, ref = solve_recall_torch(chain, [0.6]), solve_recall(chain, [0.6])
    states = [0, 3, 7]
    losses = [chain.losses[i][s] for i, s in enumerate(states)]
    assert sol.policy(0).run(states, losses) == ref.policy(0).run(states, losses)


@pytest.mark.parametrize("dtype", [torch.int64, torch.float16, torch.bfloat16, np.float64, "float64"])
def test_bad_dtype_raises(dtype):
    chain = shared_support_chain(n_stages=2, n_values=3, seed=0)
    with pytest.raises(FieldError, match="dtype") as info:
        solve_recall_torch(chain, 0.5, dtype=dtype)
    assert info.value.field == "dtype"


def test_bad_device_raises():
    chain = shared_support_chain(n_stages=2, n_values=3, seed=0)
    with pytest.raises(FieldError, match="device"):
        solve_recall_torch(chain, 0.5, device="not-a-device")
    if not torch.cuda.is_available():
        with pytest.raises(FieldError, match="CUDA"):
            solve_recall_torch(chain, 0.5, device="cuda")


def test_bad_lambda_raises():
    chain = shared_support_chain(n_stages=2, n_values=3, seed=0)
    with pytest.raises(FieldError, match="lam"):
        solve_recall_torch(chain, 1.5)


def test_available_devices():
    devices = available_devices()
    assert devices[0] == "cpu"
    assert ("cuda" in devices) == torch.cuda.is_available()


@pytest.mark.gpu
def test_cuda_float64_matches_numpy():
    for chain in _random_chains(200, 40):
        assert_same_solution(solve_recall_torch(chain, LAMS, device="cuda"), solve_recall(chain, LAMS))
    chain = shared_support_chain(n_stages=4, n_values=200, seed=3)
    assert_same_solution(solve_recall_torch(chain, LAMS, device="cuda"), solve_recall(chain, LAMS))


@pytest.mark.gpu
def test_cuda_float32_close_to_float64():
    chain = shared_support_chain(n_stages=4, n_values=200, seed=3)
    f64 = solve_recall(chain, LAMS)
    assert_float32_close(chain, solve_recall_torch(chain, LAMS, device="cuda", dtype=torch.float32), f64)
