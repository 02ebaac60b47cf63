"""Costs of stage skipping: after running exit ``u`` a policy may jump to any later exit ``v``.

A trace's ``cost[i]`` is the incremental cost of stage ``i`` right after stage ``i - 1``: in an
early-exit network, backbone segment ``i`` plus exit head ``i``. Jumping from exit ``u`` to exit
``v`` runs the backbone segments ``u+1..v`` and only the head of ``v``; the heads in between are
skipped. Two fields of ``trace.meta`` (JSON strings) describe that split:

``exit_head_cost``  JSON list of n floats: the head's share of each stage's cost (same unit and
                    batch size as ``cost``), in ``[0, cost[i]]``;
``backbone_group``  JSON list of n ints: stages sharing one backbone have the same id, and the
                    stages of a group are contiguous. Stages of different groups are separate
                    models: skipping one skips all of it.

The multi-exit producers (``ttamer.workloads``) record both; model cascades and importers record
each stage as its own group with head cost 0. :func:`skip_meta` writes them,
:func:`skip_cost_matrix` turns them into the cost of every jump.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ttamer.errors import FieldError
from ttamer.traces.trace import Trace, TraceError

HEAD_FIELD = "exit_head_cost"
GROUP_FIELD = "backbone_group"
ASSUMPTIONS = ("independent",)
# a head may exceed its stage's cost by this much (relative to the stage cost, or absolute below 1)
HEAD_TOLERANCE = 1e-9

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class SkipStructure:
    """Per stage: ``cost`` (the trace's), ``head`` (the exit head's share, clipped to
    ``[0, cost]``), ``segment`` (``cost - head``) and ``group`` (backbone group id)."""

    cost: FloatArray
    head: FloatArray
    group: IntArray

    @property
    def segment(self) -> FloatArray:
        return np.asarray(self.cost - self.head, dtype=np.float64)

    @property
    def n_stages(self) -> int:
        return int(self.cost.size)


# ------------------------------------------------------------------------------------ writing


def skip_meta(head_cost: ArrayLike, stage_cost: ArrayLike, groups: Sequence[int]) -> dict[str, str]:
    """The two meta fields: ``head_cost`` clipped to ``[0, stage_cost]`` (NaN, i.e. not
    measured, counts as 0) and ``groups``, as JSON."""
    cost = np.asarray(stage_cost, dtype=np.float64).reshape(-1)
    head = np.nan_to_num(np.asarray(head_cost, dtype=np.float64).reshape(-1), nan=0.0)
    if head.shape != cost.shape or len(groups) != cost.size:
        raise ValueError(
            f"need a head cost and a group per stage ({cost.size}), got {head.size}, {len(groups)}"
        )
    clipped = np.clip(head, 0.0, cost)
    return {
        HEAD_FIELD: json.dumps([float(h) for h in clipped]),
        GROUP_FIELD: json.dumps([int(g) for g in groups]),
    }


def independent_meta(n_stages: int) -> dict[str, str]:
    """Meta for ``n_stages`` separate models (a model cascade): own group each, head cost 0."""
    return skip_meta(np.zeros(n_stages), np.zeros(n_stages), list(range(n_stages)))


def shared_backbone_groups(n_stages: int, first: int = 0) -> list[int]:
    """``n_stages`` stages on one backbone: all in group ``first``."""
    return [first] * n_stages


# ------------------------------------------------------------------------------------ reading


def skip_structure(trace: Trace, assume: str | None = None) -> SkipStructure:
    """The validated head costs and groups of ``trace`` (from its meta). Without the meta
    fields, ``assume="independent"`` treats every stage as its own model (head cost 0); else a
    :class:`~ttamer.traces.trace.TraceError` names the missing field."""
    if assume is not None and assume not in ASSUMPTIONS:
        raise FieldError("assume", f"unknown {assume!r}; choose from {ASSUMPTIONS} or None")
    cost = np.asarray(trace.cost, dtype=np.float64)
    n = cost.size
    has_head, has_group = HEAD_FIELD in trace.meta, GROUP_FIELD in trace.meta
    if not has_head and not has_group and assume == "independent":
        return SkipStructure(cost, np.zeros(n), np.arange(n, dtype=np.int64))
    if not has_head:
        raise TraceError(f"meta.{HEAD_FIELD}", _missing_message(HEAD_FIELD))
    if not has_group:
        raise TraceError(f"meta.{GROUP_FIELD}", _missing_message(GROUP_FIELD))
    head = _head_costs(trace.meta[HEAD_FIELD], cost)
    group = _groups(trace.meta[GROUP_FIELD], n)
    return SkipStructure(cost, head, group)


def _missing_message(field: str) -> str:
    return (
        f"is missing: the trace does not record its exit heads' share of each stage's cost "
        f"(meta.{field}; traces made before stage skipping lack it). Re-produce the trace with "
        "its producer (e.g. ttamer-run workload=<name> workload.recompute=true, or re-import it), "
        "or pass assume='independent' to treat every stage as a separate model with head cost 0"
    )


def _json_list(raw: str, field: str, n: int) -> list[Any]:
    try:
        values = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise TraceError(field, f"is not valid JSON ({exc.msg})") from None
    if not isinstance(values, list):
        raise TraceError(field, f"must be a JSON list, got {type(values).__name__}")
    if len(values) != n:
        raise TraceError(field, f"has {len(values)} entries for {n} stages")
    return values


def _head_costs(raw: str, cost: FloatArray) -> FloatArray:
    field = f"meta.{HEAD_FIELD}"
    values = _json_list(raw, field, cost.size)
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
        raise TraceError(field, f"must hold numbers, got {values}")
    head = np.asarray(values, dtype=np.float64)
    if not np.isfinite(head).all() or (head < 0).any():
        i = int(np.argmax(~np.isfinite(head) | (head < 0)))
        raise TraceError(field, f"stage {i + 1}: head cost {values[i]} must be finite and >= 0")
    over = head > cost + HEAD_TOLERANCE * np.maximum(cost, 1.0)
    if over.any():
        i = int(np.argmax(over))
        raise TraceError(
            field, f"stage {i + 1}: head cost {head[i]:.6g} exceeds its stage's cost {cost[i]:.6g}"
        )
    return np.minimum(head, cost)


def _groups(raw: str, n: int) -> IntArray:
    field = f"meta.{GROUP_FIELD}"
    values = _json_list(raw, field, n)
    if any(isinstance(v, bool) or not isinstance(v, int) for v in values):
        raise TraceError(field, f"must hold integer group ids, got {values}")
    seen: set[int] = set()
    for i, g in enumerate(values):
        if g in seen and g != values[i - 1]:
            raise TraceError(field, f"stage {i + 1} returns to group {g}: a group's stages must be adjacent")
        seen.add(g)
    return np.asarray(values, dtype=np.int64)


# ------------------------------------------------------------------------------------ costs


def skip_cost_matrix(trace: Trace, assume: str | None = None) -> FloatArray:
    """The cost of every jump, shape ``(n + 1, n)``: ``C[0, v]`` runs exit ``v`` first (from the
    root), ``C[u + 1, v]`` runs exit ``v`` right after exit ``u`` (``u < v``; other entries NaN).

    A jump pays exit ``v``'s stage cost plus the segments (stage cost minus head cost) of the
    stages of ``v``'s group before ``v`` that are not yet computed: those after ``u`` when ``u``
    is in ``v``'s group, else all from the group's first stage. So ``C[u + 1, u + 1]`` is
    exactly ``cost[u + 1]`` and ``C[0, 0]`` is ``cost[0]``. ``assume``: see
    :func:`skip_structure`."""
    s = skip_structure(trace, assume)
    n = s.n_stages
    out = np.full((n + 1, n), np.nan)
    for v in range(n):
        first = _group_start(s.group, v)
        out[0, v] = _jump(s, first, v)
        for u in range(v):
            out[u + 1, v] = _jump(s, u + 1 if s.group[u] == s.group[v] else first, v)
    return out


def _group_start(group: IntArray, v: int) -> int:
    start = v
    while start > 0 and group[start - 1] == group[v]:
        start -= 1
    return start


def _jump(s: SkipStructure, start: int, v: int) -> float:
    """Stage ``v``'s cost plus the segments of stages ``start..v-1``."""
    return float(s.cost[v] + s.segment[start:v].sum()) if start < v else float(s.cost[v])


