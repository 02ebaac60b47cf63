"""Soft state aggregation: solve the recall problem on a chain of ``q`` meta-states per stage,
then lift the index policy back to the original states (the paper's speed-up; an option beside
the exact solver of :mod:`ttamer.solvers.recall`).

Definition (stages ``i = 0..n-1``, ``K_i`` states, ``q_i = min(q, K_i)`` meta-states):

* **Marginals.** ``p_0 = mu``, ``p_{i+1} = p_i T_i``: the probability of each state at stage
  ``i`` when every stage is run.
* **Membership** ``M_i`` of shape ``(K_i, q_i)``, row-stochastic: a soft assignment of states to
  meta-states by the state's loss. Rank the states of stage ``i`` by loss (ties by state
  number), ``r(s) in {0..K_i-1}``, and place them at loss quantiles ``u(s) = (r(s) + 1/2) / K_i``.
  Meta-state ``x`` sits at the quantile centre ``c_x = (x + 1/2) / q_i``. Then

      M_i[s, x]  ∝  exp(-(u(s) - c_x)^2 / (2 (width / q_i)^2))

  (a Gaussian kernel whose standard deviation is ``width`` centre spacings, truncated to 0
  where its log-weight falls 32 below the nearest centre's, i.e. ``exp(-8^2/2)``, to keep
  subnormal numbers out of the matrix products). ``width = 0`` is the hard limit:
  ``M_i[s, x] = 1`` iff ``x = floor(u(s) q_i)``, i.e. ``q_i`` contiguous blocks of equally many
  states by loss (every block is non-empty). If ``q >= K_i`` the stage is not aggregated:
  ``M_i`` is the identity (whatever ``width``), and with ``q >= max K_i`` the meta chain is the
  chain itself, so the exact solver's values and indices come back bit for bit.
* **Disaggregation** ``D_i`` of shape ``(q_i, K_i)``, row-stochastic:
  ``D_i[x, s] ∝ p_i(s) M_i[s, x]`` (the distribution of the state given meta-state ``x``); a
  meta-state that carries no probability falls back to ``D_i[x, s] ∝ M_i[s, x]``.
* **Meta chain.** Losses ``l̄_i = D_i l_i``, initial ``μ̄ = μ M_0``, transitions
  ``T̄_i = D_i T_i M_{i+1}`` (shape ``(q_i, q_{i+1})``), costs unchanged. It is a valid
  :class:`~ttamer.model.chain.Chain`.
* **Solve** the meta chain exactly (:func:`~ttamer.solvers.recall.solve_recall`), giving meta
  indices ``σ̄_i`` of shape ``(L, q_i)`` (scaled-loss units, ``lam`` times a meta loss).
* **Lift.** ``σ_i(s) = Σ_x M_i[s, x] σ̄_i(x)`` (``+inf`` at the last stage): each state stops
  at the membership-weighted average of its meta-states' thresholds (with ``width = 0``, its
  block's threshold). The lifted policy is a :class:`~ttamer.solvers.recall.RecallIndexPolicy`
  on the **original** chain: it compares ``lam`` times the best *true* loss seen with
  ``σ_i(s_i)`` and returns the best true stage, so it is a feasible policy there, and its
  exact objective (:func:`evaluate_aggregated_solution`) is never below the optimum ``J*``.

Cost. Aggregating costs ``O(q K_i K_{i+1})`` per stage (one pass over ``T_i`` gives both
``D_i T_i`` and ``p_{i+1}``, then ``· M_{i+1}``); the meta solve ``O(L Ḡ q_i q_{i+1})`` with
``Ḡ <= 1 + Σ_i q_i`` meta loss values (meta losses of different stages are different
averages, so ``Ḡ`` grows with ``n q`` even where the original stages share one support of
``K + 1`` values: at large ``q`` aggregation can be slower than the exact solver).

The meta optimum ``J̄`` (``AggregatedSolution.meta.value``) is the optimum of a different
chain: neither an upper nor a lower bound on ``J*``. Averaging losses within a meta-state hides
spread that recall exploits, which tends to push ``J̄`` up, but the meta process is not a
coarsening of the original one (``T̄_i`` mixes the futures of different states) and
``J̄ < J*`` happens too. Only the lifted policy's exact evaluation on the original chain is a
certified value (an upper bound on ``J*``).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ttamer.errors import FieldError
from ttamer.model.chain import Chain
from ttamer.solvers.evaluate import PolicyEvaluation, evaluate_recall_solution
from ttamer.solvers.recall import RecallIndexPolicy, RecallSolution, solve_recall

FloatArray = NDArray[np.float64]

DEFAULT_WIDTH = 0.5
"""Default kernel width, in centre spacings (standard deviation of the Gaussian kernel)."""

KERNEL_CUTOFF = 8.0
"""Kernel weights more than this many standard deviations beyond the nearest centre's are 0
(relative weight below ``exp(-32) ≈ 1.3e-14``), which keeps ``M_i`` free of subnormal numbers."""


@dataclass(frozen=True)
class AggregatedChain:
    """A chain of meta-states and the maps between it and the original chain.

    ``chain``: the meta chain (``q_i`` states at stage ``i``). ``membership[i]``: ``M_i``, shape
    ``(K_i, q_i)``. ``disaggregation[i]``: ``D_i``, shape ``(q_i, K_i)``. ``marginals[i]``:
    ``p_i``, shape ``(K_i,)``. ``q``, ``width``: the options used."""

    chain: Chain
    membership: tuple[FloatArray, ...]
    disaggregation: tuple[FloatArray, ...]
    marginals: tuple[FloatArray, ...]
    q: int
    width: float

    def lift(self, meta_index: tuple[FloatArray, ...]) -> tuple[FloatArray, ...]:
        """Lift meta indices (shapes ``(L, q_i)``) to the original states: ``(L, K_i)`` each,
        ``σ_i = σ̄_i M_i^T``; the last stage is ``+inf`` (it always stops)."""
        out = [
            meta_index[i] if _is_identity(m) else np.asarray(meta_index[i] @ m.T)
            for i, m in enumerate(self.membership[:-1])
        ]
        n_lam = meta_index[-1].shape[0]
        out.append(np.full((n_lam, self.membership[-1].shape[0]), np.inf))
        return tuple(out)


@dataclass(frozen=True)
class AggregatedSolution:
    """Lifted recall indices for each ``lam[j]`` and the meta solution they come from.

    ``index[i]``: shape ``(L, K_i)`` (as :attr:`RecallSolution.index`, on the original chain).
    ``meta``: the exact solution of ``aggregation.chain`` (``meta.value`` is the meta optimum,
    not the lifted policy's objective: use :func:`evaluate_aggregated_solution`)."""

    lam: FloatArray
    index: tuple[FloatArray, ...]
    meta: RecallSolution
    aggregation: AggregatedChain

    def policy(self, j: int = 0) -> RecallIndexPolicy:
        """The lifted index policy at ``lam[j]``, for the original chain."""
        return RecallIndexPolicy(float(self.lam[j]), tuple(x[j] for x in self.index))

    def as_recall_solution(self) -> RecallSolution:
        """The lifted indices as a :class:`RecallSolution` (its ``value`` is ``nan``: the
        lifted policy's objective is only known after evaluation)."""
        return RecallSolution(self.lam, np.full(self.lam.shape, np.nan), self.index)


def _check_q(q: object) -> int:
    if isinstance(q, bool) or not isinstance(q, numbers.Integral):
        raise FieldError("q", f"must be a positive integer (meta-states per stage), got {q!r}")
    if int(q) < 1:
        raise FieldError("q", f"must be at least 1 (meta-states per stage), got {int(q)}")
    return int(q)


def _check_width(width: object) -> float:
    try:
        w = float(width)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise FieldError("width", f"must be a number >= 0, got {width!r}") from None
    if not math.isfinite(w) or w < 0:
        raise FieldError("width", f"must be a finite number >= 0, got {width!r}")
    return w


def membership_matrix(losses: FloatArray, q: int, width: float) -> FloatArray:
    """``M`` of shape ``(K, min(q, K))`` for one stage (see the module docstring)."""
    k = losses.size
    if q >= k:
        return np.eye(k)
    rank = np.empty(k, dtype=np.int64)
    rank[np.argsort(losses, kind="stable")] = np.arange(k)
    u = (rank + 0.5) / k  # (K,)
    if width == 0.0:
        block = np.minimum(np.floor(u * q).astype(np.int64), q - 1)
        m = np.zeros((k, q))
        m[np.arange(k), block] = 1.0
        return m
    centres = (np.arange(q) + 0.5) / q
    z = (u[:, None] - centres[None, :]) * (q / width)  # distance in kernel standard deviations
    logits = -0.5 * z**2
    logits -= logits.max(axis=1, keepdims=True)  # the nearest centre gets weight 1: no underflow
    # truncated kernel: exact zeros beyond KERNEL_CUTOFF deviations (no subnormals in the products)
    m = np.where(logits >= -0.5 * KERNEL_CUTOFF**2, np.exp(logits), 0.0)
    return np.asarray(m / m.sum(axis=1, keepdims=True))


def _disaggregation(membership: FloatArray, marginal: FloatArray) -> FloatArray:
    w = membership.T * marginal[None, :]  # (q, K)
    mass = w.sum(axis=1, keepdims=True)
    w = np.where(mass > 0, w, membership.T)  # a meta-state without probability: by membership
    return np.asarray(w / w.sum(axis=1, keepdims=True))


def _normalise_rows(a: FloatArray) -> FloatArray:
    return np.asarray(a / a.sum(axis=-1, keepdims=True))


def _is_identity(membership: FloatArray) -> bool:
    """``q_i = min(q, K_i)`` equals ``K_i`` only for a stage that is not aggregated."""
    return membership.shape[0] == membership.shape[1]


def aggregate_chain(chain: Chain, q: int, width: float = DEFAULT_WIDTH) -> AggregatedChain:
    """The meta chain with ``min(q, K_i)`` meta-states at stage ``i`` (module docstring).

    ``q``: meta-states per stage (positive integer); ``width``: kernel standard deviation in
    centre spacings (``0``: hard blocks). Raises :class:`~ttamer.errors.FieldError` naming
    ``q`` or ``width`` on bad options."""
    q = _check_q(q)
    width = _check_width(width)
    n = chain.n_stages
    mem = [membership_matrix(np.asarray(x), q, width) for x in chain.losses]
    marginals = [np.asarray(chain.initial, dtype=np.float64)]
    dis: list[FloatArray] = []
    trans: list[FloatArray] = []
    for i in range(n):
        k = chain.n_states[i]
        dis.append(np.eye(k) if _is_identity(mem[i]) else _disaggregation(mem[i], marginals[i]))
        if i == n - 1:
            break
        t = chain.transitions[i]
        if _is_identity(mem[i]):
            marginals.append(np.asarray(marginals[i] @ t))
            out = t
        else:  # D_i T_i and p_{i+1} = p_i T_i in one pass over T_i
            both = np.vstack([dis[i], marginals[i][None, :]]) @ t
            marginals.append(both[-1])
            out = both[:-1]
        if not _is_identity(mem[i + 1]):
            out = out @ mem[i + 1]
        trans.append(t if out is t else _normalise_rows(out))
    losses = [x if _is_identity(d) else d @ x for d, x in zip(dis, chain.losses, strict=True)]
    initial = chain.initial if _is_identity(mem[0]) else _normalise_rows(chain.initial @ mem[0])
    if all(_is_identity(m) for m in mem):
        meta = chain  # nothing aggregated: the chain itself (already validated and frozen)
    else:
        meta = Chain.build(losses, initial, trans, chain.costs, f"{chain.name}-aggregated-q{q}".lstrip("-"))
    for a in (*mem, *dis, *marginals):
        a.setflags(write=False)
    return AggregatedChain(meta, tuple(mem), tuple(dis), tuple(marginals), q, width)


def solve_recall_aggregated(
    chain: Chain,
    lam: ArrayLike,
    q: int,
    width: float = DEFAULT_WIDTH,
    aggregation: AggregatedChain | None = None,
) -> AggregatedSolution:
    """Aggregate ``chain`` to ``q`` meta-states per stage, solve recall there exactly for every
    ``lam``, and lift the indices to the original states.

    Pass ``aggregation`` (from :func:`aggregate_chain` on the same chain) to reuse one
    aggregation; ``q`` and ``width`` are then ignored."""
    agg = aggregate_chain(chain, q, width) if aggregation is None else aggregation
    if tuple(m.shape[0] for m in agg.membership) != chain.n_states:
        raise FieldError("aggregation", "was built for a chain with different state counts")
    meta = solve_recall(agg.chain, lam)
    return AggregatedSolution(meta.lam, agg.lift(meta.index), meta, agg)


def evaluate_aggregated_solution(chain: Chain, sol: AggregatedSolution) -> PolicyEvaluation:
    """Exact performance of the lifted index policies on the original ``chain``, all ``lam`` at
    once (the same numbers as :func:`~ttamer.solvers.evaluate.evaluate_policy` per ``lam``)."""
    return evaluate_recall_solution(chain, sol.as_recall_solution())
