"""A serving runtime for multi-exit models (README: serving): requests run one stage at a time, a
decision rule (:mod:`ttamer.serving.decide`) looks at every exit head's probabilities, the
requests that stop are answered, and only the unfinished ones are regrouped into a smaller batch
for the next stage. A request that stops at stage ``i`` never runs stage ``i + 1``.

The model side is a :class:`StagedModel`: ``stage(i, state) -> (state, logits)`` runs one
stage on a batch, ``probabilities(logits)`` turns its exit's output into float64 class
probabilities exactly as the trace stored them, ``take(state, rows)`` keeps some rows.
:class:`TorchStages` wraps a :class:`~ttamer.workloads.multi_exit.MultiExitNet` (tensors,
:class:`~ttamer.workloads.text.exits.tokens.TokenBatch` / ``HiddenState`` of the text models), with an
optional first stage that is not a network (VADER on the raw texts, for SST-2).

Timing: every stage's compute (``stage``), decision (the exit's probabilities + the rule) and
regrouping (keeping the unfinished rows) are timed separately with ``time.perf_counter``; each
request's latency is the time from the start of its batch to the decision that stopped it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import torch
from numpy.typing import NDArray

from ttamer.errors import FieldError
from ttamer.loading import one_line
from ttamer.serving.checks import check_positive_int, check_requests
from ttamer.serving.decide import (
    DecisionRule,
    FullModel,
    Memory,
    argmax_of_row,
    as_probabilities,
    normalised_row,
)

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


class StagedModel(Protocol):
    """A model that runs one stage at a time on a batch of requests."""

    @property
    def n_stages(self) -> int: ...

    def stage(self, i: int, state: Any) -> tuple[Any, Any]:
        """Run stage ``i`` (0-based) on ``state`` (the requests for ``i = 0``): (state, output)."""
        ...

    def probabilities(self, output: Any) -> FloatArray:
        """The exit's class probabilities (B, C), float64, as the trace stores them."""
        ...

    def take(self, state: Any, rows: NDArray[np.intp]) -> Any:
        """The rows ``rows`` of a batch state (or of a batch of requests)."""
        ...

    def merge(self, states: Sequence[Any]) -> Any:
        """Batch states of the same stage (or batches of requests), one after another."""
        ...


def take_rows(state: Any, rows: NDArray[np.intp]) -> Any:
    """Rows of a tensor, of a :class:`TokenBatch`, of a ``HiddenState`` (its batch-shaped
    tensors; a broadcast attention mask is kept), of a list, or of a tuple of those."""
    if isinstance(state, torch.Tensor):
        return state[torch.as_tensor(rows, dtype=torch.long, device=state.device)]
    if isinstance(state, tuple):
        return tuple(take_rows(s, rows) for s in state)
    if isinstance(state, list):
        return [state[int(r)] for r in rows]
    if state is None:
        return None
    from ttamer.workloads.text.exits.segments import HiddenState
    from ttamer.workloads.text.exits.tokens import TokenBatch

    if isinstance(state, TokenBatch):
        return state[torch.as_tensor(rows, dtype=torch.long)]
    if isinstance(state, HiddenState):
        n = state.hidden.shape[0]

        def batch_rows(t: Any) -> Any:  # a broadcast (size-1) batch dimension is kept
            if isinstance(t, torch.Tensor) and t.dim() > 0 and t.shape[0] == n:
                return take_rows(t, rows)
            return t

        return replace(
            state,
            hidden=take_rows(state.hidden, rows),
            mask=take_rows(state.mask, rows),
            bias=batch_rows(state.bias),
            position_ids=batch_rows(state.position_ids),
        )
    raise TypeError(f"cannot take rows of a {type(state).__name__}")


def merge_rows(states: Sequence[Any], segment: Any = None) -> Any:
    """Several batch states one after another (the inverse of :func:`take_rows`): tensors,
    lists, tuples of those, :class:`TokenBatch` (right-padded to the longest) and, given the
    text model's stage-1 ``segment``, ``HiddenState`` (padded, attention mask prepared again)."""
    first = states[0]
    if len(states) == 1:
        return first
    if isinstance(first, torch.Tensor):
        return torch.cat(list(states))
    if isinstance(first, tuple):
        return tuple(merge_rows(parts, segment) for parts in zip(*states, strict=True))
    if isinstance(first, list):
        return [item for s in states for item in s]
    if first is None:
        return None
    from ttamer.workloads.text.exits.segments import HiddenState, concat_hidden_states
    from ttamer.workloads.text.exits.tokens import TokenBatch, concat_token_batches

    if isinstance(first, TokenBatch):
        return concat_token_batches(states)
    if isinstance(first, HiddenState):
        if segment is None:
            raise TypeError("merging hidden states needs the model's stage-1 segment")
        return concat_hidden_states(states, segment)
    raise TypeError(f"cannot merge batches of {type(first).__name__}")


