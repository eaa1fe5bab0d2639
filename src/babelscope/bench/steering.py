"""Benchmark: forced generation against plain ``model.generate`` on the same model.

A random GPT-2-style model (6 layers, d 384; quick: 4 layers, d 256) generates the same
batch of rows for the same number of new tokens (EOS disabled, so every row runs the full
length) with temperature 0.8 and top-p 0.9, three ways:

- ``generate``: ``transformers`` ``model.generate(do_sample=True)``, KV cache on;
- ``loop``: babelscope's seeded sampling loop (per-row generators), KV cache on;
- ``forced``: the same loop with K = 1% of the MLP units shifted by an ``Intervention``
  (mode ``add``), hooked as the steering stage hooks a batch (``RowInterventions``).

Figures: tokens per second of each, and ``forced_vs_generate`` (target >= 0.8).
Each is the best of several repeats, interleaved in rotating order so that background
load hurts all three alike; torch runs on one thread meanwhile (restored after), which
keeps the ratio stable on a shared machine.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import torch


def _model(quick: bool) -> tuple[Any, int]:
    import transformers as tf

    layers, d, vocab = (4, 256, 4096) if quick else (6, 384, 8192)
    cfg = tf.GPT2Config(
        vocab_size=vocab, n_positions=256, n_embd=d, n_layer=layers, n_head=max(4, d // 64),
        bos_token_id=1, eos_token_id=None, pad_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    model = tf.GPT2LMHeadModel(cfg).eval()
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model, vocab


def _timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run(quick: bool = False) -> dict[str, float]:
    from babelscope.activations.neurons import hook_points
    from babelscope.analysis.intervention import Intervention
    from babelscope.analysis.steering import sample_tokens
    from babelscope.analysis.steering.batch import RowInterventions

    model, _ = _model(quick)
    batch, new_tokens, repeats = (8, 16, 2) if quick else (32, 32, 6)
    prompt = [1]  # BOS; not the pad id, so no padding warning
    points = hook_points(model, "mlp")
    units = sum(p.width for p in points)
    k = max(1, units // 100)
    # Shifted (mode "add"), not overwritten: the costlier of the two modes.
    forced = dataclasses.replace(
        Intervention.random_units(points, k, statistic=3.0, seed=0), mode="add"
    )
    seeds = list(range(batch))
    ids = torch.tensor([prompt] * batch)
    mask = torch.ones_like(ids)

    def plain_generate() -> None:
        torch.manual_seed(0)
        with torch.no_grad():
            out = model.generate(
                input_ids=ids, attention_mask=mask, do_sample=True, temperature=0.8, top_p=0.9,
                top_k=0, max_new_tokens=new_tokens, min_new_tokens=None, use_cache=True,
            )  # fmt: skip
        assert out.shape == (batch, len(prompt) + new_tokens)

    def loop() -> None:
        rows = sample_tokens(model, prompt, seeds, max_new_tokens=new_tokens, stop_at_eos=False)
        assert all(len(r) == new_tokens for r in rows)

    def forced_loop() -> None:
        # The steering stage's path: every row under its own intervention (here all alike).
        with RowInterventions([forced]).attach(model, [0] * batch):
            loop()

    fns = {"generate": plain_generate, "loop": loop, "forced": forced_loop}
    times: dict[str, list[float]] = {name: [] for name in fns}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for fn in fns.values():  # warm-up
            fn()
        names = list(fns)
        for r in range(repeats):  # rotating order: background load hurts all alike
            for name in names[r % 3 :] + names[: r % 3]:
                times[name].append(_timed(fns[name]))
    finally:
        torch.set_num_threads(threads)
    tokens = batch * new_tokens
    best = {name: min(ts) for name, ts in times.items()}
    return {
        "generate_tokens_per_s": tokens / best["generate"],
        "loop_tokens_per_s": tokens / best["loop"],
        "forced_tokens_per_s": tokens / best["forced"],
        "loop_vs_generate": best["generate"] / best["loop"],
        "forced_vs_generate": best["generate"] / best["forced"],
        "forced_units": float(k),
        "batch": float(batch),
        "new_tokens": float(new_tokens),
    }
