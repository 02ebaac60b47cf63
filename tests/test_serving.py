"""The serving runtime (SPEC §5): it really stops computing, regroups the unfinished requests,
and decides exactly as the trace replay does, sample by sample, single and batched."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, cast

import numpy as np
import pytest
import torch
from _threads import one_thread  # noqa: F401 (an autouse fixture: one torch thread)
from torch import nn

from ttamer.fitting import FitConfig, fit_chain
from ttamer.policies import EntropyPolicy, MaxSoftmaxPolicy, PatiencePolicy, ScoringContext
from ttamer.policies.recall import recall_decisions
from ttamer.serving import (
    FullModel,
    PatienceRule,
    RecallRule,
    ThresholdRule,
    TorchStages,
    poisson_arrivals,
    run_load,
    serve,
    serve_in_batches,
    serve_one_by_one,
)
from ttamer.serving.decide import DecisionRule
from ttamer.serving.runtime import concat
from ttamer.traces import Trace
from ttamer.workloads.multi_exit import MultiExitNet, TrainConfig, exit_probabilities, train_exits

N_CLASSES, DIM, N_STAGES = 5, 12, 4


class Counting(nn.Module):
    """A segment that counts the rows it is run on (and can refuse to run)."""

    def __init__(self, inner: nn.Module, fail: bool = False):
        super().__init__()
        self.inner, self.rows, self.calls, self.fail = inner, 0, 0, fail

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fail:
            raise AssertionError("this stage must not run")
        self.calls += 1
        self.rows += int(x.shape[0])
        return self.inner(x)


def tiny_net(seed: int = 0, fail_after: int | None = None) -> MultiExitNet:
    """Random weights: each stage a linear layer + tanh, each head a linear layer (scaled so
    that confidences spread over (0, 1))."""
    torch.manual_seed(seed)
    segments = [
        Counting(
            nn.Sequential(nn.Linear(DIM, DIM), nn.Tanh()), fail=fail_after is not None and i > fail_after
        )
        for i in range(N_STAGES)
    ]
    heads = [nn.Linear(DIM, N_CLASSES) for _ in range(N_STAGES)]
    with torch.no_grad():
        for i, h in enumerate(heads):
            h.weight.mul_(1.0 + 1.5 * i)
    return MultiExitNet(segments, heads)


def data(n: int = 600, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and labels of a noisy nonlinear teacher (learnable, not perfectly)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, DIM, generator=g)
    teacher = torch.randn(DIM, N_CLASSES, generator=torch.Generator().manual_seed(99))
    y = (torch.tanh(x) @ teacher + 0.8 * torch.randn(n, N_CLASSES, generator=g)).argmax(dim=1)
    return x, y


@functools.cache
def trained_net(seed: int = 0) -> MultiExitNet:
    """Trained briefly on the teacher's data (once per seed for the whole module)."""
    net = tiny_net(seed)
    x, y = data(600, seed=7)
    train_exits(net, x, y, TrainConfig(epochs=4, batch_size=64, lr=0.02, seed=seed))
    return net


def trace_of(net: MultiExitNet, x: torch.Tensor, y: torch.Tensor) -> Trace:
    probs = exit_probabilities(net, x)
    return Trace.build(
        labels=y.numpy(),
        pred=probs.argmax(axis=2),
        conf=np.clip(probs.max(axis=2), 0, 1),
        cost=[1.0, 2.0, 1.5, 3.0],
        cost_unit="ms",
        probs=probs / probs.sum(axis=2, keepdims=True),
    )


def counts(net: MultiExitNet) -> list[int]:
    return [cast(Counting, seg).rows for seg in net.segments]


def test_a_request_that_exits_never_runs_a_later_stage() -> None:
    x, _ = data(50)
    net = tiny_net(fail_after=0)  # stage 2 onwards raise
    model = TorchStages(net)
    out = serve(model, x, ThresholdRule("max_softmax", 0.0, N_STAGES))  # everyone exits at stage 1
    assert (out.stop == 0).all() and (out.returned == 0).all()
    out1, lat = serve_one_by_one(
        model, [x[j : j + 1] for j in range(5)], ThresholdRule("max_softmax", 0.0, 4)
    )
    assert (out1.stop == 0).all() and (lat > 0).all()
    with pytest.raises(AssertionError, match="must not run"):
        serve(model, x, FullModel(N_STAGES))


def test_unfinished_requests_are_regrouped_and_rows_counted() -> None:
    x, y = data()
    net = trained_net()
    tr = trace_of(net, x, y)
    fitted = fit_chain(tr.subset(np.arange(300)), FitConfig(n_bins=5))
    rule = RecallRule(fitted, 0.9)
    for seg in net.segments:
        cast(Counting, seg).rows = 0
    out = serve(TorchStages(net), x, rule)
    ran = [int((out.stop >= i).sum()) for i in range(N_STAGES)]
    assert counts(net) == ran  # each stage ran on exactly the requests that had not stopped
    assert ran[0] > ran[-1] > 0  # some exit early, some run to the end
    sizes = [r.batch_size for r in out.stages]
    assert sizes == ran[: len(sizes)]
    assert np.isfinite(out.finish_s).all() and (out.finish_s > 0).all()
    # the answer is the returned stage's prediction
    assert tr.probs is not None
    np.testing.assert_array_equal(out.pred, tr.pred[np.arange(len(y)), out.returned])