def to_device(state: Any, device: torch.device) -> Any:
    """A batch of requests moved to ``device``: tensors, :class:`TokenBatch`, tuples of those;
    anything else (raw texts) is left as it is."""
    if isinstance(state, torch.Tensor):
        return state.to(device)
    if isinstance(state, tuple):
        return tuple(to_device(s, device) for s in state)
    from ttamer.workloads.text.exits.tokens import TokenBatch

    if isinstance(state, TokenBatch):
        tt = None if state.token_type_ids is None else state.token_type_ids.to(device)
        return TokenBatch(state.input_ids.to(device), state.attention_mask.to(device), tt)
    return state


@dataclass
class TorchStages:
    """A :class:`~ttamer.workloads.multi_exit.MultiExitNet` as a :class:`StagedModel`.

    ``first``: an optional extra stage 0 that is not part of the network (a callable from the
    raw requests to class probabilities (B, C)); then requests are ``(raw, network input)``
    pairs and the network's stage ``i`` is served as stage ``i + 1``."""

    model: Any
    first: Callable[[Any], FloatArray] | None = None
    device: str | torch.device = "cpu"

    def __post_init__(self) -> None:
        self.device = torch.device(self.device)
        self.model.to(self.device).eval()
        # on a GPU a stage's time is only known once its kernels have finished
        self._sync = torch.cuda.synchronize if self.device.type == "cuda" else None

    @property
    def n_stages(self) -> int:
        return int(self.model.n_stages) + (self.first is not None)

    def stage(self, i: int, state: Any) -> tuple[Any, Any]:
        """Stage ``i`` without autograd. The serving loops enter inference mode once per call
        (:func:`serve`, :func:`~ttamer.serving.load.run_load_stagewise`): entering it here per
        stage would cost ~3 us a stage, a tenth of a digits stage."""
        if not torch.is_inference_mode_enabled():
            with torch.inference_mode():
                return self.stage(i, state)
        if self.first is not None:
            if i == 0:
                raw, net_input = state
                return net_input, self.first(raw)
            i -= 1
        out = self.model.stage(i, state)
        if self._sync is not None:
            self._sync(self.device)
        return out

    def probabilities(self, output: Any) -> FloatArray:
        if isinstance(output, np.ndarray):
            return as_probabilities(output)
        # as ttamer.workloads.multi_exit.exit_probabilities: float32 softmax, then float64
        return as_probabilities(torch.softmax(output.detach().float(), dim=-1).cpu().numpy())

    def probabilities_of_row(self, output: Any) -> list[float]:
        """:meth:`probabilities` of a batch of one, as a Python list (C,) of the same float64
        values: one softmax and one conversion, the normalisation in Python (batch 1 is
        dominated by per-operation overheads, not by arithmetic)."""
        if isinstance(output, np.ndarray):
            return normalised_row(np.asarray(output[0], dtype=np.float64).tolist())
        return normalised_row(torch.softmax(output.float(), dim=-1).tolist()[0])

    def take(self, state: Any, rows: NDArray[np.intp]) -> Any:
        return take_rows(state, rows)

    def merge(self, states: Sequence[Any]) -> Any:
        """Batch states of the same stage, one after another (:func:`merge_rows`)."""
        return merge_rows(states, self.model.segments[0])


@dataclass(frozen=True)
class StageRecord:
    """One stage of one batch: its index, batch size, and seconds of compute, of decision (the
    exit's probabilities and the rule) and of regrouping the unfinished requests."""

    stage: int
    batch_size: int
    compute_s: float
    decide_s: float
    regroup_s: float = 0.0


@dataclass
class Served:
    """The outcome of serving a batch of N requests: ``stop`` (N,) the last stage run (0-based),
    ``returned`` (N,) the stage whose answer is returned, ``pred`` (N,) that answer,
    ``finish_s`` (N,) seconds from the batch's start to its answer, and the stage records."""

    stop: IntArray
    returned: IntArray
    pred: IntArray
    finish_s: FloatArray
    stages: list[StageRecord] = field(default_factory=list)


