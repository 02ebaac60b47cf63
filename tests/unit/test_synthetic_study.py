"""Unit tests of the synthetic study library, the hull used by the figures, and the logger."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from ttamer.app.wandb_logger import ExperimentLogger, LoggerConfig
from ttamer.model.synthetic import SyntheticSpec, random_chain
from ttamer.plots.synthetic import lower_hull
from ttamer.solvers import best_threshold
from ttamer.studies.synthetic_study import (
    SyntheticStudyConfig,
    best_threshold_values,
    pareto_chain,
    ratio_table,
)

TINY = SyntheticStudyConfig(chains_per_family=2, n_stages=3, n_states=3, n_alphas=3, progress=False)


def test_config_rejects_bad_fields() -> None:
    with pytest.raises(ValueError, match="policies"):
        SyntheticStudyConfig(policies=("no_recall",))
    with pytest.raises(ValueError, match="families"):
        SyntheticStudyConfig(families=("nope",))
    with pytest.raises(ValueError, match="alpha_min"):
        SyntheticStudyConfig(alpha_min=1.0)
    with pytest.raises(ValueError, match="ratio_lams"):
        SyntheticStudyConfig(ratio_lams=(1.5,))


def test_grids() -> None:
    cfg = SyntheticStudyConfig(
        alpha_min=2, alpha_max=200, n_alphas=3, lam_grid_min=0.1, lam_grid_max=0.9, n_lam_grid=3
    )
    np.testing.assert_allclose(cfg.alphas, [2, 20, 200])
    np.testing.assert_allclose(cfg.lam_grid, [0.1, 0.5, 0.9])


def test_best_threshold_values_match_the_solver() -> None:
    chain = random_chain(SyntheticSpec("overthinking", 4, 5), np.random.default_rng(3))
    lams = np.array([0.6, 0.9, 0.99])
    values, thresholds = best_threshold_values(chain, lams)
    for lam, v, t in zip(lams, values, thresholds, strict=True):
        t_ref, ev = best_threshold(chain, float(lam))
        assert v == pytest.approx(ev.objective.min(), rel=1e-12)
        assert t == t_ref


def test_families_are_seeded_independently() -> None:
    one = ratio_table(replace(TINY, families=("dirichlet",)))
    both = ratio_table(replace(TINY, families=("improving", "dirichlet")))
    np.testing.assert_array_equal(one["j_recall"], both.loc[both["family"] == "dirichlet", "j_recall"])
    assert pareto_chain(TINY).name.startswith("overthinking")


def test_lower_hull() -> None:
    cost = np.array([0.0, 1.0, 0.5, 0.5, 0.2, 1.0, 0.9])
    loss = np.array([1.0, 0.0, 0.6, 0.3, 0.9, 0.5, 0.05])
    hc, hl = lower_hull(cost, loss)
    # (0.2, 0.9) lies above the segment (0, 1)-(0.5, 0.3); (0.5, 0.6) and (1, 0.5) are dominated
    np.testing.assert_allclose(hc, [0.0, 0.5, 0.9, 1.0])
    np.testing.assert_allclose(hl, [1.0, 0.3, 0.05, 0.0])
    assert (np.diff(hl) < 0).all() and (np.diff(np.diff(hl) / np.diff(hc)) >= 0).all()


def test_logger_modes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert LoggerConfig(mode="offline").effective_mode() == "offline"
    assert LoggerConfig(backend="none", mode="online").effective_mode() == "disabled"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert LoggerConfig(mode="online").effective_mode() == "disabled"  # the environment wins
    with pytest.raises(ValueError, match="mode"):
        LoggerConfig(mode="sometimes")
    with ExperimentLogger(LoggerConfig()).start({"a": 1}) as tracker:  # disabled: a no-op
        assert not tracker.active
        tracker.log_metrics({"x": 1.0})
    none = ExperimentLogger.none().start()
    assert not none.active and none.run_dir is None
    none.finish()