def path_cost(matrix: FloatArray, stages: Sequence[int]) -> float:
    """The cost of running the exits ``stages`` (increasing, 0-based) in turn from the root."""
    total, prev = 0.0, -1
    for v in stages:
        if v <= prev:
            raise ValueError(f"stages must increase, got {list(stages)}")
        total += float(matrix[prev + 1, v])
        prev = v
    return total


def run_set_cost(s: SkipStructure, ran: NDArray[np.bool_]) -> FloatArray:
    """The cost of running a set of exits in any order, ``ran``: (..., n) bool -> (...).

    Each run exit pays its head; a backbone segment is computed once, when some exit at or after
    it in its group runs. For increasing paths this equals :func:`path_cost`."""
    ran = np.asarray(ran, dtype=bool)
    needed = np.empty_like(ran)
    starts = np.flatnonzero(np.r_[True, s.group[1:] != s.group[:-1]])
    for a, b in zip(starts, np.r_[starts[1:], s.n_stages], strict=True):
        later = np.logical_or.accumulate(ran[..., a:b][..., ::-1], axis=-1)[..., ::-1]
        needed[..., a:b] = later
    return np.asarray(needed @ s.segment + ran @ s.head, dtype=np.float64)


def tree_edge_costs(s: SkipStructure, parents: Sequence[int | None]) -> FloatArray:
    """The cost of running each exit ``v`` of a tree right after its ancestors (n,): what
    running ``v`` adds to the run set of its ancestors. Exact when no two branches share a
    backbone (separate models); otherwise siblings may share segments and the true cost of a
    run set (:func:`run_set_cost`) is at most the sum of these."""
    n = s.n_stages
    if len(parents) != n:
        raise FieldError("parents", f"has {len(parents)} entries for {n} stages")
    out = np.empty(n)
    for v in range(n):
        path = np.zeros(n, dtype=bool)
        p = parents[v]
        while p is not None:
            path[p] = True
            p = parents[p]
        with_v = path.copy()
        with_v[v] = True
        out[v] = run_set_cost(s, with_v) - run_set_cost(s, path)
    return out
