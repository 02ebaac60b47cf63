"""``write_models``: one file per fitted model, and a rerun into the same folder leaves only
its own models (no stale split of an earlier run with more splits or other policies)."""

from __future__ import annotations

from pathlib import Path

from test_trace_policies import random_trace

from ttamer.evaluation.fitted_models import SplitModel, write_models
from ttamer.fitting.chain import FitConfig, fit_chain
from ttamer.fitting.model_files import load_fitted_chain
from ttamer.fitting.posterior import PosteriorConfig, fit_posterior


def test_rerun_with_fewer_splits_removes_the_stale_files(tmp_path: Path) -> None:
    trace = random_trace(3, "binary", seed=1)
    chain, posterior = fit_chain(trace, FitConfig(n_bins=3)), fit_posterior(trace, PosteriorConfig(n_bins=3))
    first = [SplitModel("chain", r, chain) for r in range(3)] + [SplitModel("posterior_recall", 0, posterior)]
    write_models(first, tmp_path)
    assert len(list(tmp_path.rglob("*.json"))) == 4
    again = write_models([SplitModel("chain", r, chain) for r in range(2)], tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "chain", "chain/split_0.json", "chain/split_1.json",
    ]  # fmt: skip
    assert again == [tmp_path / "chain" / f"split_{r}.json" for r in range(2)]
    assert load_fitted_chain(again[1]).chain.to_json_dict() == chain.chain.to_json_dict()
