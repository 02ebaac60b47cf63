"""Importers: FrugalML folders (the real tables and small synthetic ones) and the long CSV."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from _frugal import write_column, write_frugal_folder

from ttamer.traces.csv_trace import export_csv, import_csv
from ttamer.traces.frugalml import COST_UNIT, import_frugalml
from ttamer.traces.trace import Trace, TraceError

REPO = Path(__file__).resolve().parents[2]
DATA_ROOT = Path(os.environ.get("TTAMER_DATA_ROOT", REPO.parent / "shared" / "data"))
FRUGAL = DATA_ROOT / "frugalml"

# ---------------------------------------------------------------------------- real FrugalML


def _real(name: str) -> Path:
    folder = FRUGAL / f"mlserviceperformance_{name}"
    if not (folder / "meta.csv").is_file():
        pytest.skip(f"FrugalML data not found at {folder} (set TTAMER_DATA_ROOT to the data root)")
    return folder


def _column(path: Path) -> np.ndarray:
    """Independent reader: one number per line."""
    return np.array([float(x) for x in path.read_text().split()])


@pytest.mark.parametrize(("name", "n_samples"), [("IMDB", 25000), ("SHOP", 62774)])
def test_real_frugalml(name: str, n_samples: int) -> None:
    folder = _real(name)
    t = import_frugalml(folder)
    meta = pd.read_csv(folder / "meta.csv")
    price = dict(zip(meta["Index"], meta["Cost per 10k texts"], strict=True))
    api = dict(zip(meta["Index"], meta["MLaaS(API)"], strict=True))
    ids = [int(x) for x in t.meta["model_ids"].split(",")]

    assert t.n_samples == n_samples
    assert t.n_stages == 4
    assert sorted(ids) == sorted(int(i) for i in meta["Index"])
    assert list(t.cost) == sorted(price.values())  # ordered by price, cheapest first
    assert list(t.cost) == [price[m] for m in ids]
    assert t.stage_names == tuple(api[m] for m in ids)
    assert t.cost_unit == COST_UNIT == "USD per 10k calls"
    assert t.meta["source"] == "frugalml" and t.meta["folder"] == str(folder.resolve())
    assert t.stage_names[0].startswith("GitHub")  # the free lexicon model is the cheap first stage

    accs = {}
    for i, m in enumerate(ids):
        y = _column(folder / f"Model{m}_TrueLabel.txt")
        np.testing.assert_array_equal(t.labels, y, err_msg=f"true labels of model {m}")
        np.testing.assert_array_equal(t.pred[:, i], _column(folder / f"Model{m}_PredictedLabel.txt"))
        np.testing.assert_allclose(t.conf[:, i], _column(folder / f"Model{m}_Confidence.txt"), atol=1e-6)
        accs[api[m]] = float((t.pred[:, i] == y).mean())
    assert set(np.unique(t.labels)) == {0, 1}
    assert t.conf.min() >= 0 and t.conf.max() <= 1
    acc = t.correct.mean(axis=0)
    report = ", ".join(f"{k}: {v:.4f}" for k, v in accs.items())
    np.testing.assert_allclose(acc, list(accs.values()), err_msg=report)
    # every API does better than chance except Baidu on English reviews (IMDB)
    better = [
        a > 0.6 for a, nm in zip(acc, t.stage_names, strict=True) if not (name == "IMDB" and nm == "Baidu")
    ]
    assert all(better), f"{name} accuracies: {report}"


# ---------------------------------------------------------------------------- synthetic folders


def test_synthetic_folder_orders_by_price(tmp_path: Path) -> None:
    written = write_frugal_folder(tmp_path / "d")
    t = import_frugalml(tmp_path / "d")
    assert t.meta["model_ids"] == "7,3,0"
    assert t.stage_names == ("Tiny", "Mid", "Big")
    np.testing.assert_array_equal(t.cost, [0.001, 0.75, 2.5])
    for i, m in enumerate((7, 3, 0)):
        np.testing.assert_array_equal(t.pred[:, i], written[m]["pred"])
        np.testing.assert_allclose(t.conf[:, i], written[m]["conf"], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(t.labels, written[0]["y"])


def test_price_ties_broken_by_id(tmp_path: Path) -> None:
    write_frugal_folder(tmp_path / "d", models=((9, "B", 1.0), (2, "A", 1.0), (5, "C", 0.5)))
    t = import_frugalml(tmp_path / "d")
    assert t.meta["model_ids"] == "5,2,9"
    assert t.stage_names == ("C", "A", "B")


def _expect(folder: Path, file: str, match: str) -> None:
    with pytest.raises(TraceError, match=match) as info:
        import_frugalml(folder)
    assert Path(info.value.field).name == file, str(info.value)


def test_row_count_mismatch_names_the_file(tmp_path: Path) -> None:
    d = tmp_path / "d"
    w = write_frugal_folder(d)
    write_column(d / "Model3_PredictedLabel.txt", w[3]["pred"][:-1])
    _expect(d, "Model3_PredictedLabel.txt", "29 rows but Model7_TrueLabel.txt has 30")


def test_confidence_row_count_mismatch(tmp_path: Path) -> None:
    d = tmp_path / "d"
    write_frugal_folder(d)
    with (d / "Model0_Confidence.txt").open("a") as fh:
        fh.write("0.5\n")
    _expect(d, "Model0_Confidence.txt", "31 rows")


def test_true_label_mismatch_names_the_file(tmp_path: Path) -> None:
    d = tmp_path / "d"
    w = write_frugal_folder(d)
    y = w[0]["y"].copy()
    y[12] = 1 - y[12]
    write_column(d / "Model0_TrueLabel.txt", y)
    _expect(d, "Model0_TrueLabel.txt", "row 13")


def test_true_label_count_mismatch(tmp_path: Path) -> None:
    d = tmp_path / "d"
    w = write_frugal_folder(d)
    write_column(d / "Model0_TrueLabel.txt", w[0]["y"][:20])
    _expect(d, "Model0_TrueLabel.txt", "20 rows")


def test_misaligned_sample_ids(tmp_path: Path) -> None:
    d = tmp_path / "d"
    write_frugal_folder(d)
    ids = (d / "Model0_ImageName.txt").read_text().splitlines()
    ids[4], ids[5] = ids[5], ids[4]
    (d / "Model0_ImageName.txt").write_text("\n".join(ids) + "\n")
    _expect(d, "Model0_ImageName.txt", "row 5")


def test_confidence_out_of_range(tmp_path: Path) -> None:
    d = tmp_path / "d"
    w = write_frugal_folder(d)
    conf = w[3]["conf"].copy()
    conf[7] = 1.5
    write_column(d / "Model3_Confidence.txt", conf)
    _expect(d, "Model3_Confidence.txt", "row 8 holds confidence 1.5")
    conf[7] = np.nan
    write_column(d / "Model3_Confidence.txt", conf)
    _expect(d, "Model3_Confidence.txt", "row 8 is not a finite number")
    conf[7] = -0.25
    write_column(d / "Model3_Confidence.txt", conf)
    _expect(d, "Model3_Confidence.txt", "outside")


def test_float_noise_is_clipped(tmp_path: Path) -> None:
    d = tmp_path / "d"
    w = write_frugal_folder(d)
    conf = w[3]["conf"].copy()
    conf[0], conf[1] = 1.0 + 1e-9, -1e-12
    write_column(d / "Model3_Confidence.txt", [repr(float(c)) for c in conf])
    t = import_frugalml(d)
    i = t.meta["model_ids"].split(",").index("3")
    assert t.conf[0, i] == 1.0 and t.conf[1, i] == 0.0


def test_bad_labels(tmp_path: Path) -> None:
    d = tmp_path / "d"
    w = write_frugal_folder(d)
    pred = w[7]["pred"].copy()
    pred[3] = 2  # meta says 2 classes
    write_column(d / "Model7_PredictedLabel.txt", pred)
    _expect(d, "Model7_PredictedLabel.txt", "row 4 holds 2,")
    write_column(d / "Model7_PredictedLabel.txt", ["0.5"] * 30)
    _expect(d, "Model7_PredictedLabel.txt", "row 1")
    write_column(d / "Model7_PredictedLabel.txt", ["pos"] * 30)
    _expect(d, "Model7_PredictedLabel.txt", "one number per line")


def test_missing_files_and_meta(tmp_path: Path) -> None:
    d = tmp_path / "d"
    write_frugal_folder(d)
    (d / "Model3_Confidence.txt").unlink()
    _expect(d, "Model3_Confidence.txt", "does not exist")
    (d / "meta.csv").write_text("Index,MLaaS(API),label number\n0,Big,2\n")
    _expect(d, "meta.csv", "Cost per 10k texts")
    (d / "meta.csv").write_text("Index,MLaaS(API),Cost per 10k texts,label number\n0,Big,-1,2\n")
    _expect(d, "meta.csv", "prices")
    (d / "meta.csv").unlink()
    _expect(d, "meta.csv", "does not exist")
    with pytest.raises(TraceError, match="not a folder"):
        import_frugalml(tmp_path / "nowhere")


# ---------------------------------------------------------------------------- CSV


def _trace(probs: bool, n_samples: int = 40, n: int = 3, n_classes: int = 4, seed: int = 1) -> Trace:
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(n_classes), size=(n_samples, n))
    return Trace.build(
        rng.integers(0, n_classes, n_samples),
        p.argmax(axis=2),
        p.max(axis=2),
        rng.random(n) * 10,
        [f"layer {i}, exit" for i in range(n)],  # a comma, to exercise quoting
        "ms",
        p if probs else None,
    )


@pytest.mark.parametrize("probs", [True, False])
def test_csv_round_trip(tmp_path: Path, probs: bool) -> None:
    t = _trace(probs)
    path = tmp_path / "t.csv"
    export_csv(t, path)
    assert sorted(os.listdir(tmp_path)) == ["t.csv"]
    back = import_csv(path)
    for name in ("labels", "pred", "conf", "cost"):
        np.testing.assert_array_equal(getattr(back, name), getattr(t, name), err_msg=name)
    assert back.stage_names == t.stage_names
    assert back.cost_unit == "ms"
    if probs:
        assert back.probs is not None and t.probs is not None
        np.testing.assert_array_equal(back.probs, t.probs)
    else:
        assert back.probs is None
    header = path.read_text().splitlines()[0].split(",")
    assert header[:5] == ["sample", "stage", "label", "pred", "conf"]


def _long(n_samples: int = 4, n: int = 2) -> pd.DataFrame:
    rows = []
    for s in range(n_samples):
        for k in range(n):
            rows.append({"sample": f"id{s}", "stage": k, "label": s % 2, "pred": (s + k) % 2, "conf": 0.6})
    return pd.DataFrame(rows)


def _csv_error(tmp_path: Path, df: pd.DataFrame, field: str, match: str, **kw: Any) -> None:
    path = tmp_path / "bad.csv"
    df.to_csv(path, index=False)
    with pytest.raises(TraceError, match=match) as info:
        import_csv(path, **kw)
    assert info.value.field == field, str(info.value)


def test_csv_minimal_with_costs_argument(tmp_path: Path) -> None:
    df = _long().sample(frac=1.0, random_state=0)  # row order does not matter
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    t = import_csv(path, costs=[1.0, 3.0], cost_unit="GFLOP")
    assert t.n_samples == 4 and t.n_stages == 2
    assert t.stage_names == ("stage1", "stage2")
    assert t.cost_unit == "GFLOP"
    np.testing.assert_array_equal(t.cost, [1.0, 3.0])
    first_seen = pd.unique(df["sample"])
    order = [int(str(s)[2:]) for s in first_seen]
    np.testing.assert_array_equal(t.labels, [s % 2 for s in order])
    np.testing.assert_array_equal(t.pred, [[(s + k) % 2 for k in range(2)] for s in order])


def test_csv_stage_order(tmp_path: Path) -> None:
    # integer stages sort by value; named stages keep their first appearance
    df = _long(n=3)
    df["stage"] = df["stage"].map({0: 10, 1: 2, 2: 5})
    df["cost"] = df["stage"].astype(float)
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    np.testing.assert_array_equal(import_csv(path).cost, [2.0, 5.0, 10.0])
    df["stage"] = df["stage"].map({10: "big", 2: "small", 5: "mid"})
    df.to_csv(path, index=False)
    t = import_csv(path)
    assert t.stage_names == ("big", "small", "mid")
    np.testing.assert_array_equal(t.cost, [10.0, 2.0, 5.0])


def test_csv_errors(tmp_path: Path) -> None:
    base = _long()
    base["cost"] = 1.0
    _csv_error(tmp_path, base.drop(columns="conf"), "conf", "column is missing")
    _csv_error(tmp_path, base.drop(index=3), "stage", "sample 'id1' has no row for stage 1")
    _csv_error(tmp_path, pd.concat([base, base.iloc[[2]]]), "stage", "sample 'id1' has 2 rows for stage 0")
    bad = base.copy()
    labels = bad["label"].to_numpy().copy()
    labels[5] = 1 - labels[5]
    bad["label"] = labels
    _csv_error(tmp_path, bad, "label", "sample 'id2' has conflicting labels")
    bad = base.copy()
    bad.loc[2, "cost"] = 5.0
    _csv_error(tmp_path, bad, "cost", "constant per stage")
    _csv_error(tmp_path, base.drop(columns="cost"), "cost", "no costs were given")
    _csv_error(tmp_path, base, "cost", "3 costs given for 2 stages", costs=[1.0, 2.0, 3.0])
    bad = base.copy()
    bad["conf"] = bad["conf"].astype(object)
    bad.loc[4, "conf"] = "high"
    _csv_error(tmp_path, bad, "conf", "line 6 holds 'high'")
    bad = base.copy()
    bad.loc[1, "pred"] = np.nan
    _csv_error(tmp_path, bad, "pred", "empty on line 3")
    bad = base.copy()
    bad["pred"] = 0.5
    _csv_error(tmp_path, bad, "pred", "not an integer")
    bad = base.copy()
    bad.loc[0, "conf"] = 1.5
    _csv_error(tmp_path, bad, "conf", "outside")
    bad = base.copy()
    bad["p0"], bad["p2"] = 0.5, 0.5
    _csv_error(tmp_path, bad, "p0", "without gaps")
    with pytest.raises(TraceError) as info:
        import_csv(tmp_path / "missing.csv")
    assert info.value.field == "file"
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(TraceError, match="empty"):
        import_csv(tmp_path / "empty.csv")
