"""A FrugalML-like folder written by the tests (shared by the importer and workload tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def write_frugal_folder(
    root: Path,
    n: int = 30,
    models: tuple[tuple[int, str, float], ...] = ((0, "Big", 2.5), (7, "Tiny", 0.001), (3, "Mid", 0.75)),
    seed: int = 0,
    classes: int = 2,
) -> dict[int, dict[str, Any]]:
    """A FrugalML-like folder; returns the arrays written per model id."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = ["Index,MLaaS(API),Cost per 10k texts,label number"]
    rows += [f"{m},{name},{price},{classes}" for m, name, price in models]
    (root / "meta.csv").write_text("\n".join(rows) + "\n")
    y = rng.integers(0, classes, n)
    ids = "".join(f"s_{i}.txt,\n" for i in range(n))
    out: dict[int, dict[str, Any]] = {}
    for m, _, _ in models:
        pred = np.where(rng.random(n) < 0.8, y, 1 - y)
        conf = rng.random(n)
        write_column(root / f"Model{m}_TrueLabel.txt", y)
        write_column(root / f"Model{m}_PredictedLabel.txt", pred)
        (root / f"Model{m}_Confidence.txt").write_text("".join(f"{c:.18e}\n" for c in conf))
        (root / f"Model{m}_ImageName.txt").write_text(ids)
        out[m] = {"pred": pred, "conf": conf, "y": y}
    return out


def write_column(path: Path, values: Any) -> None:
    path.write_text("".join(f"{v}\n" for v in values))
