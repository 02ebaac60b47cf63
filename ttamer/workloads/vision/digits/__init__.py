"""The embedded quickstart workload (README: workloads): scikit-learn's digits and a small
multi-exit CNN. Importing the package registers :class:`DigitsConfig` (no torch); the model
code is in :mod:`ttamer.workloads.vision.digits.produce`."""

from ttamer.workloads.vision.digits.config import DigitsConfig, DigitsModelConfig, DigitsTrainConfig

__all__ = ["DigitsConfig", "DigitsModelConfig", "DigitsTrainConfig"]
