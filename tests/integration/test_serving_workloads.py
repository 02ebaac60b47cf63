"""Trained weights persisted next to the cached trace, and the digits model served for real with
the same decisions as the trace replay (a small, quickly trained digits config)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from _threads import one_thread  # noqa: F401 (an autouse fixture: one torch thread)

from ttamer.errors import FieldError
from ttamer.fitting.chain import FitConfig
from ttamer.policies import MaxSoftmaxPolicy, PatiencePolicy, ScoringContext
from ttamer.policies.recall import recall_decisions
from ttamer.serving import PatienceRule, RecallRule, ThresholdRule, TorchStages, serve, serve_one_by_one
from ttamer.traces.cache import cache_path
from ttamer.workloads.base import workload
from ttamer.workloads.latency import LatencyConfig
from ttamer.workloads.multi_exit import exit_probabilities
from ttamer.workloads.trained import cached_model, weights_path
from ttamer.workloads.vision.digits.config import DigitsConfig, DigitsModelConfig, DigitsTrainConfig
from ttamer.workloads.vision.digits.produce import load_split

SMALL = DigitsConfig(
    test_size=300,
    model=DigitsModelConfig(channels=(4, 8, 8, 16), convs=(1, 1, 1, 1)),
    train=DigitsTrainConfig(epochs=2, batch_size=64, lr=0.02),
    latency=LatencyConfig(batch_sizes=(1,), warmup=1, repeats=2),
)
SEED = 0
KEY = SMALL.trace_key(SEED)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> Path:  # noqa: F811
    """A cache holding the small digits model (trained once for this module)."""
    path = tmp_path_factory.mktemp("cache")
    _, _, reused = cached_model(SMALL, SEED, path, path)
    assert not reused
    return path


def test_weights_are_saved_with_the_trace_and_reused(cache_dir: Path) -> None:
    tmp_path = cache_dir
    wpath, tpath = weights_path(tmp_path, "digits", KEY), cache_path(tmp_path, "digits", KEY)
    assert wpath.is_file() and tpath.is_file() and wpath.name == tpath.name.replace(".npz", ".weights.pt")
    mtime = os.stat(wpath).st_mtime_ns
    again, trace2, reused2 = cached_model(SMALL, SEED, tmp_path, tmp_path)
    assert reused2 and os.stat(wpath).st_mtime_ns == mtime
    x = torch.from_numpy(load_split(SMALL.test_size, SEED)[2])
    assert trace2.probs is not None
    np.testing.assert_allclose(exit_probabilities(again, x), trace2.probs, atol=1e-6)


def test_corrupt_weights_are_rebuilt(tmp_path: Path, cache_dir: Path) -> None:
    for f in (p for p in cache_dir.iterdir() if p.is_file()):  # not the .locks folder
        (tmp_path / f.name).write_bytes(f.read_bytes())
    wpath = weights_path(tmp_path, "digits", KEY)
    wpath.write_bytes(b"not a state dict")
    _, _, reused = cached_model(SMALL, SEED, tmp_path, tmp_path)
    assert not reused and wpath.stat().st_size > 1000
    _, _, reused = cached_model(SMALL, SEED, tmp_path, tmp_path)
    assert reused


def test_loaded_digits_model_serves_as_the_replay_decides(cache_dir: Path) -> None:
    model, trace, reused = cached_model(SMALL, SEED, cache_dir, cache_dir)
    assert reused
    served_model, requests = workload("digits").function("held_out_requests")(SMALL, SEED, model, trace)
    x = torch.from_numpy(load_split(SMALL.test_size, SEED)[2])
    torch.testing.assert_close(requests, x, rtol=0, atol=0)  # the trace's samples, in its order
    assert isinstance(served_model, TorchStages) and served_model.model is model
    fit_rows, test_rows = np.arange(0, 300, 2), np.arange(1, 300, 2)
    ctx = ScoringContext(trace.subset(fit_rows), trace.subset(test_rows), FitConfig(n_bins=4))
    xt = x[torch.as_tensor(test_rows)]
    served = TorchStages(model)
    lams = np.array([0.5, 0.9, 0.99])
    replay = recall_decisions(ctx.fitted.chain, ctx.test_states, lams)
    for j, lam in enumerate(lams):
        rule = RecallRule(ctx.fitted, float(lam))
        for out in (
            serve(served, xt, rule),
            serve_one_by_one(served, [xt[k : k + 1] for k in range(150)], rule)[0],
        ):
            np.testing.assert_array_equal(out.stop, replay.stop[j])
            np.testing.assert_array_equal(out.returned, replay.returned[j])
            np.testing.assert_array_equal(out.pred, ctx.test.pred[np.arange(150), replay.returned[j]])
    ms = MaxSoftmaxPolicy(percentiles=(30.0, 70.0)).decide(ctx)
    for j, t in enumerate(ms.knobs):
        np.testing.assert_array_equal(
            serve(served, xt, ThresholdRule("max_softmax", float(t), 4)).stop, ms.stop[j]
        )
    pa = PatiencePolicy().decide(ctx)
    for j, k in enumerate(pa.knobs):
        np.testing.assert_array_equal(serve(served, xt, PatienceRule(int(k), 4)).stop, pa.stop[j])


def test_held_out_requests_check_the_trace(cache_dir: Path) -> None:
    """Requests reloaded for another seed are not the trace's samples: refused."""
    model, trace, _ = cached_model(SMALL, SEED, cache_dir, cache_dir)
    with pytest.raises(ValueError, match="not the trace's"):
        workload("digits").function("held_out_requests")(SMALL, SEED + 1, model, trace)


def test_a_workload_without_a_model_is_refused(tmp_path: Path) -> None:
    from ttamer.workloads.frugalml import FrugalmlConfig

    with pytest.raises(FieldError, match=r"^workload\.name: workload 'frugalml' has no produce_with_model"):
        cached_model(FrugalmlConfig(), 0, tmp_path)
    assert not list(tmp_path.iterdir())
