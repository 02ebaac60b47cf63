"""The typed Hydra configs (``ttamer/app/configs.py``, ``conf/``): the library's dataclasses are
the schemas; every workload and every experiment composes and builds; misspelt keys, wrong types
and values out of range are refused with a message naming the dotted key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf

from ttamer.app import configs as cs
from ttamer.app.run import CONF_DIR
from ttamer.errors import FieldError
from ttamer.studies.synthetic_workload import SyntheticWorkload
from ttamer.workloads.base import workloads

WORKLOADS = ["synthetic", "frugalml", "digits", "fashion_mnist", "sst2_minilm", "glue_hf", "imagenet_timm"]
EXPERIMENTS = {
    "fig1_lower_bound": "synthetic",
    "fig2_random_chains": "synthetic",
    "fig3_pareto_synthetic": "synthetic",
    "fig4_vision_digits": "digits",
    "fig5_vision_fashion_mnist": "fashion_mnist",
    "fig6_nlp_sst2": "sst2_minilm",
    "tab1_frugalml_imdb": "frugalml",
    "tab2_frugalml_shop": "frugalml",
    "skip_fashion_mnist": "fashion_mnist",
    "skip_sst2_minilm": "sst2_minilm",
    "tree_frugalml_imdb": "frugalml",
    "tree_frugalml_shop": "frugalml",
}


@pytest.fixture(scope="module", autouse=True)
def _hydra() -> Iterator[None]:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        yield


def _compose(*overrides: str, hydra: bool = False) -> DictConfig:
    return compose("config", overrides=list(overrides), return_hydra_config=hydra)


def _build(cfg: DictConfig) -> cs.Run:
    """The job as library objects, as a run builds it (``${hydra:...}`` values left out: no run)."""
    cfg = cfg.copy()
    cfg.logger.dir = None
    return cs.build_run(cfg)


def _refused(*overrides: str) -> str:
    with pytest.raises(ConfigCompositionException) as info:
        _compose(*overrides)
    return f"{info.value} {info.value.__cause__}"


def test_every_workload_is_registered_and_has_an_option() -> None:
    assert sorted(["synthetic", *workloads()]) == sorted(WORKLOADS)
    options = GlobalHydra.instance().config_loader().get_group_options("workload")
    assert sorted(options) == sorted(WORKLOADS)


@pytest.mark.parametrize("workload", WORKLOADS)
def test_every_workload_composes_into_its_dataclass(workload: str) -> None:
    cfg = _compose(f"workload={workload}", "logger=none")
    assert cfg.workload.name == workload
    expected = SyntheticWorkload if workload == "synthetic" else workloads()[workload].config
    assert OmegaConf.get_type(cfg.workload) is expected
    assert not OmegaConf.missing_keys(cfg), "every field has a default or a value in the YAML"
    run = _build(cfg)
    assert type(run.workload) is expected and run.workload.name == workload
    assert run.config.workload is run.workload


def test_the_dataclass_defaults_are_the_configured_values() -> None:
    """A YAML option only sets what differs (here: nothing for synthetic), so the composed job
    equals the library's defaults, lists as tuples."""
    run = _build(_compose("workload=synthetic", "logger=none"))
    assert run.workload == SyntheticWorkload()
    assert run.config.policy == cs.PolicyGroup() and run.config.sweep == cs.WeightsGroup()
    assert run.config.structure == cs.StructureGroup() and run.config.seed == 0
    overridden = _build(_compose("workload=synthetic", "logger=none", "workload.lower_bound.n_stages=[3,5]"))
    assert overridden.workload.lower_bound.n_stages == (3, 5)


GROUP_OPTIONS = [
    ("policy", ["all"]),
    ("sweep", ["default"]),
    ("logger", ["wandb", "none"]),
    ("cost", ["measured"]),
    ("structure", ["chain", "skip"]),
]


@pytest.mark.parametrize("group, options", GROUP_OPTIONS)
def test_every_group_option_is_typed(group: str, options: list[str]) -> None:
    for option in options:
        cfg = _compose(f"{group}={option}")
        assert OmegaConf.get_type(cfg[group]) is cs.GROUPS[group]
        _build(cfg)
    assert OmegaConf.get_type(cfg) is cs.RunConfig


def test_experiment_group_lists_every_figure() -> None:
    options = GlobalHydra.instance().config_loader().get_group_options("experiment")
    assert sorted(options) == sorted(EXPERIMENTS)
    link = Path(CONF_DIR).parent / "experiments"
    assert link.resolve() == (Path(CONF_DIR) / "experiment").resolve()


@pytest.mark.parametrize("experiment", sorted(EXPERIMENTS))
def test_every_experiment_composes(experiment: str) -> None:
    cfg = _compose(f"experiment={experiment}", hydra=True)
    assert cfg.workload.name == EXPERIMENTS[experiment]
    assert cfg.hydra.job.name == experiment
    assert cfg.logger.name == experiment and experiment in cfg.logger.tags
    _build(cfg)
    # command-line overrides still apply on top of an experiment
    assert _compose(f"experiment={experiment}", "seed=7", "logger=none").seed == 7


