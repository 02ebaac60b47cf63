"""Any GLUE classification task with any transformers encoder or GPT-2, one exit per layer
(README: workloads). The config is :class:`.config.GlueHfConfig`; the implementation
(:mod:`.workload`, torch) loads only when the workload runs."""

from ttamer.workloads.text.glue_hf import config as config