@dataclass
class StageStep:
    """One stage run on a batch of B requests and decided: the stage's output ``state``, the
    rule's ``memory`` (B rows), ``halt`` (B,) and ``returned`` (B,) (the rule's decision),
    ``pred`` (B,) this exit's predictions (None when the rule decides nothing here),
    ``decided_at`` (``time.perf_counter()`` when the decision was made) and the record."""

    state: Any
    memory: Memory
    halt: NDArray[np.bool_]
    returned: IntArray
    pred: IntArray | None
    decided_at: float
    record: StageRecord


def run_model_stage(model: StagedModel, i: int, state: Any) -> tuple[Any, Any]:
    """``model.stage(i, state)``; at stage 0 a failure is the requests' fault (a shape or type
    the model cannot take) and is reported as a :class:`FieldError` on ``requests``."""
    if i:
        return model.stage(i, state)
    try:
        return model.stage(0, state)
    except (RuntimeError, ValueError, TypeError, IndexError, AttributeError) as exc:
        raise FieldError("requests", f"the model's first stage cannot take them ({one_line(exc)})") from None


def run_stage(
    model: StagedModel, rule: DecisionRule, i: int, state: Any, memory: Memory, fast: bool = True
) -> StageStep:
    """Stage ``i`` on the batch ``state`` (``len(memory)`` requests), then the rule's decision;
    the full model decides nothing before its last stage (and computes no probabilities).
    ``fast``: a batch of one request is decided on Python floats (:meth:`DecisionRule.step_single`,
    the same decision with a fraction of the vectorised path's fixed cost)."""
    n = len(memory)
    t0 = time.perf_counter()
    state, output = run_model_stage(model, i, state)
    t1 = time.perf_counter()
    if isinstance(rule, FullModel) and i < model.n_stages - 1:
        none = np.zeros(n, dtype=bool)
        return StageStep(state, memory, none, np.full(n, i), None, t1, StageRecord(i, n, t1 - t0, 0.0))
    if fast and n == 1:
        scalars = memory.row(0)
        halt_one, ret_one, pred_one = decide_single(model, rule, i, output, scalars)
        memory.set_row(0, scalars)
        halt, ret, pred = np.array([halt_one]), np.array([ret_one]), np.array([pred_one])
    else:
        probs = model.probabilities(output)
        halt, ret = rule.step(i, probs, memory)
        pred = probs.argmax(axis=1)
    t2 = time.perf_counter()
    return StageStep(state, memory, halt, ret, pred, t2, StageRecord(i, n, t1 - t0, t2 - t1))


def regroup(model: StagedModel, step: StageStep, keep: NDArray[np.intp]) -> tuple[Any, Memory, StageRecord]:
    """The state and memory of the unfinished requests ``keep`` (rows of ``step``) as a smaller
    batch (unchanged when none stopped), and the stage's record with the regrouping time."""
    t0 = time.perf_counter()
    state, memory = step.state, step.memory
    if keep.size and keep.size < len(memory):
        state, memory = model.take(state, keep), memory.take(keep)
    r = step.record
    seconds = time.perf_counter() - t0
    return state, memory, StageRecord(r.stage, r.batch_size, r.compute_s, r.decide_s, seconds)


@torch.inference_mode()
def serve(
    model: StagedModel,
    requests: Any,
    rule: DecisionRule,
    n: int | None = None,
    fast: bool = True,
    check: bool = True,
) -> Served:
    """Serve ``requests`` (a batch the model's stage 0 takes, of ``n`` rows: ``len`` when not
    given) under ``rule``: stage by stage, answering the requests that stop and regrouping the
    others into a smaller batch. A request is never run past the stage where it stopped.
    ``fast``: one request takes the scalar path (:meth:`DecisionRule.step_single`, same decisions).
    ``check``: refuse bad requests first (:func:`ttamer.serving.checks.check_requests`); loops
    that checked every request once pass False (it costs time on the batch-1 path)."""
    if rule.n_stages != model.n_stages:
        raise FieldError("rule", f"has {rule.n_stages} stages, the model {model.n_stages}")
    if check:
        n_req = check_requests(requests, n)
    else:
        n_req = len(requests) if n is None else n
    if n_req == 1 and fast:
        return serve_single(model, requests, rule)
    stop = np.full(n_req, -1, dtype=np.int64)
    returned = np.full(n_req, -1, dtype=np.int64)
    pred = np.full(n_req, -1, dtype=np.int64)
    finish = np.full(n_req, np.nan)
    records: list[StageRecord] = []
    preds = np.full((n_req, model.n_stages), -1, dtype=np.int64)
    active = np.arange(n_req)
    t_start = time.perf_counter()
    memory = rule.start(n_req)
    state = requests
    for i in range(model.n_stages):
        step = run_stage(model, rule, i, state, memory, fast)
        if step.pred is not None:
            preds[active, i] = step.pred
        done = np.flatnonzero(step.halt)
        if done.size:
            rows = active[done]
            stop[rows] = i
            returned[rows] = step.returned[done]
            pred[rows] = preds[rows, step.returned[done]]
            finish[rows] = step.decided_at - t_start  # answered before the others are regrouped
        keep = np.flatnonzero(~step.halt)
        state, memory, record = regroup(model, step, keep)
        records.append(record)
        active = active[keep]
        if not active.size:
            break
    return Served(stop, returned, pred, finish, records)