def test_frugalml_tables_pick_their_dataset() -> None:
    assert _compose("experiment=tab1_frugalml_imdb").workload.dataset == "IMDB"
    assert _compose("experiment=tab2_frugalml_shop").workload.dataset == "SHOP"


@pytest.mark.parametrize(
    "override, key",
    [
        ("workload.tets_size=3", "workload.tets_size"),  # typo in a workload field
        ("workload.fit.n_binz=3", "workload.fit.n_binz"),  # typo in a nested field
        ("workload.model.chanels=[1]", "workload.model.chanels"),
        ("sede=1", "sede"),  # typo at the top level
        ("logger.projet=x", "logger.projet"),
    ],
)
def test_misspelt_keys_are_refused(override: str, key: str) -> None:
    message = _refused("workload=digits", override)
    assert key.rsplit(".", 1)[-1] in message and "not in" in message


@pytest.mark.parametrize(
    "override, key",
    [
        ("seed=abc", "seed"),
        ("progress=maybe", "progress"),
        ("workload.n_splits=ten", "workload.n_splits"),
        ("workload.fit.n_bins=1.5", "workload.fit.n_bins"),
        ("workload.fit_fraction=half", "workload.fit_fraction"),
        ("workload.train.epochs=[1]", "workload.train.epochs"),
        ("workload.latency.batch_sizes=[1,x]", "workload.latency.batch_sizes"),
        ("sweep.lam_grid.num=many", "sweep.lam_grid.num"),
    ],
)
def test_wrong_types_are_refused(override: str, key: str) -> None:
    message = _refused("workload=digits", override)
    assert key in message


def test_typo_inside_an_experiment_run_is_refused() -> None:
    assert "workload.n_splits" in _refused("experiment=fig4_vision_digits", "workload.n_splits=ten")


@pytest.mark.parametrize(
    "overrides, field",
    [
        (["workload=digits", "workload.fit.score=softmax"], "workload.fit.score"),
        (["workload=frugalml", "workload.reference=best"], "workload.reference"),
        (["workload=digits", "workload.target=backbone"], "workload.target"),
        (["logger.mode=offlne"], "logger.mode"),
        (["logger.backend=tensorboard"], "logger.backend"),
        (["workload=sst2_minilm", "workload.pooling=max"], "workload.pooling"),
        (["workload=sst2_minilm", "workload.vader_calibration=isotonic"], "workload.vader_calibration"),
        (["workload=imagenet_timm", "workload.mode=ensemble"], "workload.mode"),
        (["workload=imagenet_timm", "workload.labels=coco"], "workload.labels"),
        (["workload=synthetic", "workload.families=[improving,bogus]"], "workload.families"),
        (["workload=synthetic", "workload.pareto_family=bogus"], "workload.pareto_family"),
        (["policy.trace=[recall,nope]"], "policy.trace"),
        (["policy.compare=[recall,nope]"], "policy.compare"),
        (["workload=digits", "cost=timm_table"], "cost"),
        (["workload=imagenet_timm", "workload.cost_source=timm_table"], "workload.cost_source"),
        (["workload=digits", "cost.name=price"], "cost.name"),
        (["workload=digits", "workload.name=resnet"], "workload.name"),
        (["workload=digits", "workload.train.lr=-1"], "workload.train.lr"),
        (["workload=synthetic", "workload.lower_bound.n_alphas=0"], "workload.lower_bound.n_alphas"),
        (["workload=synthetic", "workload.chains_per_family=0"], "workload.chains_per_family"),
        (["seed=-1"], "seed"),
        (["workload=digits", "workload.test_size=???"], "workload.test_size"),
        (["structure.name=dag"], "structure.name"),
        (["workload=synthetic", "structure=skip"], "structure"),
        (["workload=frugalml", "structure=tree", "structure.parents=[]"], "structure.parents"),
        (
            ["workload=digits", "structure=skip", "structure.chain_policies=[recall,nope]"],
            "structure.chain_policies",
        ),
        (
            ["workload=digits", "structure=skip", "structure.chain_policies=[recall]"],
            "structure.chain_policies",
        ),
    ],
)
def test_bad_values_are_refused(overrides: list[str], field: str) -> None:
    cfg = _compose(*overrides)
    with pytest.raises(FieldError) as info:
        _build(cfg)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}:")


def test_timm_table_cost_is_the_imagenet_switch() -> None:
    cfg = _compose("workload=imagenet_timm", "cost=timm_table")
    assert _build(cfg).workload.cost_source == "timm_table"
    assert _compose("workload=imagenet_timm").workload.cost_source == "measured"


def test_logger_config_refuses_bad_mode_with_field_error() -> None:
    with pytest.raises(FieldError, match=r"^logger\.mode: must be one of offline \| online \| disabled"):
        _build(_compose("logger.mode=sometimes"))
