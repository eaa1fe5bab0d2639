"""Inspect's loss on a large vocabulary against a plain forward pass.

A random Llama-style model with a **131,072-token vocabulary** (``quick``: 100,352) and
synthetic token sequences of 8-96 tokens (64 of them; ``quick``: 8, width 64, one block)
in batches of 16, unsorted (inspect batches the
held-out texts in their order). Side by side in one run, best of ``repeats``; tokens =
real (non-padding) tokens:

- ``plain_tokens_per_s``: ``model(input_ids, attention_mask).logits`` over the same
  batches (the logits of every position, padding included: what any loss needs at least);
- ``inspect_tokens_per_s``: :func:`babelscope.checkpoints.inspect._nll_batches` (base model,
  then the real positions through the output head in chunks, ``cross_entropy`` per chunk);
- ``old_tokens_per_s``: the former computation (a float32 ``log_softmax`` of the whole
  padded batch's logits, then a gather);
- ``inspect_vs_plain`` (target >= 0.8), ``old_vs_plain``, and the same in process CPU
  seconds (``*_cpu_vs_plain``: other load moves them less); ``old_logits_mib`` /
  ``chunk_logits_mib``: the float32 logits held at once by each (largest batch).
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import torch

PAD = 1


def _batches(vocab: int, n: int, batch: int, seed: int = 0) -> list[list[list[int]]]:
    rng = np.random.default_rng(seed)
    seqs = [rng.integers(3, vocab, size=int(rng.integers(8, 97))).tolist() for _ in range(n)]
    return [seqs[i : i + batch] for i in range(0, n, batch)]


def _padded(seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    from babelscope.checkpoints.inspect import _pad_batch

    return _pad_batch(seqs, PAD)


def run(quick: bool = False) -> dict[str, float]:
    import transformers as tf

    from babelscope.activations.families import family_of
    from babelscope.bench.extraction import _best
    from babelscope.checkpoints.inspect import LOGIT_CHUNK_BYTES, _nll_batches
    from babelscope.checkpoints.series import LoadedCheckpoint

    vocab, layers, width, n_seq = (100_352, 1, 64, 8) if quick else (131_072, 4, 512, 64)
    repeats = 1 if quick else 3
    torch.manual_seed(0)
    cfg = tf.LlamaConfig(vocab_size=vocab, hidden_size=width, intermediate_size=4 * width,
                         num_hidden_layers=layers, num_attention_heads=8, num_key_value_heads=8,
                         max_position_embeddings=256, bos_token_id=0, pad_token_id=PAD,
                         eos_token_id=2, tie_word_embeddings=False)  # fmt: skip
    model = tf.LlamaForCausalLM(cfg).eval()
    tok = SimpleNamespace(pad_token_id=PAD, eos_token_id=2)
    loaded = LoadedCheckpoint(0, model, tok, family_of(model), "random")
    batches = _batches(vocab, n_seq, 16)
    padded = [_padded(b) for b in batches]
    n_tokens = sum(len(s) for b in batches for s in b)

    def plain() -> None:
        with torch.inference_mode():
            for ids, mask in padded:
                _ = model(input_ids=ids, attention_mask=mask, use_cache=False).logits

    def chunked() -> None:
        _nll_batches(loaded, batches)

    def old() -> None:
        with torch.inference_mode():
            for ids, mask in padded:
                logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits.float()
                lp = torch.log_softmax(logits[:, :-1], dim=-1)
                nll = -lp.gather(-1, ids[:, 1:, None])[..., 0]
                float(nll[mask[:, 1:].bool()].sum())

    plain()  # warm-up
    t = {"plain": [], "inspect": [], "old": []}
    cpu = {"plain": [], "inspect": [], "old": []}
    for _ in range(repeats):  # interleaved: load on the shared machine hits all alike
        for name, fn in (("plain", plain), ("inspect", chunked), ("old", old)):
            c0 = time.process_time()
            t[name].append(_best(fn, 1))
            cpu[name].append(time.process_time() - c0)
    best = {k: min(v) for k, v in t.items()}
    best_cpu = {k: min(v) for k, v in cpu.items()}
    biggest = max(ids.numel() for ids, _ in padded)
    chunk = max(16, LOGIT_CHUNK_BYTES // (4 * vocab))
    return {
        "vocab": vocab,
        "n_tokens": n_tokens,
        "plain_tokens_per_s": n_tokens / best["plain"],
        "inspect_tokens_per_s": n_tokens / best["inspect"],
        "old_tokens_per_s": n_tokens / best["old"],
        "inspect_vs_plain": best["plain"] / best["inspect"],
        "old_vs_plain": best["plain"] / best["old"],
        "inspect_cpu_vs_plain": best_cpu["plain"] / best_cpu["inspect"],
        "old_cpu_vs_plain": best_cpu["plain"] / best_cpu["old"],
        "old_logits_mib": biggest * vocab * 4 / 2**20,
        "chunk_logits_mib": chunk * vocab * 4 / 2**20,
    }
