"""Extraction for the experts stage without the activation cache, against a plain forward.

The experts stage with ``cache = false`` extracts a pool's pooled MLP activations in
memory (per-layer arrays filled batch by batch, optionally held in bfloat16) and computes
AP layer by layer from them; nothing is written. With the cache (default) the same
arrays go to disk first. Same model and texts as ``bench extraction`` (a random GPT-2-style
model, 6 blocks of 768, MLP 3,072 units a block; ``quick``: 2 blocks of 256), side by
side in one run, best of ``repeats`` (interleaved); tokens = real tokens:

- ``plain_tokens_per_s``: the base model's forward over the same batches, no hooks;
- ``stream_tokens_per_s`` / ``stream_bf16_tokens_per_s``: in-memory extraction (float32 /
  bfloat16 arrays), what ``cache = false`` runs;
- ``cached_tokens_per_s`` / ``cached_bf16_tokens_per_s``: through the on-disk cache
  (shards written, joined, memory-mapped), a fresh entry each time;
- ``ap_s``: AP of every unit, layer by layer, for 3 label columns (``score_pool``);
- ratios ``*_vs_plain`` (extraction; target >= 0.9 for ``stream``), the same in process
  CPU seconds ``*_cpu_vs_plain`` (on a shared machine other work moves CPU time far less
  than wall time), and ``stream_with_ap_vs_plain`` (extraction + AP against the forward);
- ``cache_mib`` / ``cache_bf16_mib``: the cache entry's size.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def run(quick: bool = False) -> dict[str, float]:

    from babelscope.activations.cache import cache_size, cached_pooled
    from babelscope.activations.extract import _batches, _encode, extract_pooled
    from babelscope.activations.families import family_of
    from babelscope.analysis.experts import score_pool
    from babelscope.bench.extraction import _gpt2, _texts, _tokenizer
    from babelscope.checkpoints.inspect import _pad_batch
    from babelscope.checkpoints.series import LoadedCheckpoint

    n_texts, repeats = (48, 1) if quick else (96, 2)
    texts = _texts(n_texts)
    tok = _tokenizer(texts)
    model = _gpt2(tok, quick)
    loaded = LoadedCheckpoint(0, model, tok, family_of(model), "random")
    enc = _encode(tok, texts, None)
    n_tokens = sum(len(r) for r in enc.ids)
    padded = [
        _pad_batch([enc.ids[i] for i in rows], 1)
        for rows in _batches([len(r) for r in enc.ids], 32)
    ]
    tmp = Path(tempfile.mkdtemp(prefix="babelscope-bench-"))
    sizes: dict[str, int] = {}

    def plain() -> None:
        with torch.inference_mode():
            for ids, mask in padded:
                model.transformer(input_ids=ids, attention_mask=mask, use_cache=False)

    def stream(store: str = "float32") -> None:
        extract_pooled(model, tok, texts, kind="mlp", batch_size=32, store_dtype=store)

    def cached(store: str = "float32") -> None:
        d = tmp / store
        shutil.rmtree(d, ignore_errors=True)
        cached_pooled(loaded, texts, data_key="bench", cache_dir=d, batch_size=32,
                      store_dtype=store, verify=False)  # fmt: skip
        sizes[store] = cache_size(d)

    runs = {"plain": plain, "stream": stream, "stream_bf16": lambda: stream("bfloat16"),
            "cached": cached, "cached_bf16": lambda: cached("bfloat16")}  # fmt: skip
    plain()  # warm-up
    best = {k: float("inf") for k in runs}
    cpu = {k: float("inf") for k in runs}  # process CPU seconds: less moved by other load
    try:
        for _ in range(repeats):
            for name, fn in runs.items():
                t0, c0 = time.perf_counter(), time.process_time()
                fn()
                best[name] = min(best[name], time.perf_counter() - t0)
                cpu[name] = min(cpu[name], time.process_time() - c0)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    pooled = extract_pooled(model, tok, texts, kind="mlp", batch_size=32)
    labels = np.random.default_rng(0).random((len(texts), 3)) < 0.2
    t0 = time.perf_counter()
    score_pool(pooled.get, list(pooled.layers), labels, threads=1)
    ap_s = time.perf_counter() - t0
    out: dict[str, float] = {"n_tokens": n_tokens, "ap_s": ap_s}
    for name, t in best.items():
        out[f"{name}_tokens_per_s"] = n_tokens / t
        if name != "plain":
            out[f"{name}_vs_plain"] = best["plain"] / t
            out[f"{name}_cpu_vs_plain"] = cpu["plain"] / cpu[name]
    out["stream_with_ap_vs_plain"] = best["plain"] / (best["stream"] + ap_s)
    out["cache_mib"] = sizes["float32"] / 2**20
    out["cache_bf16_mib"] = sizes["bfloat16"] / 2**20
    return out
