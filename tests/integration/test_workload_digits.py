"""The digits workload: config parsing, determinism, and the end-to-end Hydra run (trace cached,
reused on the second run)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_app

from ttamer.errors import FieldError
from ttamer.evaluation.scoring import COLUMNS
from ttamer.model.skip_costs import skip_structure
from ttamer.traces.trace import load_trace
from ttamer.workloads.latency import LatencyConfig
from ttamer.workloads.vision.digits.config import DigitsConfig, DigitsModelConfig, DigitsTrainConfig
from ttamer.workloads.vision.digits.produce import build_model, load_split, produce, train_config

ROOT = Path(__file__).resolve().parents[2]
SMALL = DigitsConfig(
    train=DigitsTrainConfig(epochs=2, batch_size=32, lr=0.02), latency=LatencyConfig(warmup=1, repeats=2)
)


def test_config_defaults_overrides_and_errors() -> None:
    model = DigitsModelConfig(channels=(4, 8), convs=(1, 1), downsample=(True, False), head_pool=(1, 2))
    cfg = DigitsConfig(n_splits=5, model=model)
    assert cfg.model.n_stages == 2 and cfg.test_size == 500 and cfg.n_splits == 5
    assert train_config(cfg, 3).seed == 3 and train_config(cfg, 3).epochs == 30
    with pytest.raises(FieldError, match=r"^convs: needs one entry per stage \(3, as channels\), got 2"):
        DigitsModelConfig(channels=(4, 8, 16), convs=(1, 1))
    with pytest.raises(FieldError, match=r"^downsample: halves the 8x8 image too often"):
        DigitsModelConfig(channels=(4,) * 4, convs=(1,) * 4, downsample=(True,) * 4, head_pool=(1,) * 4)
    with pytest.raises(FieldError, match=r"^epochs: must be >= 1, got 0"):
        DigitsTrainConfig(epochs=0)
    with pytest.raises(FieldError, match=r"^lr: must be > 0"):
        DigitsTrainConfig(lr=0.0)
    with pytest.raises(FieldError, match=r"^test_size: must leave both splits >= 10 of 1797"):
        DigitsConfig(test_size=5)
    with pytest.raises(FieldError, match=r"^workload\.test_size"):
        load_split(5, 0)
    assert len(load_split(0.3, 0)[3]) == round(0.3 * 1797)  # the library also takes a fraction


def test_the_app_builds_the_defaults_and_names_bad_keys() -> None:
    """The YAML and its dataclass compose to the dataclass defaults; a bad value fails with its
    dotted key, a misspelt key when Hydra composes."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import ConfigCompositionException

    from ttamer.app.configs import build_run, register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        assert build_run(compose("config", ["workload=digits", "logger=none"])).workload == DigitsConfig()
        bad = compose("config", ["workload=digits", "logger=none", "workload.train.lr=-1"])
        with pytest.raises(FieldError, match=r"^workload\.train\.lr: must be > 0, got -1"):
            build_run(bad)
        with pytest.raises(ConfigCompositionException, match="epoch"):
            compose("config", ["workload=digits", "logger=none", "workload.train.epoch=3"])


def test_split_is_stratified_scaled_and_seeded() -> None:
    x_tr, _, x_te, y_te = load_split(500, 0)
    assert x_te.shape == (500, 1, 8, 8) and len(x_tr) + len(x_te) == 1797
    assert 0.0 <= x_tr.min() and x_tr.max() <= 1.0 and x_tr.max() == 1.0
    assert np.bincount(y_te).min() >= 48  # about 50 per class
    np.testing.assert_array_equal(load_split(500, 0)[3], y_te)
    assert not np.array_equal(load_split(500, 1)[3], y_te)
    net = build_model(DigitsConfig().model, 0)
    assert net.n_stages == 4


def test_produce_is_deterministic_given_the_seed(tmp_path: Path) -> None:
    a = produce(SMALL, 0, tmp_path)
    b = produce(SMALL, 0, tmp_path)
    c = produce(SMALL, 1, tmp_path)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.probs is not None and b.probs is not None
    np.testing.assert_allclose(a.probs, b.probs, rtol=0, atol=1e-6)
    assert not np.array_equal(a.labels, c.labels)
    assert a.stage_names == ("exit1", "exit2", "exit3", "exit4")
    assert a.meta["n_test"] == "500" and a.meta["n_train"] == "1297"
    accuracy = json.loads(a.meta["test_accuracy"])
    np.testing.assert_allclose(list(accuracy.values()), a.correct.mean(axis=0), atol=1e-6)
    s = skip_structure(a)
    assert s.group.tolist() == [0, 0, 0, 0] and (s.head > 0).all() and (s.head <= a.cost).all()


def _run(run_dir: Path, cache_dir: Path) -> subprocess.CompletedProcess[str]:
    proc = run_app(
        "workload=digits", f"hydra.run.dir={run_dir}", f"workload.cache_dir={cache_dir}", "logger=none",
        "progress=false", "workload.train.epochs=4", "workload.train.batch_size=32", "workload.train.lr=0.02",
        "workload.latency.warmup=2", "workload.latency.repeats=5", "workload.n_splits=3",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.mark.slow
def test_digits_workload_end_to_end_and_cache_reuse(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    first = tmp_path / "run1"
    _run(first, cache_dir)

    for name in ("digits_points.csv", "digits_summary.csv", "digits_hulls.csv", ".hydra/config.yaml"):
        assert (first / name).is_file(), name
    assert (first / "fig_digits.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    points = pd.read_csv(first / "digits_points.csv")
    assert list(points.columns) == list(COLUMNS)
    assert set(points["split"]) == {0, 1, 2}
    assert {"recall", "no_recall", "max_softmax", "entropy", "patience", "static"} <= set(points["policy"])
    summary = pd.read_csv(first / "digits_summary.csv")
    assert "saving_at_delta_1" in set(summary["metric"])

    (cached,) = cache_dir.glob("digits-*.npz")
    trace = load_trace(cached)
    assert trace.n_samples == 500 and trace.stage_names == ("exit1", "exit2", "exit3", "exit4")
    accuracy = trace.correct.mean(axis=0)
    assert (accuracy > 0.5).all(), accuracy
    assert (trace.cost > 0).all() and trace.cost_unit.startswith("ms per request (batch 1")
    # the benchmark CSV is the trace's latency table: 4 stages x 2 batch sizes
    (bench,) = first.glob("benchmark-infer-fp32-pt*-digits.csv")
    table = pd.read_csv(bench)
    assert len(table) == 8 and list(table["stage_name"][:4]) == list(trace.stage_names)
    batch1 = table[table["batch_size"] == 1].sort_values("stage")["median_ms"].to_numpy()
    np.testing.assert_allclose(trace.cost, batch1)
    static = points[points["policy"] == "static"].groupby("knob")["mean_cost"].first().to_numpy()
    np.testing.assert_allclose(static, np.cumsum(trace.cost))

    # second run, same config: the trace comes from the cache, untouched, and the results repeat
    mtime = cached.stat().st_mtime_ns
    second = tmp_path / "run2"
    _run(second, cache_dir)
    (log_second,), (log_first,) = second.glob("*.log"), first.glob("*.log")  # Hydra's job log
    assert "reused from cache" in log_second.read_text()
    assert "computed" in log_first.read_text()
    assert cached.stat().st_mtime_ns == mtime
    assert [p for p in cache_dir.iterdir() if p.name != ".locks"] == [cached]
    pd.testing.assert_frame_equal(pd.read_csv(second / "digits_points.csv"), points)
    assert (second / bench.name).read_bytes() == bench.read_bytes()
