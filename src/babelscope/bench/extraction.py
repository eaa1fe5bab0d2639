"""Extraction speed: hooked, pooled extraction against a plain forward pass and the naive way.

A random GPT-2-style model (6 blocks of width 768, GPT-2 small's block shape; ``quick``:
2 blocks of 256) and synthetic multilingual-looking sentences of mixed lengths. Measured
side by side in one run, best of ``repeats``, tokens = real (non-padding) tokens:

- ``plain_tokens_per_s``: the base model's forward pass over the same length-sorted,
  padded batches extraction uses, no hooks;
- ``mlp_mean_tokens_per_s`` / ``residual_mean_tokens_per_s``: :func:`extract_pooled`
  (hooks on every layer, masked mean pooling, results to NumPy);
- ``naive_tokens_per_s``: one sentence at a time through the full model with
  ``output_hidden_states=True``, mean over tokens of every hidden state;
- ratios: ``*_vs_plain`` (target ≥ 0.9: hooks and pooling cost under 10%) and
  ``*_vs_naive``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

_WORDS = """water river city music family book school doctor house night light stone agua ciudad música
familia libro escuela médico casa noche Wasser Stadt Musik Familie Buch Schule Arzt Haus Nacht eau ville musique
famille livre école médecin maison nuit"""


def _texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    words = _WORDS.split()
    return [" ".join(rng.choice(words, size=int(rng.integers(4, 40)))) + "." for _ in range(n)]


def _tokenizer(texts: list[str]):
    """The embedded pipeline's own byte-level BPE, trained on the benchmark texts."""
    from babelscope.pretrain.config import TokenizerConfig
    from babelscope.pretrain.tokenizer import train_tokenizer

    return train_tokenizer({"eng": texts}, TokenizerConfig(vocab_size=400), model_max_length=1024)


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _gpt2(tok: Any, quick: bool) -> Any:
    """The benches' random GPT-2 (2 x 256 quick, 6 x 768 full), seeded."""
    import transformers as tf

    layers, width, heads = (2, 256, 4) if quick else (6, 768, 12)
    torch.manual_seed(0)
    cfg = tf.GPT2Config(vocab_size=len(tok), n_positions=256, n_embd=width, n_layer=layers,
                        n_head=heads, bos_token_id=0, eos_token_id=2, pad_token_id=1)  # fmt: skip
    return tf.GPT2LMHeadModel(cfg).eval()


def run(quick: bool = False) -> dict[str, float]:

    from babelscope.activations.extract import _batches, _encode, extract_pooled

    n_texts, repeats = (64, 2) if quick else (96, 2)
    texts = _texts(n_texts)
    tok = _tokenizer(texts)
    model = _gpt2(tok, quick)
    batch_size = 32

    enc = _encode(tok, texts, None)
    n_tokens = sum(len(r) for r in enc.ids)
    batches = []
    for rows in _batches([len(r) for r in enc.ids], batch_size):
        seqs = [enc.ids[i] for i in rows]
        t = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), t), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for j, s in enumerate(seqs):
            ids[j, : len(s)], mask[j, : len(s)] = torch.tensor(s), 1
        batches.append((ids, mask))

    def plain() -> None:
        with torch.inference_mode():
            for ids, mask in batches:
                model.transformer(input_ids=ids, attention_mask=mask, use_cache=False)

    def extract(kind: str) -> None:
        extract_pooled(model, tok, texts, kind=kind, pooling="mean", batch_size=batch_size)

    def naive() -> None:
        with torch.inference_mode():
            for text in texts:
                ids = tok(text, return_tensors="pt")["input_ids"]
                hs = model(input_ids=ids, output_hidden_states=True).hidden_states
                [h[0].mean(0).numpy() for h in hs]

    plain()  # warm-up: first-call allocations are not what we measure
    t_plain = _best(plain, repeats)
    t_mlp = _best(lambda: extract("mlp"), repeats)
    t_res = _best(lambda: extract("residual"), repeats)
    t_naive = _best(naive, max(1, repeats - 1))
    return {
        "n_tokens": n_tokens,
        "plain_tokens_per_s": n_tokens / t_plain,
        "mlp_mean_tokens_per_s": n_tokens / t_mlp,
        "residual_mean_tokens_per_s": n_tokens / t_res,
        "naive_tokens_per_s": n_tokens / t_naive,
        "mlp_vs_plain": t_plain / t_mlp,
        "residual_vs_plain": t_plain / t_res,
        "mlp_vs_naive": t_naive / t_mlp,
        "residual_vs_naive": t_naive / t_res,
    }
