"""The serving runtime (README: serving): it really stops computing, regroups the unfinished requests,
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

from ttamer.fitting.chain import FitConfig, fit_chain
from ttamer.fitting.posterior import PosteriorConfig, fit_posterior
from ttamer.policies import EntropyPolicy, MaxSoftmaxPolicy, PatiencePolicy, ScoringContext
from ttamer.policies.posterior import posterior_decisions
from ttamer.policies.recall import recall_decisions
from ttamer.serving import (
    FullModel,
    PatienceRule,
    PosteriorRule,
    RecallRule,
    ThresholdRule,
    TorchStages,
    poisson_arrivals,
    run_load,
    run_load_stagewise,
    serve,
    serve_in_batches,
    serve_one_by_one,
)
from ttamer.serving.decide import DecisionRule
from ttamer.serving.runtime import concat
from ttamer.traces.trace import Trace
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


@pytest.mark.parametrize("recall", [True, False])
@pytest.mark.parametrize(
    "config", [PosteriorConfig(n_bins=5, incumbent_bins=6), PosteriorConfig(score="entropy")]
)
def test_posterior_decisions_equal_the_trace_replay(config: PosteriorConfig, recall: bool) -> None:
    x, y = data()
    net = trained_net(seed=3)
    tr = trace_of(net, x, y)
    ctx = ScoringContext(tr.subset(np.arange(300)), tr.subset(np.arange(300, 600)))
    pm = fit_posterior(ctx.fit, config)
    lams = np.array([0.3, 0.8, 0.9, 0.95, 0.99, 0.999])
    replay = posterior_decisions(pm, ctx, lams, recall)
    model = TorchStages(net)
    xt = x[300:]
    for j, lam in enumerate(lams):
        rule = PosteriorRule(pm, float(lam), recall)
        for out in (
            serve(model, xt, rule),
            serve_in_batches(model, xt, len(xt), rule, 32)[0],
            serve_one_by_one(model, [xt[k : k + 1] for k in range(len(xt))], rule)[0],
        ):
            np.testing.assert_array_equal(out.stop, replay.stop[j])
            np.testing.assert_array_equal(out.returned, replay.returned[j])
    assert (replay.stop < N_STAGES - 1).any()
    if recall:
        assert (replay.returned != replay.stop).any()  # earlier answers are really returned


@pytest.mark.parametrize("config", [FitConfig(n_bins=5), FitConfig(n_bins=4, agreement=True)])
def test_a_batch_shrunk_to_one_request_is_decided_on_floats_as_on_arrays(config: FitConfig) -> None:
    """Once a batch is down to one request, its later stages take the scalar decision (its
    memory carried over from the arrays and back): every outcome equals the vectorised path's."""
    x, y = data()
    net = trained_net(seed=3)
    ctx = ScoringContext(trace_of(net, x, y).subset(np.arange(300)), None, config)
    model = TorchStages(net)
    xt = x[300:]
    single_runs = 0
    pm = fit_posterior(ctx.fit, PosteriorConfig(n_bins=5, incumbent_bins=6))
    for rule in (RecallRule(ctx.fitted, 0.9), PatienceRule(1, N_STAGES), PosteriorRule(pm, 0.9)):
        for k in range(0, 200, 2):
            fast, slow = serve(model, xt[k : k + 2], rule), serve(model, xt[k : k + 2], rule, fast=False)
            for field in ("stop", "returned", "pred"):
                np.testing.assert_array_equal(getattr(fast, field), getattr(slow, field))
            single_runs += sum(r.batch_size == 1 for r in fast.stages)
    assert single_runs > 20


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


