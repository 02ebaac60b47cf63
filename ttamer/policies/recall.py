"""``recall``: T-Tamer's dynamic index policy (README: model) replayed on a trace; knob = lam.

The chain is fitted on the fit split; every test sample is mapped to its fitted state at each
stage. After stage ``i`` the policy knows ``b_i``, the smallest fitted loss among stages
``0..i``, and stops as soon as ``lam * b_i <= index_i(lam, s_i)``; it returns the stage where
``b_i`` was reached (earliest on ties).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ttamer.model.chain import Chain
from ttamer.policies.base import Decisions, ScoringContext
from ttamer.policies.grids import LambdaGrid
from ttamer.policies.registry import register_policy
from ttamer.policies.stopping import leading_no_exit, running_argmin, sample_blocks
from ttamer.solvers.recall import solve_recall

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def state_losses(chain: Chain, states: IntArray) -> FloatArray:
    """The fitted loss of each sample's state at each stage: states (N, n) -> (N, n)."""
    return np.stack([chain.losses[i][states[:, i]] for i in range(states.shape[1])], axis=1)


TABLE_LIMIT = 1 << 24  # entries of one stage's lookup table of exit tests


def exit_tables(
    values: FloatArray, lams: FloatArray, index: tuple[FloatArray, ...]
) -> list[NDArray[np.bool_]]:
    """Per stage ``i``: the outcome of ``lam * values[v] <= index[i][:, s]`` as a (K_i * V, L)
    table, row ``s * V + v``; none when one of them would exceed :data:`TABLE_LIMIT` entries."""
    size = values.size * lams.size
    if any(x.shape[1] * size > TABLE_LIMIT for x in index):
        return []
    return [
        (values[None, :, None] * lams[None, None, :] <= x.T[:, None, :]).reshape(-1, lams.size) for x in index
    ]


def block_tests(
    states: IntArray,
    loss: FloatArray,
    lams: FloatArray,
    index_t: list[FloatArray],
    values: FloatArray,
    offsets: IntArray,
    tables: list[NDArray[np.bool_]],
) -> tuple[Callable[[int], NDArray[np.bool_]], IntArray]:
    """For one block of samples (``states`` and their fitted ``loss``, (w, n)): the exit test
    ``lam * best <= index[i][:, s_i]`` of each stage as ``exits(i)`` -> (w, L), and the stage
    where ``best`` (the running minimum of ``loss``) was reached, (w, n), earliest on ties.

    ``best`` is the fitted loss of that stage in its state, entry ``offsets[stage] + state`` of
    ``values`` (all the chain's losses), so with ``tables`` (:func:`exit_tables`) each test is
    looked up; the products and comparisons are the same, done once per table entry."""
    best = np.minimum.accumulate(loss, axis=1)
    best_stage = running_argmin(loss)
    if tables and states.min() >= 0:
        entry = offsets[best_stage] + np.take_along_axis(states, best_stage, axis=1)
        if np.array_equal(values[entry], best):  # always: losses are finite
            codes = states * values.size + entry

            def lookup(i: int) -> NDArray[np.bool_]:
                return np.take(tables[i], codes[:, i], axis=0)

            return lookup, best_stage
    lam = lams[None, :]

    def compute(i: int) -> NDArray[np.bool_]:
        return best[:, i, None] * lam <= np.take(index_t[i], states[:, i], axis=0)

    return compute, best_stage


def recall_decisions(chain: Chain, states: IntArray, lams: FloatArray) -> Decisions:
    """Index-policy decisions for samples in ``states`` (N, n), for every ``lam`` (L,).

    Block by block of samples: no (L, N, n) array and no (N, n) temporary is built."""
    sol = solve_recall(chain, lams)
    (n_samples, n), n_lams = states.shape, lams.size
    values = np.concatenate(chain.losses)  # every fitted loss, stage after stage
    offsets = np.cumsum([0] + [x.size for x in chain.losses[:-1]])
    tables = exit_tables(values, lams, sol.index[: n - 1])
    index_t = [np.ascontiguousarray(x.T) for x in sol.index]  # (K_i, L)
    stop = np.empty((n_lams, n_samples), dtype=np.int64)
    returned = np.empty((n_lams, n_samples), dtype=np.int64)
    estimated = np.zeros(n_lams)  # summed fitted loss of the returned answers
    for a, b in sample_blocks(n_samples):
        block = states[a:b]
        loss = state_losses(chain, block)
        exits, best_stage = block_tests(block, loss, lams, index_t, values, offsets, tables)
        count = leading_no_exit(n_lams, b - a, n, exits)  # (w, L): the stop stage
        ret = np.take_along_axis(best_stage, count, axis=1)  # (w, L)
        stop[:, a:b], returned[:, a:b] = count.T, ret.T
        estimated += np.take_along_axis(loss, ret, axis=1).sum(axis=0)
    return Decisions(lams, stop, returned, estimated / max(n_samples, 1))


def mean_fitted_loss(chain: Chain, states: IntArray, stage: IntArray) -> FloatArray:
    """(M,) the mean over samples of the fitted loss at ``stage`` (M, N), for ``states`` (N, n),
    block by block of samples (no (N, n) table of losses)."""
    total = np.zeros(stage.shape[0])
    for a, b in sample_blocks(states.shape[0]):
        loss = state_losses(chain, states[a:b])
        total += np.take_along_axis(loss, stage[:, a:b].T, axis=1).sum(axis=0)
    return total / max(states.shape[0], 1)


@register_policy("recall", order=10, auto_candidate=True)
@dataclass(frozen=True)
class RecallPolicy(LambdaGrid):
    """The optimal recall policy of the chain fitted on the fit split."""

    name = "recall"
    knob_name = "lam"

    def decide(self, ctx: ScoringContext) -> Decisions:
        return recall_decisions(ctx.fitted.chain, ctx.test_states, self.lambdas())
