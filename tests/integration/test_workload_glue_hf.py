"""Multi-exit text models (``ttamer.workloads.text.exits``) and the ``glue_hf`` workload, on tiny
random-weight BERT, DistilBERT and GPT-2 models with tokenizers built here (nothing downloads)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import app_env, run_app

transformers = pytest.importorskip("transformers")

from ttamer.errors import FieldError  # noqa: E402
from ttamer.model.skip_costs import skip_structure  # noqa: E402
from ttamer.workloads.latency import LatencyConfig, measure_stage_latency  # noqa: E402
from ttamer.workloads.multi_exit import TrainConfig, exit_probabilities  # noqa: E402
from ttamer.workloads.stand_ins import WORDS, word_tokenizer, write_pair_tsvs  # noqa: E402
from ttamer.workloads.text.exits.config import TextTrainConfig  # noqa: E402
from ttamer.workloads.text.exits.heads import build_text_exits, exit_features, pool, train_text_exits  # noqa: E402
from ttamer.workloads.text.exits.segments import load_backbone  # noqa: E402
from ttamer.workloads.text.exits.tokens import tokenize  # noqa: E402
from ttamer.workloads.text.exits.trace import InferenceSpeed, latency_rows, text_exit_outputs, train_config  # noqa: E402
from ttamer.workloads.text.glue_hf.config import GlueHfConfig  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def bert_tokenizer() -> Any:
    tok = word_tokenizer("bert")
    assert tok("good film")["input_ids"] == [2, 5, 11, 3]  # every word in the vocabulary
    return tok


def tiny_model(kind: str, folder: Path) -> Path:
    """A random-weight model and its tokenizer saved with ``save_pretrained`` in ``folder``."""
    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "gpt2":
        tok = word_tokenizer("gpt2")
        eos = tok.convert_tokens_to_ids("<|endoftext|>")
        cfg = transformers.GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=3, n_head=2, n_positions=128,
                                      bos_token_id=eos, eos_token_id=eos)  # fmt: skip
        model = transformers.GPT2Model(cfg)
    elif kind == "distilbert":
        tok = bert_tokenizer()
        cfg = transformers.DistilBertConfig(vocab_size=len(tok), dim=32, n_layers=3, n_heads=2, hidden_dim=64,
                                            max_position_embeddings=64)  # fmt: skip
        model = transformers.DistilBertModel(cfg)
    else:
        tok = bert_tokenizer()
        cfg = transformers.BertConfig(
            vocab_size=len(tok), hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
            intermediate_size=64, max_position_embeddings=64,
        )  # fmt: skip
        model = transformers.BertModel(cfg)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def load(folder: Path) -> tuple[Any, Any]:
    return load_backbone(folder)


SENTENCES = [
    "good film",
    "the plot was very boring and dull",
    "not fun",
    "a great actor and a fine story",
    "bad",
]


@pytest.mark.parametrize("kind", ["bert", "gpt2", "distilbert"])
def test_stage_by_stage_equals_full_model_per_layer(kind: str, tmp_path: Path) -> None:
    model, tok = load(tiny_model(kind, tmp_path / kind))
    x = tokenize(tok, SENTENCES, max_length=32)
    assert (x.attention_mask == 0).any(), "the batch must hold padding"
    with torch.no_grad():
        ref = model(
            input_ids=x.input_ids, attention_mask=x.attention_mask, output_hidden_states=True
        ).hidden_states
    net = build_text_exits(model, 2)
    assert net.n_stages == 3 == len(ref) - 1
    m = x.attention_mask.bool()
    state: Any = x
    with torch.no_grad():
        for i in range(net.n_stages):
            state, logits = net.stage(i, state)
            hidden = state.hidden
            if kind == "gpt2" and i == net.n_stages - 1:  # GPT-2's last hidden state has ln_f applied
                hidden = model.ln_f(hidden)
            torch.testing.assert_close(hidden[m], ref[i + 1][m], rtol=1e-5, atol=1e-5)
            assert logits.shape == (len(SENTENCES), 2)


@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_exits_ignore_padding(kind: str, tmp_path: Path) -> None:
    """A request's exit logits are the same alone and padded inside a batch of longer rows."""
    model, tok = load(tiny_model(kind, tmp_path / kind))
    net = build_text_exits(model, 3)
    for head in net.heads:  # non-trivial standardisation and weights
        torch.nn.init.normal_(head.linear.weight)  # type: ignore[union-attr, arg-type]
    x = tokenize(tok, SENTENCES, max_length=32)
    batched = net(x)
    for r in range(len(SENTENCES)):
        alone = x[r]
        assert alone.input_ids.shape[1] == int(x.lengths[r])  # trimmed to its own length
        for lb, la in zip(batched, net(alone), strict=True):
            torch.testing.assert_close(lb[r], la[0], rtol=1e-4, atol=1e-5)