def one_row_probabilities(model: StagedModel) -> Callable[[Any], list[float]]:
    """The model's probabilities of a batch of one, as a list (C,): its ``probabilities_of_row`` when
    it has one (:meth:`TorchStages.probabilities_of_row`)."""
    fast: Callable[[Any], list[float]] | None = getattr(model, "probabilities_of_row", None)
    return fast or (lambda output: model.probabilities(output)[0].tolist())


def decide_single(
    model: StagedModel, rule: DecisionRule, i: int, output: Any, memory: dict[str, Any]
) -> tuple[bool, int, int]:
    """The decision after stage ``i`` for one request, on Python floats
    (:meth:`DecisionRule.step_single`; ``memory`` updated in place): (stop, returned stage, this
    exit's prediction)."""
    probs = one_row_probabilities(model)(output)
    halt, ret = rule.step_single(i, probs, memory)
    return halt, ret, argmax_of_row(probs)


def serve_single(model: StagedModel, request: Any, rule: DecisionRule) -> Served:
    """:func:`serve` for one request: the decision on Python scalars."""
    records: list[StageRecord] = []
    memory: dict[str, Any] = {}
    preds: list[int] = []
    full = isinstance(rule, FullModel)
    last = model.n_stages - 1
    clock = time.perf_counter
    t_start = clock()
    state = request
    for i in range(model.n_stages):
        t0 = clock()
        state, output = run_model_stage(model, i, state)
        t1 = clock()
        if full and i < last:
            records.append(StageRecord(i, 1, t1 - t0, 0.0))
            continue
        halt, ret, pred_i = decide_single(model, rule, i, output, memory)
        preds.append(pred_i)
        t2 = clock()
        records.append(StageRecord(i, 1, t1 - t0, t2 - t1))
        if halt:
            pred = preds[-1] if full else preds[ret]
            return Served(
                np.array([i], dtype=np.int64), np.array([ret], dtype=np.int64),
                np.array([pred], dtype=np.int64), np.array([t2 - t_start]), records,
            )  # fmt: skip
    raise AssertionError("a rule must stop at the last stage")


def serve_one_by_one(
    model: StagedModel, requests: Sequence[Any], rule: DecisionRule
) -> tuple[Served, FloatArray]:
    """Serve every request alone (batch 1), one after another: the outcomes stacked, and each
    request's wall-clock latency (seconds, the whole :func:`serve` call)."""
    if len(requests) == 0:
        raise FieldError("requests", "no request to serve")
    for req in requests:
        check_requests(req, 1)
    outcomes, latency = [], np.empty(len(requests))
    for j, req in enumerate(requests):
        t0 = time.perf_counter()
        outcomes.append(serve(model, req, rule, n=1, check=False))
        latency[j] = time.perf_counter() - t0
    return concat(outcomes), latency


def serve_in_batches(
    model: StagedModel, requests: Any, n: int, rule: DecisionRule, batch_size: int
) -> tuple[Served, FloatArray]:
    """Serve ``requests`` (``n`` rows) in consecutive batches of ``batch_size``: outcomes, and
    the wall-clock seconds of every batch."""
    n = check_requests(requests, n)
    batch_size = check_positive_int(batch_size, "batch_size")
    outcomes, seconds = [], []
    for start in range(0, n, batch_size):
        rows = np.arange(start, min(start + batch_size, n))
        batch = model.take(requests, rows)
        t0 = time.perf_counter()
        outcomes.append(serve(model, batch, rule, n=len(rows), check=False))
        seconds.append(time.perf_counter() - t0)
    return concat(outcomes), np.asarray(seconds)


def concat(outcomes: Sequence[Served]) -> Served:
    """Outcomes of consecutive batches as one."""
    return Served(
        np.concatenate([o.stop for o in outcomes]),
        np.concatenate([o.returned for o in outcomes]),
        np.concatenate([o.pred for o in outcomes]),
        np.concatenate([o.finish_s for o in outcomes]),
        [r for o in outcomes for r in o.stages],
    )
