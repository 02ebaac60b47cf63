"""The vision early-exit workload (README: workloads): a timm backbone with an exit head after
each stage, trained on Fashion-MNIST. Importing the package registers
:class:`FashionMnistConfig` (no torch); the data reader is
:mod:`~ttamer.workloads.vision.fashion_mnist.data`, the model and trace
:mod:`~ttamer.workloads.vision.fashion_mnist.produce`."""

from ttamer.workloads.vision.fashion_mnist.config import (
    FashionMnistConfig,
    FashionMnistModelConfig,
    FashionMnistTrainConfig,
)

__all__ = ["FashionMnistConfig", "FashionMnistModelConfig", "FashionMnistTrainConfig"]