def test_pooling_respects_padding() -> None:
    h = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    garbage = h.clone()
    garbage[0, 2:] = 1e6
    torch.testing.assert_close(pool(garbage, mask, "mean"), torch.stack([h[0, :2].mean(0), h[1].mean(0)]))
    torch.testing.assert_close(pool(garbage, mask, "last"), torch.stack([h[0, 1], h[1, 3]]))
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    torch.testing.assert_close(pool(h, left, "last"), torch.stack([h[0, 3], h[1, 3]]))
    torch.testing.assert_close(pool(h, left, "mean"), torch.stack([h[0, 2:].mean(0), h[1].mean(0)]))


def test_token_batch_behaves_like_a_tensor_for_the_shared_helpers(tmp_path: Path) -> None:
    model, tok = load(tiny_model("bert", tmp_path / "bert"))
    x = tokenize(tok, SENTENCES)
    assert len(x) == 5 and x.dim() == 2 and x.device == torch.device("cpu")
    rep = x[:2].repeat(3, 1)
    assert len(rep) == 6 and torch.equal(rep.input_ids[4], x[:2].input_ids[0])
    sub = x[torch.tensor([0, 4])]  # "good film", "bad": both short
    assert sub.input_ids.shape[1] == int(x.lengths[[0, 4]].max()) < x.input_ids.shape[1]
    net = build_text_exits(model, 2)
    probs = exit_probabilities(net, x, batch_size=2)  # type: ignore[arg-type]
    assert probs.shape == (5, 3, 2)
    np.testing.assert_allclose(probs.sum(axis=2), 1.0, atol=1e-6)
    table = measure_stage_latency(net, x[:4], LatencyConfig((1, 6), warmup=1, repeats=3))  # type: ignore[arg-type]
    assert len(table) == 6 and set(table["batch_size"]) == {1, 6}
    assert (table["median_ms"] > 0).all()
    assert (table["head_median_ms"] > 0).all()  # the pooling + linear head, timed alone
    rows = latency_rows(x.lengths.numpy(), 4, seed=0)
    assert len(set(rows.tolist())) == 4 and int(x.lengths[rows[0]]) == int(np.median(x.lengths.numpy()))


def test_frozen_training_trains_heads_only_and_fine_tuning_moves_the_backbone(tmp_path: Path) -> None:
    model, tok = load(tiny_model("bert", tmp_path / "bert"))
    texts = ["good film", "great fun", "a fine story", "bad plot", "awful and dull", "boring actor"] * 8
    y = torch.tensor([1, 1, 1, 0, 0, 0] * 8)
    x = tokenize(tok, texts)
    net = build_text_exits(model, 2)
    before = {k: v.clone() for k, v in net.segments.state_dict().items()}
    history = train_text_exits(
        net, x, y, TrainConfig(epochs=60, lr=0.05, batch_size=16, freeze_backbone=True)
    )
    # the workload's training fields as the training loop takes them (no cap: infinity)
    text_train = TextTrainConfig(epochs=60, lr=0.05, batch_size=16, weight_decay=1e-4, max_seconds=None)
    assert train_config(text_train, 0) == TrainConfig(epochs=60, lr=0.05, batch_size=16, freeze_backbone=True)
    default = train_config(TextTrainConfig(), 7)
    assert default.max_seconds == 600 and default.seed == 7 and default.weight_decay == 0.01
    assert history[-1] < history[0]
    assert all(torch.equal(v, net.segments.state_dict()[k]) for k, v in before.items())
    probs = exit_probabilities(net, x)  # type: ignore[arg-type]
    assert (probs[:, -1].argmax(1) == y.numpy()).mean() > 0.9  # separable by word identity
    feats = exit_features(net, x)
    assert len(feats) == 3 and feats[0].shape == (len(texts), 32)
    train_text_exits(net, x, y, TrainConfig(epochs=1, lr=0.01, batch_size=16, freeze_backbone=False))
    assert any(not torch.equal(v, net.segments.state_dict()[k]) for k, v in before.items())


