"""Serving multi-exit models for real (README: serving): a stage-by-stage runtime that stops computing
for the requests a fitted policy stops (:mod:`~ttamer.serving.runtime`), the per-stage decision
rules compiled from fitted policies (:mod:`~ttamer.serving.decide`), and a Poisson load test of a
batching server loop (:mod:`~ttamer.serving.load`)."""

from ttamer.serving.decide import FullModel, PatienceRule, PosteriorRule, RecallRule, ThresholdRule
from ttamer.serving.load import LoadResult, poisson_arrivals, run_load, run_load_stagewise
from ttamer.serving.runtime import Served, StagedModel, TorchStages, serve, serve_in_batches, serve_one_by_one

__all__ = [
    "FullModel",
    "LoadResult",
    "PatienceRule",
    "PosteriorRule",
    "RecallRule",
    "Served",
    "StagedModel",
    "ThresholdRule",
    "TorchStages",
    "poisson_arrivals",
    "run_load",
    "run_load_stagewise",
    "serve",
    "serve_in_batches",
    "serve_one_by_one",
]