@pytest.mark.parametrize("rule_name", ["recall", "patience", "full"])
def test_stagewise_load_loop_decides_as_the_replay_and_merges_batches(rule_name: str) -> None:
    """Stage-level batching: every request gets the replay's decision, runs exactly the stages
    up to its stop, and the unfinished requests of several batches share later stage runs."""
    x, y = data()
    net = trained_net(seed=3)
    tr = trace_of(net, x, y)
    ctx = ScoringContext(tr.subset(np.arange(300)), tr.subset(np.arange(300, 600)), FitConfig(n_bins=5))
    xt = x[300:]
    if rule_name == "recall":
        rule: DecisionRule = RecallRule(ctx.fitted, 0.9)
        replay = recall_decisions(ctx.fitted.chain, ctx.test_states, np.array([0.9]))
        stop, returned = replay.stop[0], replay.returned[0]
    elif rule_name == "patience":
        rule = PatienceRule(1, N_STAGES)
        dec = PatiencePolicy().decide(ctx)
        j = int(np.flatnonzero(dec.knobs == 1)[0])
        stop, returned = dec.stop[j], dec.returned[j]
    else:
        rule = FullModel(N_STAGES)
        stop = returned = np.full(300, N_STAGES - 1)
    for seg in net.segments:
        cast(Counting, seg).rows = cast(Counting, seg).calls = 0
    res = run_load_stagewise(TorchStages(net), xt, 300, rule, 1e9, max_batch=16)  # all arrive at once
    np.testing.assert_array_equal(res.stop, stop)
    reached = [int((stop >= i).sum()) for i in range(N_STAGES)]
    assert counts(net) == reached  # a stopped request never runs a later stage
    assert (res.latency_s > 0).all() and res.batch_sizes.max() <= 16 and res.batch_sizes.sum() == sum(reached)
    calls = [cast(Counting, seg).calls for seg in net.segments]
    # full batches of merged stragglers (each earlier stage's last flush may leave one partial)
    assert all(c <= -(-r // 16) + i for i, (c, r) in enumerate(zip(calls, reached, strict=True)))
    per_batch = [int((stop[k : k + 16] >= i).any()) for i in range(1, N_STAGES) for k in range(0, 300, 16)]
    if rule_name != "full":  # fewer later-stage runs than batch by batch, where stragglers run alone
        assert sum(calls[1:]) < sum(per_batch)
    served = serve(TorchStages(net), xt, rule)  # the answers of one batch: the same predictions
    np.testing.assert_array_equal(res.pred, served.pred)
    np.testing.assert_array_equal(served.returned, returned)


def test_stagewise_loop_with_no_wait_runs_the_oldest_request_first() -> None:
    """``max_wait_s = 0``: the stage of the oldest queued request always runs next, so each
    batch's stragglers finish before new requests start: the later stages run exactly as
    batch by batch (one run per batch that still has requests there)."""
    x, y = data()
    net = trained_net(seed=3)
    conf = trace_of(net, x[300:], y[300:]).conf >= 0.6  # (300, stages)
    conf[:, -1] = True
    stop = conf.argmax(axis=1)  # the first confident exit, else the last
    rule = ThresholdRule("max_softmax", 0.6, N_STAGES)
    for seg in net.segments:
        cast(Counting, seg).rows = cast(Counting, seg).calls = 0
    res = run_load_stagewise(TorchStages(net), x[300:], 300, rule, 1e9, max_batch=16, max_wait_s=0.0)
    np.testing.assert_array_equal(res.stop, stop)
    calls = [cast(Counting, seg).calls for seg in net.segments]
    per_batch = [sum(int((stop[k : k + 16] >= i).any()) for k in range(0, 300, 16)) for i in range(N_STAGES)]
    assert calls == per_batch and 0 < calls[-1] < calls[0]


def test_stagewise_loop_serves_slow_arrivals_one_by_one() -> None:
    x, _ = data(20)
    rule = ThresholdRule("max_softmax", 0.5, N_STAGES)
    res = run_load_stagewise(TorchStages(tiny_net()), x, 20, rule, 50.0)
    assert len(res.latency_s) == 20 and (res.latency_s < 0.05).all() and res.duration_s > 0.1


def test_to_device_moves_tensors_and_token_batches_and_keeps_texts() -> None:
    from ttamer.serving.runtime import to_device
    from ttamer.workloads.text.exits.tokens import TokenBatch

    ids = torch.tensor([[1, 2, 0], [3, 4, 5]])
    batch = TokenBatch(ids, (ids > 0).long(), None)
    texts = ["a", "b"]
    moved = to_device((texts, batch, torch.ones(2)), torch.device("cpu"))
    assert moved[0] is texts
    assert torch.equal(moved[1].input_ids, ids) and torch.equal(moved[1].attention_mask, batch.attention_mask)
    assert moved[1].token_type_ids is None and torch.equal(moved[2], torch.ones(2))


def test_batch1_probabilities_and_scores_are_the_traces_bit_for_bit() -> None:
    """The batch-1 path works on Python floats: numpy's summation order, the same division,
    the same scores, the same first argmax, for any number of classes."""
    from ttamer.serving.decide import argmax_of_row, numpy_sum, stage_score, stage_score_of_row

    rng = np.random.default_rng(0)
    for n_classes in (1, 2, 3, 7, 8, 9, 10, 17, 100, 128, 129, 300, 1000):
        for _ in range(40):
            logits = torch.from_numpy(rng.normal(0.0, rng.choice([0.3, 3.0, 30.0]), (1, n_classes))).float()
            model = TorchStages(nn.Identity())
            exact = model.probabilities(logits)  # (1, C) float64
            fast = model.probabilities_of_row(logits)
            assert fast == exact[0].tolist()
            values = rng.random(n_classes) * rng.choice([1e-9, 1.0, 1e6])
            assert numpy_sum(values.tolist()) == values.sum()
            assert argmax_of_row(fast) == int(exact[0].argmax())
            for score in ("max_softmax", "entropy") + (("margin",) if n_classes > 1 else ()):
                assert stage_score_of_row(fast, score) == stage_score(exact, score)[0]
    tie = [0.25, 0.5, 0.5, 0.25]
    assert argmax_of_row(tie) == int(np.argmax(tie)) == 1


# ----------------------------------------------------------------------------- bad input


def _fitted_rule() -> tuple[TorchStages, DecisionRule, torch.Tensor]:
    x, y = data()
    net = trained_net(seed=3)
    ctx = ScoringContext(trace_of(net, x, y).subset(np.arange(300)), None)
    return TorchStages(net), RecallRule(ctx.fitted, 0.9), x


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda m, r, x: run_load(m, x, 20, r, rate=float("nan")), "rate"),
        (lambda m, r, x: run_load_stagewise(m, x, 20, r, rate=float("nan")), "rate"),
        (lambda m, r, x: run_load_stagewise(m, x, 20, r, rate=float("inf")), "rate"),
        (lambda m, r, x: run_load(m, x, 20, r, rate=-5.0), "rate"),
        (lambda m, r, x: run_load(m, x, 20, r, rate="fast"), "rate"),
        (lambda m, r, x: run_load(m, x, 20, r, rate=100.0, max_batch=0), "max_batch"),
        (lambda m, r, x: run_load_stagewise(m, x, 20, r, rate=100.0, max_wait_s=float("nan")), "max_wait_s"),
        (lambda m, r, x: run_load(m, x, len(x) + 1, r, rate=100.0), "n"),
        (lambda m, r, x: run_load(m, x, 0, r, rate=100.0), "n"),
        (lambda m, r, x: serve_in_batches(m, x, 10, r, 0), "batch_size"),
        (lambda m, r, x: serve_in_batches(m, x, 10, r, -1), "batch_size"),
        (lambda m, r, x: serve_in_batches(m, x, 10, r, 2.5), "batch_size"),
        (lambda m, r, x: serve(m, x[:0], r), "requests"),
        (lambda m, r, x: serve(m, x[:5], r, n=6), "n"),
        (lambda m, r, x: serve(m, x[:, :3], r), "requests"),
        (lambda m, r, x: serve(m, x[:1, :3], r), "requests"),
        (lambda m, r, x: serve(m, torch.full_like(x[:4], float("nan")), r), "requests"),
        (lambda m, r, x: serve(m, torch.cat([x[:3], torch.full_like(x[:1], float("inf"))]), r), "requests"),
        (lambda m, r, x: serve_one_by_one(m, [x[:1], x[:1] * float("nan")], r), "requests"),
        (lambda m, r, x: serve_one_by_one(m, [], r), "requests"),
        (lambda m, r, x: serve(m, "not a batch", r), "requests"),
    ],
)
def test_bad_serving_input_is_refused_by_name(call: Callable[..., Any], field: str) -> None:
    from ttamer.errors import FieldError

    model, rule, x = _fitted_rule()
    with pytest.raises(FieldError) as err:
        call(model, rule, x)
    assert err.value.field == field, str(err.value)
    assert "\n" not in str(err.value)


def test_request_checks_understand_text_batches() -> None:
    """Text workloads serve (raw sentences, token batch) pairs: counted by their rows, and a
    NaN inside a batch object (a dataclass of tensors) is still found."""
    from dataclasses import dataclass

    from ttamer.errors import FieldError
    from ttamer.serving.checks import check_requests
    from ttamer.workloads.text.exits.tokens import TokenBatch

    tokens = TokenBatch(torch.ones((3, 4), dtype=torch.long), torch.ones((3, 4), dtype=torch.long))
    assert check_requests((["a", "b", "c"], tokens)) == 3
    assert check_requests(tokens, 2) == 2
    with pytest.raises(FieldError, match="asks for 4"):
        check_requests((["a", "b", "c"], tokens), 4)

    @dataclass
    class Hidden:
        hidden: torch.Tensor

    bad = torch.zeros((3, 2))
    bad[1, 0] = float("nan")
    with pytest.raises(FieldError, match="request 1 holds NaN"):
        check_requests(Hidden(bad))
