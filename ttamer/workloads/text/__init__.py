"""Text workloads (README: workloads): multi-exit transformers (:mod:`.exits`) on GLUE SST-2 with
MiniLM and VADER (:mod:`.sst2_minilm`) and on any GLUE task with any encoder or GPT-2
(:mod:`.glue_hf`). Only the config modules load on import (no torch)."""
