"""Multi-exit text classifiers over a transformers encoder (BERT-like: BERT, MiniLM, RoBERTa,
ELECTRA, XLM-R; DistilBERT) or GPT-2, run one transformer layer at a time.

Stage ``i`` is transformer layer ``i`` (the embeddings are folded into stage 1); exit head ``i``
pools the hidden states (the mean over non-padding tokens for encoders, the last non-padding
token for GPT-2, after GPT-2's final layer norm) and applies a linear layer to the standardised
pooled features. The model is a :class:`~ttamer.workloads.multi_exit.MultiExitNet` whose
``stage(i, h)`` really runs one layer, so per-layer latency is measured for real.

Modules: :mod:`.config` (the fields the text workloads share; no torch), :mod:`.tokens` (token
batches and length batching), :mod:`.segments` (loading a backbone and cutting it into one
segment per layer), :mod:`.heads` (exit heads, building the model, training the heads) and
:mod:`.trace` (a whole run: train, evaluate, time, assemble the trace). Only :mod:`.config` is
torch-free; this package imports none of them."""
