"""The synthetic workload (README: synthetic study): which generated chains the synthetic study
solves. Together with the trade-off weights and the compared policies it makes a
:class:`~ttamer.studies.synthetic_study.SyntheticStudyConfig` (:meth:`SyntheticWorkload.study`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ttamer.errors import FieldError, check_bounds
from ttamer.model.synthetic import FAMILIES
from ttamer.studies.synthetic_study import SyntheticStudyConfig


@dataclass(frozen=True)
class LowerBoundFamily:
    """(a) The generalised lower-bound family: ``n_alphas`` values of the gamble parameter alpha,
    log-spaced in ``[alpha_min, alpha_max]``, for every chain length in ``n_stages`` and every
    ``cost_scale`` in ``cost_scales`` (total chain cost = cost_scale * alpha^-3)."""

    alpha_min: float = 1.1
    alpha_max: float = 1000.0
    n_alphas: int = 40
    n_stages: tuple[int, ...] = (2, 4, 8)
    cost_scales: tuple[float, ...] = (0.0, 10.0, 100.0)

    def __post_init__(self) -> None:
        if not 1.0 < self.alpha_min <= self.alpha_max:
            raise FieldError("alpha_min", f"need 1 < alpha_min <= alpha_max, got {self.alpha_min}")
        check_bounds(self, ("n_alphas",), 1)
        if not self.n_stages or min(self.n_stages) < 2:
            raise FieldError("n_stages", f"each chain needs at least 2 stages, got {list(self.n_stages)}")
        if not self.cost_scales or min(self.cost_scales) < 0:
            raise FieldError("cost_scales", f"must be >= 0, got {list(self.cost_scales)}")


@dataclass(frozen=True)
class SyntheticWorkload:
    """The chains of the synthetic study. (b) ``chains_per_family`` random chains of ``n_stages``
    stages with ``n_states`` confidence bins per stage, for each family in ``families``
    (:data:`ttamer.model.synthetic.FAMILIES`); (c) the loss-cost trade-off of one chain of
    ``pareto_family``."""

    name: str = "synthetic"
    lower_bound: LowerBoundFamily = field(default_factory=LowerBoundFamily)
    families: tuple[str, ...] = FAMILIES
    chains_per_family: int = 200
    n_stages: int = 6
    n_states: int = 8
    pareto_family: str = "overthinking"

    def __post_init__(self) -> None:
        unknown = [f for f in self.families if f not in FAMILIES]
        if unknown or not self.families:
            raise FieldError("families", f"unknown or empty {unknown}; choose from {' | '.join(FAMILIES)}")
        if self.pareto_family not in FAMILIES:
            choices = " | ".join(FAMILIES)
            raise FieldError("pareto_family", f"must be one of {choices}, got {self.pareto_family!r}")
        check_bounds(self, ("chains_per_family", "n_stages", "n_states"), 1)

    def study(
        self,
        lower_bound_lam: float,
        ratio_lams: Sequence[float],
        lam_grid: LamGrid,
        policies: Sequence[str],
        seed: int,
        progress: bool = True,
    ) -> SyntheticStudyConfig:
        """The synthetic study of these chains: the lower-bound family at ``lower_bound_lam``,
        every random chain at each of ``ratio_lams``, the Pareto chain over ``lam_grid``;
        ``policies`` compared with recall."""
        lb = self.lower_bound
        return SyntheticStudyConfig(
            alpha_min=lb.alpha_min,
            alpha_max=lb.alpha_max,
            n_alphas=lb.n_alphas,
            lower_bound_n_stages=tuple(lb.n_stages),
            lower_bound_cost_scales=tuple(lb.cost_scales),
            lower_bound_lam=lower_bound_lam,
            families=tuple(self.families),
            chains_per_family=self.chains_per_family,
            n_stages=self.n_stages,
            n_states=self.n_states,
            ratio_lams=tuple(ratio_lams),
            pareto_family=self.pareto_family,
            lam_grid_min=lam_grid.min,
            lam_grid_max=lam_grid.max,
            n_lam_grid=lam_grid.num,
            policies=tuple(policies),
            seed=seed,
            progress=progress,
        )


@dataclass(frozen=True)
class LamGrid:
    """``num`` trade-off weights spaced evenly in logit(lam) between ``min`` and ``max``."""

    min: float = 0.05
    max: float = 0.999
    num: int = 60

    def __post_init__(self) -> None:
        if not 0.0 < self.min < self.max <= 1.0:
            raise FieldError("min", f"need 0 < min < max <= 1, got min={self.min}, max={self.max}")
        check_bounds(self, ("num",), 2)