@pytest.mark.slow
def test_glue_hf_end_to_end_tiny_bert_pair_task(tmp_path: Path) -> None:
    folder = tiny_model("bert", tmp_path / "tiny-bert")
    train, dev = write_pair_tsvs(tmp_path / "data", 80, 40)
    run_dir = tmp_path / "run"
    args = [
        "workload=glue_hf", f"hydra.run.dir={run_dir}",
        f"workload.cache_dir={tmp_path / 'cache'}", "logger=none", "progress=false",
        "workload.task=mrpc", f"workload.model={folder}", f"workload.train_path={train}",
        f"workload.eval_path={dev}", "workload.train.epochs=5", "workload.latency.repeats=2",
        "workload.latency.warmup=1", "workload.latency.batch_sizes=[1,4]", "workload.n_splits=2",
        "workload.fit.n_bins=3", "workload.threads=1",
    ]  # fmt: skip
    proc = run_app(*args, env=app_env(HF_HUB_OFFLINE="1"), cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    points = pd.read_csv(run_dir / "glue_hf_points.csv")
    assert set(points["policy"]) >= {"recall", "max_softmax", "patience", "static"}
    static = points[(points["policy"] == "static") & (points["split"] == 0)].sort_values("knob")
    assert len(static) == 3 and static["mean_cost"].is_monotonic_increasing
    assert points["cost_unit"].str.startswith("ms per request (batch 1").all()
    summary = pd.read_csv(run_dir / "glue_hf_summary.csv")
    assert "saving_at_delta_1" in set(summary["metric"])
    assert (run_dir / "fig_glue_hf.png").read_bytes()[:4] == b"\x89PNG"
    (latency,) = run_dir.glob("benchmark-infer-*-glue_hf.csv")
    table = pd.read_csv(latency)
    assert list(table["stage_name"].unique()) == ["layer1", "layer2", "layer3"]
    assert set(table["batch_size"]) == {1, 4}
    assert len(list((tmp_path / "cache").glob("glue_hf-*.npz"))) == 1


def test_glue_hf_produce_tiny_gpt2_three_classes(tmp_path: Path) -> None:
    from ttamer.workloads.text.glue_hf.workload import produce

    folder = tiny_model("gpt2", tmp_path / "tiny-gpt2")
    rng = np.random.default_rng(1)
    for name, n in (("train", 60), ("dev", 30)):
        labels = rng.integers(0, 3, n)
        texts = [
            " ".join([*rng.choice(WORDS, rng.integers(1, 6)), ["fun", "bad", "dull"][k]]) for k in labels
        ]
        pd.DataFrame({"text": texts, "y": [["pos", "neg", "neu"][k] for k in labels]}).to_csv(
            tmp_path / f"{name}.tsv", sep="\t", index=False
        )
    config = GlueHfConfig(
        task="custom", model=str(folder), text_fields=("text",), label_field="y",
        label_names=("pos", "neg", "neu"), train_path=str(tmp_path / "train.tsv"),
        eval_path=str(tmp_path / "dev.tsv"), train_size=50,
        train=TextTrainConfig(epochs=40, lr=0.01), latency=LatencyConfig((1, 3), warmup=1, repeats=2),
    )  # fmt: skip
    trace = produce(config, 3, tmp_path)
    assert trace.n_samples == 30 and trace.n_stages == 3 and trace.probs is not None
    assert trace.probs.shape == (30, 3, 3) and trace.meta["architecture"] == "GPT2Model"
    assert (trace.cost > 0).all()
    s = skip_structure(trace)  # one backbone, one measured head per layer
    assert s.group.tolist() == [0, 0, 0] and (s.head > 0).all() and (s.head <= trace.cost).all()
    # the last word (its last byte) decides the class and GPT-2 pools the last non-padding token
    assert (trace.pred[:, -1] == trace.labels).mean() > 0.8


def test_glue_hf_bad_config_names_the_field(tmp_path: Path) -> None:
    """Config values are refused when the config is built (the field's own name: the app
    prefixes ``workload.``); data problems when the workload runs (``workload.<field>``)."""
    from ttamer.workloads.text.glue_hf.workload import produce

    train, dev = write_pair_tsvs(tmp_path / "data", 10, 5)
    base = GlueHfConfig(
        task="mrpc", model=str(tmp_path / "nowhere"), train_path=str(train), eval_path=str(dev)
    )
    with pytest.raises(FieldError, match=r"^task: stsb is a regression task"):
        dataclasses.replace(base, task="stsb")
    with pytest.raises(FieldError, match=r"^eval_path: give both"):
        dataclasses.replace(base, eval_path=None)
    with pytest.raises(FieldError, match=r"workload\.train_path: .*no column 'question'"):
        produce(dataclasses.replace(base, task="qnli"), 0, tmp_path)
    frame = pd.read_csv(train, sep="\t")
    frame.loc[0, "label"] = 3
    frame.to_csv(train, sep="\t", index=False)
    with pytest.raises(FieldError, match=r"workload\.train_path: label 3 >= num_labels 2"):
        produce(base, 0, tmp_path)  # mrpc: two classes


def test_glue_hf_misspelt_field_is_refused_when_composing() -> None:
    """A misspelt key (``train.epoch``) fails when Hydra composes the config, naming the key."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import ConfigCompositionException

    from ttamer.app.configs import register_configs
    from ttamer.app.run import CONF_DIR

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        with pytest.raises(ConfigCompositionException) as info:
            compose("config", overrides=["workload=glue_hf", "workload.train.epoch=3"])
    GlobalHydra.instance().clear()
    assert "workload.train.epoch" in f"{info.value} {info.value.__cause__}"


@pytest.mark.parametrize("kind", ["bert", "gpt2", "distilbert"])
def test_batches_of_different_lengths_merge_between_stages(kind: str, tmp_path: Path) -> None:
    """Stage-level batching merges the unfinished requests of several batches: token batches
    and hidden states of different lengths, padded and with the attention mask prepared again,
    give every request the exit logits it has in its own batch."""
    from ttamer.serving import TorchStages

    model, tok = load(tiny_model(kind, tmp_path / kind))
    net = build_text_exits(model, 2)
    stages = TorchStages(net)
    parts = [tokenize(tok, SENTENCES[:2], max_length=32), tokenize(tok, SENTENCES[2:3], max_length=32)]
    assert parts[0].input_ids.shape[1] != parts[1].input_ids.shape[1]
    with torch.no_grad():
        alone = [stages.stage(0, p) for p in parts]
        merged_tokens = stages.merge(parts)
        _, logits = stages.stage(0, merged_tokens)
        torch.testing.assert_close(logits, torch.cat([lg for _, lg in alone]), rtol=1e-5, atol=1e-5)
        merged = stages.merge([s for s, _ in alone])
        assert merged.hidden.shape[0] == 3 and merged.mask.shape == merged.hidden.shape[:2]
        _, logits_merged = stages.stage(1, merged)
        logits_alone = torch.cat([stages.stage(1, s)[1] for s, _ in alone])
        torch.testing.assert_close(logits_merged, logits_alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_inference_precision_and_compile(kind: str, tmp_path: Path) -> None:
    """bf16 autocast and torch.compile give the fp32 probabilities (bf16 to its rounding), and
    the latency table records the options; compiled stages are warmed, so their timings hold no
    compilation (every timed stage well under the compile time)."""
    model, tok = load(tiny_model(kind, tmp_path / kind))
    net = build_text_exits(model, 3)
    x = tokenize(tok, SENTENCES * 4, max_length=32)
    latency = LatencyConfig((1, 4), warmup=1, repeats=2)
    plain, table, _ = text_exit_outputs(net, x, latency, batch_size=8)
    bf16, bf16_table, _ = text_exit_outputs(net, x, latency, batch_size=8, speed=InferenceSpeed("bf16"))
    np.testing.assert_allclose(bf16, plain, atol=0.03)
    assert not np.array_equal(bf16, plain)  # autocast did act
    assert set(table["precision"]) == {"fp32"} and set(bf16_table["precision"]) == {"bf16"}
    start = time.perf_counter()
    fast, fast_table, _ = text_exit_outputs(net, x, latency, batch_size=8, speed=InferenceSpeed(compile=True))
    compile_ms = (time.perf_counter() - start) * 1e3
    np.testing.assert_allclose(fast, plain, rtol=1e-4, atol=1e-5)
    assert set(fast_table["compile"]) == {True} and fast_table["median_ms"].max() < compile_ms / 20


def test_speed_options_keyed_only_when_set() -> None:
    base = GlueHfConfig().trace_key(0)
    assert "precision" not in base and "compile" not in base
    assert GlueHfConfig(precision="bf16", compile=True).trace_key(0) == {
        **base,
        "precision": "bf16",
        "compile": True,
    }
    with pytest.raises(FieldError, match="precision"):
        GlueHfConfig(precision="int8")
