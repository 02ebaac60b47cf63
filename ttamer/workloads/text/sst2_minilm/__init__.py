"""GLUE SST-2 with the 6-layer MiniLM and VADER as a near-free stage 0 (README: workloads). The
config is :class:`.config.Sst2MinilmConfig`; the implementation (:mod:`.workload`, torch) loads
only when the workload runs."""

from ttamer.workloads.text.sst2_minilm import config as config