@pytest.mark.parametrize(
    "config", [FitConfig(n_bins=5), FitConfig(n_bins=4, score="entropy", agreement=True)]
)
def test_recall_decisions_equal_the_trace_replay(config: FitConfig) -> None:
    x, y = data()
    net = trained_net(seed=3)
    tr = trace_of(net, x, y)
    fit_rows, test_rows = np.arange(300), np.arange(300, 600)
    ctx = ScoringContext(tr.subset(fit_rows), tr.subset(test_rows), config)
    lams = np.array([0.3, 0.8, 0.9, 0.95, 0.99, 0.999])
    replay = recall_decisions(ctx.fitted.chain, ctx.test_states, lams)
    model = TorchStages(net)
    xt = x[torch.as_tensor(test_rows)]
    early = 0
    for j, lam in enumerate(lams):
        rule = RecallRule(ctx.fitted, float(lam))
        for out in (
            serve(model, xt, rule),
            serve_in_batches(model, xt, len(xt), rule, 32)[0],
            serve_one_by_one(model, [xt[k : k + 1] for k in range(len(xt))], rule)[0],
            concat([serve(model, xt[k : k + 1], rule, fast=False) for k in range(0, len(xt), 3)]),
        ):
            if len(out.stop) < len(xt):  # the vectorised path at batch 1, on every third request
                np.testing.assert_array_equal(out.stop, replay.stop[j][::3])
                np.testing.assert_array_equal(out.returned, replay.returned[j][::3])
                continue
            np.testing.assert_array_equal(out.stop, replay.stop[j])
            np.testing.assert_array_equal(out.returned, replay.returned[j])
        early += int((replay.stop[j] < N_STAGES - 1).sum())
    assert early > 0
    assert (replay.returned != replay.stop).any()  # recall really returns earlier stages here


def test_threshold_and_patience_decisions_equal_the_trace_replay() -> None:
    x, y = data()
    net = trained_net(seed=5)
    tr = trace_of(net, x, y)
    ctx = ScoringContext(tr.subset(np.arange(300)), tr.subset(np.arange(300, 600)))
    model = TorchStages(net)
    xt = x[300:]
    policies: list[tuple[Any, Callable[[float], DecisionRule]]] = [
        (MaxSoftmaxPolicy(percentiles=(10.0, 50.0, 80.0)), lambda k: ThresholdRule("max_softmax", k, 4)),
        (EntropyPolicy(percentiles=(20.0, 60.0)), lambda k: ThresholdRule("entropy", k, 4)),
        (PatiencePolicy(), lambda k: PatienceRule(int(k), 4)),
    ]
    for policy, make in policies:
        dec = policy.decide(ctx)
        for j, knob in enumerate(dec.knobs):
            rule = make(float(knob))
            singles = serve_one_by_one(model, [xt[k : k + 1] for k in range(0, 300, 5)], rule)[0]
            np.testing.assert_array_equal(singles.stop, dec.stop[j][::5])
            for out in (serve(model, xt, rule), serve_in_batches(model, xt, len(xt), rule, 32)[0]):
                np.testing.assert_array_equal(out.stop, dec.stop[j], err_msg=f"{policy.name} {knob}")
                np.testing.assert_array_equal(out.returned, dec.returned[j])


def test_full_model_runs_every_stage() -> None:
    x, _ = data(40)
    net = tiny_net()
    out = serve(TorchStages(net), x, FullModel(N_STAGES))
    assert (out.stop == N_STAGES - 1).all() and counts(net) == [40] * N_STAGES
    assert sum(r.decide_s for r in out.stages[:-1]) == 0.0


def test_rule_and_model_must_agree_on_stages() -> None:
    x, _ = data(4)
    with pytest.raises(ValueError, match="stages"):
        serve(TorchStages(tiny_net()), x, FullModel(3))


def test_extra_first_stage_on_raw_requests() -> None:
    """A non-network stage 0 (as VADER for SST-2): requests are (raw, tensor) pairs."""
    x, _ = data(30)
    raw = [float(v) for v in x[:, 0]]

    def first(values: list[float]) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-5.0 * np.asarray(values)))
        return np.stack([1 - p, p, 0 * p, 0 * p, 0 * p], axis=1)

    net = tiny_net()
    model = TorchStages(net, first=first)
    assert model.n_stages == N_STAGES + 1
    out = serve(model, (raw, x), ThresholdRule("max_softmax", 0.9, N_STAGES + 1), n=30)
    exited = int((out.stop == 0).sum())
    assert 0 < exited < 30 and counts(net)[0] == 30 - exited


def test_poisson_load_loop() -> None:
    a = poisson_arrivals(1000.0, 500, seed=0)
    assert a[0] == 0 and (np.diff(a) >= 0).all() and 0.3 < a[-1] < 0.7
    x, _ = data(60)
    net = tiny_net()
    res = run_load(TorchStages(net), x, 60, ThresholdRule("max_softmax", 0.5, N_STAGES), 2000.0, max_batch=8)
    assert (res.latency_s > 0).all() and res.batch_sizes.sum() == 60 and res.batch_sizes.max() <= 8
    assert res.throughput > 0 and set(res.summary()) >= {"p50_ms", "p95_ms", "throughput"}


def test_to_device_moves_tensors_and_token_batches_and_keeps_texts() -> None:
    from ttamer.serving.runtime import to_device
    from ttamer.workloads.text_exits import TokenBatch

    ids = torch.tensor([[1, 2, 0], [3, 4, 5]])
    batch = TokenBatch(ids, (ids > 0).long(), None)
    texts = ["a", "b"]
    moved = to_device((texts, batch, torch.ones(2)), torch.device("cpu"))
    assert moved[0] is texts
    assert torch.equal(moved[1].input_ids, ids) and torch.equal(moved[1].attention_mask, batch.attention_mask)
    assert moved[1].token_type_ids is None and torch.equal(moved[2], torch.ones(2))
