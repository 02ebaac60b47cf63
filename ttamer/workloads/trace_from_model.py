"""Turn a trained multi-exit model and a held-out split into a trace (README: traces): every exit's
class probabilities, and each stage's measured latency at batch size 1 as its cost (with the
exit head's share of it in ``meta``, for stage skipping: :mod:`ttamer.model.skip_costs`)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from numpy.typing import ArrayLike

from ttamer.model.skip_costs import shared_backbone_groups, skip_meta
from ttamer.traces.trace import Trace
from ttamer.workloads.latency import (
    LatencyConfig,
    environment,
    head_cost_per_request,
    measure_stage_latency,
)
from ttamer.workloads.multi_exit import MultiExitNet, exit_probabilities


def model_trace(
    model: MultiExitNet,
    x: torch.Tensor,
    y: torch.Tensor,
    latency: LatencyConfig,
    stage_names: Sequence[str] | None = None,
    meta: dict[str, str] | None = None,
) -> tuple[Trace, pd.DataFrame]:
    """The trace of ``model`` on ``x`` (N, ...) with labels ``y`` (N,), and its latency table.

    ``cost[i]`` = median milliseconds of stage ``i`` (segment + head) at the first batch size of
    ``latency`` (normally 1), per request; the whole latency table (every batch size) is
    returned and also kept in ``meta["latency"]`` as JSON. ``meta["exit_head_cost"]``: each
    exit head's median ms alone at that batch size, per request (clipped to the stage's cost);
    ``meta["backbone_group"]``: every stage in group 0 (one backbone)."""
    probs = exit_probabilities(model, x)
    table = measure_stage_latency(model, x[: min(len(x), 64)], latency)
    b0 = latency.batch_sizes[0]
    per_request = table[table["batch_size"] == b0].sort_values("stage")["median_ms"].to_numpy() / b0
    env = environment(x.device)  # the device the model ran on
    info = {
        **(meta or {}),
        **{f"env_{k}": v for k, v in env.items()},
        "latency": table.to_json(orient="records"),
        "latency_batch_size": str(b0),
        **skip_meta(head_cost_per_request(table, b0), per_request, shared_backbone_groups(model.n_stages)),
    }
    names = list(stage_names) if stage_names is not None else [f"exit{i + 1}" for i in range(model.n_stages)]
    trace = Trace.build(
        labels=y.cpu().numpy(),
        pred=probs.argmax(axis=2),
        conf=np.clip(probs.max(axis=2), 0.0, 1.0),
        cost=per_request,
        stage_names=names,
        cost_unit=f"ms per request (batch {b0}, {env['device']})",
        probs=probs / probs.sum(axis=2, keepdims=True),
        meta=info,
    )
    return trace, table


def latency_table_from_trace(trace: Trace) -> pd.DataFrame:
    """The latency table saved in a trace's ``meta`` (empty if none)."""
    raw = trace.meta.get("latency")
    return pd.DataFrame(json.loads(raw)) if raw else pd.DataFrame()


def check_trace_labels(labels: ArrayLike, trace: Trace) -> None:
    """A ValueError unless ``labels`` (N,) are the trace's, in order: the held-out samples a
    workload reloads for serving must be the ones its trace was made on."""
    if not np.array_equal(np.asarray(labels), trace.labels):
        raise ValueError("the reloaded held-out samples are not the trace's (labels differ)")
