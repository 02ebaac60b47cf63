"""Every validation error of ``Trace.build`` / ``load_trace`` names the offending array; files
round-trip and are written atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ttamer.fitting.chain import FitConfig, fit_chain
from ttamer.traces.trace import Trace, TraceError, load_trace, save_trace, split_indices, stage_scores


def _arrays(n_samples: int = 6, n: int = 3, n_classes: int = 3, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(n_classes), size=(n_samples, n))
    return {
        "labels": rng.integers(0, n_classes, n_samples),
        "pred": probs.argmax(axis=2),
        "conf": probs.max(axis=2),
        "cost": np.array([1.0, 2.0, 4.0][:n] + [1.0] * max(0, n - 3)),
        "stage_names": [f"s{i}" for i in range(n)],
        "cost_unit": "ms",
        "probs": probs,
    }


def _build(**changes: Any) -> Trace:
    kw = _arrays()
    kw.update(changes)
    return Trace.build(**kw)


def test_valid_trace_builds_and_is_read_only() -> None:
    t = _build()
    assert (t.n_samples, t.n_stages) == (6, 3)
    assert t.stage_names == ("s0", "s1", "s2")
    np.testing.assert_allclose(t.cumulative_cost, [1.0, 3.0, 7.0])
    for arr in (t.labels, t.pred, t.conf, t.cost, t.probs):
        assert arr is not None and not arr.flags.writeable
    # integral floats are accepted as class ids
    assert _build(labels=_arrays()["labels"].astype(float)).labels.dtype == np.int64


BAD_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("labels 2-d", {"labels": np.zeros((6, 1), dtype=int)}, "labels"),
    ("labels empty", {"labels": np.zeros(0, dtype=int)}, "labels"),
    ("labels not integral", {"labels": np.full(6, 0.5)}, "labels"),
    ("labels NaN", {"labels": np.array([0, 1, np.nan, 0, 1, 0])}, "labels"),
    ("labels negative", {"labels": np.array([0, 1, -1, 0, 1, 0]), "probs": None}, "labels"),
    ("labels >= classes of probs", {"labels": np.array([0, 1, 3, 0, 1, 0])}, "labels"),
    ("pred 1-d", {"pred": np.zeros(6, dtype=int)}, "pred"),
    ("pred row count", {"pred": np.zeros((5, 3), dtype=int)}, "pred"),
    ("pred no stages", {"pred": np.zeros((6, 0), dtype=int)}, "pred"),
    ("pred negative", {"pred": np.full((6, 3), -2), "probs": None}, "pred"),
    ("pred >= classes of probs", {"pred": np.full((6, 3), 3)}, "pred"),
    ("conf shape", {"conf": np.full((6, 2), 0.5)}, "conf"),
    ("conf transposed", {"conf": np.full((3, 6), 0.5)}, "conf"),
    ("conf above 1", {"conf": np.full((6, 3), 1.01)}, "conf"),
    ("conf below 0", {"conf": np.full((6, 3), -0.01)}, "conf"),
    ("conf NaN", {"conf": np.where(np.eye(6, 3) > 0, np.nan, 0.5)}, "conf"),
    ("conf inf", {"conf": np.full((6, 3), np.inf)}, "conf"),
    ("conf not numeric", {"conf": [["a"] * 3] * 6}, "conf"),
    ("cost shape", {"cost": np.ones(2)}, "cost"),
    ("cost negative", {"cost": np.array([1.0, -1.0, 1.0])}, "cost"),
    ("cost NaN", {"cost": np.array([1.0, np.nan, 1.0])}, "cost"),
    ("stage_names length", {"stage_names": ["a", "b"]}, "stage_names"),
    ("probs shape", {"probs": np.full((6, 2, 3), 1 / 3)}, "probs"),
    ("probs 2-d", {"probs": np.full((6, 3), 1 / 3)}, "probs"),
    ("probs do not sum to 1", {"probs": np.full((6, 3, 3), 0.3)}, "probs"),
    ("probs negative", {"probs": np.tile([1.2, -0.2, 0.0], (6, 3, 1))}, "probs"),
    ("probs NaN", {"probs": np.full((6, 3, 3), np.nan)}, "probs"),
]


@pytest.mark.parametrize(("changes", "field"), [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES])
def test_build_errors_name_the_array(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(TraceError) as info:
        _build(**changes)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


def test_conf_error_gives_the_entry() -> None:
    conf = np.full((6, 3), 0.5)
    conf[4, 2] = 1.5
    with pytest.raises(TraceError, match=r"\[4\]\[2\] = 1.5"):
        _build(conf=conf)


def test_probs_sum_tolerance() -> None:
    probs = _arrays()["probs"].copy()
    probs[:, :, 0] += 5e-4  # within 1e-3
    _build(probs=probs.copy())
    probs[2, 1, 0] += 0.01
    with pytest.raises(TraceError, match="sample 2 stage 2"):
        _build(probs=probs)


def test_labels_beyond_classes_are_fine_without_probs() -> None:
    t = _build(labels=np.array([0, 1, 7, 0, 1, 0]), probs=None)
    assert t.labels.max() == 7


# -------------------------------------------------------------------------------- files


def test_save_load_round_trip(tmp_path: Path) -> None:
    for probs in (True, False):
        kw = _arrays(n_samples=50, n=4, n_classes=5, seed=3)
        if not probs:
            kw["probs"] = None
        t = Trace.build(**kw, meta={"source": "unit test", "gpu": "none"})
        path = tmp_path / f"t{probs}.npz"
        save_trace(t, path)
        back = load_trace(path)
        for name in ("labels", "pred", "conf", "cost"):
            np.testing.assert_array_equal(getattr(back, name), getattr(t, name), err_msg=name)
        assert back.stage_names == t.stage_names
        assert back.cost_unit == "ms"
        assert back.meta == {"source": "unit test", "gpu": "none"}
        if probs:
            assert back.probs is not None and t.probs is not None
            np.testing.assert_array_equal(back.probs, t.probs)
        else:
            assert back.probs is None
        # no pickle: the file loads with allow_pickle=False
        with np.load(path, allow_pickle=False) as npz:
            assert "labels" in npz.files


def test_save_leaves_no_temp_files(tmp_path: Path) -> None:
    t = _build()
    save_trace(t, tmp_path / "a.npz")
    save_trace(t, tmp_path / "a.npz")  # overwrite
    assert sorted(os.listdir(tmp_path)) == ["a.npz"]


def test_failed_save_keeps_old_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.npz"
    save_trace(_build(), path)
    before = path.read_bytes()

    def boom(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        save_trace(_build(cost_unit="GFLOP"), path)
    assert sorted(os.listdir(tmp_path)) == ["a.npz"]
    assert path.read_bytes() == before


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(TraceError) as info:
        load_trace(tmp_path / "missing.npz")
    assert info.value.field == "file"
    junk = tmp_path / "junk.npz"
    junk.write_text("not a zip")
    with pytest.raises(TraceError) as info:
        load_trace(junk)
    assert info.value.field == "file"
    kw = _arrays()
    no_conf = tmp_path / "noconf.npz"
    np.savez(no_conf, labels=kw["labels"], pred=kw["pred"], cost=kw["cost"])
    with pytest.raises(TraceError) as info:
        load_trace(no_conf)
    assert info.value.field == "conf"
    bad = tmp_path / "bad.npz"
    np.savez(bad, labels=kw["labels"], pred=kw["pred"], conf=kw["conf"] + 2, cost=kw["cost"])
    with pytest.raises(TraceError) as info:
        load_trace(bad)
    assert info.value.field == "conf"


# -------------------------------------------------------------------------------- fit / splits


def test_fit_chain_too_few_samples_names_conf() -> None:
    t = Trace.build(**_arrays(n_samples=19))
    with pytest.raises(TraceError) as info:
        fit_chain(t, FitConfig(n_bins=10))
    assert info.value.field == "conf"
    fit_chain(Trace.build(**_arrays(n_samples=20)), FitConfig(n_bins=10))  # 2 per bin is enough


def test_split_indices_disjoint_and_reproducible() -> None:
    fit, test = split_indices(101, 0.5, seed=7)
    assert np.intersect1d(fit, test).size == 0
    np.testing.assert_array_equal(np.union1d(fit, test), np.arange(101))
    again = split_indices(101, 0.5, seed=7)
    np.testing.assert_array_equal(fit, again[0])
    with pytest.raises(ValueError, match="fit_fraction"):
        split_indices(10, 1.0, seed=0)


def test_stage_scores_errors() -> None:
    t = _build(probs=None)  # 3 classes, no probs
    with pytest.raises(TraceError) as info:
        stage_scores(t, "entropy")
    assert info.value.field == "probs"
    with pytest.raises(ValueError, match="score"):
        stage_scores(t, "nonsense")
