"""Generated stand-ins for what the ImageNet and GLUE workloads download (README: ImageNet and
GLUE on a GPU): an ImageNet-layout image folder, random-weight BERT and GPT-2 backbones of the
real sizes saved with a small local tokenizer, and GLUE-style sentence-pair files. They run the
workloads' real code paths (loading, preprocessing, training, autocast, torch.compile, timing)
without internet, so that a machine can be checked and timed before real data is fetched. The
accuracies they give mean nothing; the timings are those of the real architectures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

WORDS = "good bad great awful fine dull film plot actor story fun boring the a is was very not and".split()
"""The stand-in texts' vocabulary."""

BACKBONE_SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "bert": {
        "base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                 "intermediate_size": 3072, "max_position_embeddings": 512},
        "tiny": {"hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 2,
                 "intermediate_size": 64, "max_position_embeddings": 128},
    },
    "gpt2": {
        "base": {"n_embd": 768, "n_layer": 12, "n_head": 12, "n_positions": 1024},
        "tiny": {"n_embd": 32, "n_layer": 3, "n_head": 2, "n_positions": 128},
    },
}  # fmt: skip
"""Architecture sizes: ``base`` = bert-base-uncased and GPT-2 small; ``tiny`` for tests."""


def write_image_folder(root: Path, n_classes: int, per_class: int, size: int = 64, seed: int = 0) -> Path:
    """``root/{train,val}/<wnid>/<i>.JPEG``: ``per_class`` random ``size`` x ``size`` RGB images
    in each of the first ``n_classes`` ImageNet-1k classes (so the ImageNet label space applies);
    class ``c`` has its colour channel ``c % 3`` at full intensity. Returns ``root``."""
    from PIL import Image

    from ttamer.workloads.vision.imagenet_timm.data import imagenet_wnids

    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        for c, wnid in enumerate(imagenet_wnids()[:n_classes]):
            folder = root / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                img[..., c % 3] = 255
                Image.fromarray(img).save(folder / f"{wnid}_{i}.JPEG", quality=90)
    return root


def word_tokenizer(kind: str) -> Any:
    """A local tokenizer for :data:`WORDS`: BERT's word pieces (``bert``) or GPT-2's byte-level
    one with no merges (``gpt2``: every byte is a token, as GPT-2 sees unknown text)."""
    import transformers

    if kind == "gpt2":
        from tokenizers import pre_tokenizers

        vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
        vocab["<|endoftext|>"] = len(vocab)
        return transformers.GPT2Tokenizer(vocab=vocab, merges=[])
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    fast: Any = getattr(transformers, "BertTokenizerFast")  # noqa: B009 (not in transformers' type stubs)
    return fast(vocab={t: i for i, t in enumerate(tokens)}, do_lower_case=True)


def save_random_backbone(kind: str, folder: Path, size: str = "base", seed: int = 0) -> Path:
    """A random-weight ``kind`` (bert | gpt2) backbone of ``size`` (:data:`BACKBONE_SIZES`) and its
    :func:`word_tokenizer`, saved with ``save_pretrained`` in ``folder`` (loadable as a local
    ``workload.model``). Returns ``folder``."""
    import torch
    import transformers

    if kind not in BACKBONE_SIZES or size not in BACKBONE_SIZES[kind]:
        raise ValueError(
            f"kind must be one of {sorted(BACKBONE_SIZES)} and size base | tiny, got {kind}, {size}"
        )
    tok = word_tokenizer(kind)
    dims = BACKBONE_SIZES[kind][size]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if kind == "gpt2":
            eos = tok.convert_tokens_to_ids("<|endoftext|>")
            cfg = transformers.GPT2Config(vocab_size=len(tok), bos_token_id=eos, eos_token_id=eos, **dims)
            model: Any = transformers.GPT2Model(cfg)
        else:
            model = transformers.BertModel(transformers.BertConfig(vocab_size=len(tok), **dims))
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def write_pair_tsvs(
    folder: Path, n_train: int, n_eval: int, words: tuple[int, int] = (4, 5), seed: int = 0
) -> tuple[Path, Path]:
    """MRPC-like ``train.tsv`` and ``dev.tsv`` in ``folder`` (columns ``sentence1``,
    ``sentence2``, ``label``): sentences of ``words[0]`` to ``words[1]`` words of :data:`WORDS`,
    label 1 when the two share their first word (about half the rows)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, n in (("train", n_train), ("dev", n_eval)):
        rows = []
        for _ in range(n):
            a = list(rng.choice(WORDS, rng.integers(words[0], words[1] + 1)))
            b = list(rng.choice(WORDS, rng.integers(words[0], words[1] + 1)))
            same = bool(rng.random() < 0.5)
            b[0] = a[0] if same else b[0]
            rows.append({"sentence1": " ".join(a), "sentence2": " ".join(b), "label": int(b[0] == a[0])})
        path = folder / f"{name}.tsv"
        pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
        paths.append(path)
    return paths[0], paths[1]
