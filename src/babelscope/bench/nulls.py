"""The cost of the permutation null against the experts stage it belongs to, for one layer.

One layer of 16,384 MLP units (``quick``: 1,024) and 2,000 pooled sentences in two language
pools of 1,000 (``quick``: 2 x 100), 20 concepts of 40 positives per language (``quick``: 10 of 12). Measured side
by side in one run:

- ``stage_s``: what the experts stage does for that layer without a null: extraction (a
  random one-block Llama-style model, d_model 512, MLP 16,384, the pooled MLP units of
  every sentence) plus scoring (AP and statistics of every unit on the whole pool, and the
  AP on each half);
- ``null_s``: the null on top, R = 100 permutations (``quick``: 20): AP of every unit
  under each permutation on both halves, top-K and every alignment measure recomputed;
- ``with_null_vs_stage`` = (stage + null) / stage (target <= 2).
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import torch


def run(quick: bool = False) -> dict[str, float]:
    import transformers as tf

    from babelscope.activations.extract import extract_pooled
    from babelscope.analysis.alignment_null import make_plan, null_step
    from babelscope.analysis.halves import assign_halves
    from babelscope.analysis.member_scores import half_scores, score_members
    from babelscope.bench.extraction import _texts, _tokenizer

    units, per_lang, n_perm = (1024, 100, 20) if quick else (16384, 1000, 100)
    n_concepts, n_pos = (20, 40) if not quick else (10, 12)
    texts = _texts(2 * per_lang, seed=1)
    tok = _tokenizer(texts)
    cfg = tf.LlamaConfig(vocab_size=len(tok), hidden_size=512, intermediate_size=units,
                         num_hidden_layers=1, num_attention_heads=8, num_key_value_heads=8,
                         max_position_embeddings=256, pad_token_id=tok.pad_token_id)  # fmt: skip
    torch.manual_seed(0)
    model = tf.AutoModelForCausalLM.from_config(cfg).eval()
    rng = np.random.default_rng(0)

    t0 = time.perf_counter()
    pooled = extract_pooled(model, tok, texts, kind="mlp", pooling="mean", batch_size=32)
    x_all = pooled.flat()
    t_extract = time.perf_counter() - t0

    pools, xs = [], []
    for li, lang in enumerate(("aaa", "bbb")):
        y = np.zeros((per_lang, n_concepts), bool)
        members = np.zeros((per_lang, n_concepts), bool)  # matched pools: 3 negatives per positive
        for c in range(n_concepts):
            pick = rng.choice(per_lang, 4 * n_pos, replace=False)
            y[pick[:n_pos], c] = True
            members[pick, c] = True
        ids = [f"{lang}:{i}" for i in range(per_lang)]
        pools.append(SimpleNamespace(
            lang=lang, ids=ids, concepts=[f"c{c}" for c in range(n_concepts)], labels=y,
            sources=["s"] * per_lang, texts=texts[li * per_lang : (li + 1) * per_lang], groups=ids,
            members=members,
        ))  # fmt: skip
        xs.append(np.ascontiguousarray(x_all[li * per_lang : (li + 1) * per_lang]))
    halves = assign_halves([(p.ids, p.labels) for p in pools], {i: i for p in pools for i in p.ids})
    plan = make_plan(pools, halves, 2, permutations=n_perm, seed=0, n_bins=4, settings={})
    # compile the kernels outside the timings (a run compiles once, or loads numba's cache)
    half_scores(xs[0][:40, :64], pools[0].labels[:40], halves[0][:40], pools[0].members[:40])

    t0 = time.perf_counter()
    ranks = []
    for p, x, h in zip(pools, xs, halves, strict=True):
        score_members(lambda _layer, x=x: x, [0], p.labels, p.members)
        hr, _, _ = half_scores(x, p.labels, h, p.members)
        ranks.append(hr)
    t_score = time.perf_counter() - t0

    t0 = time.perf_counter()
    null_step(plan, ranks, [("0", 0, units, max(1, units // 100))])
    t_null = time.perf_counter() - t0
    stage = t_extract + t_score
    return {
        "extract_s": t_extract,
        "score_s": t_score,
        "stage_s": stage,
        "null_s": t_null,
        "permutations": float(n_perm),
        "units": float(units),
        "with_null_vs_stage": (stage + t_null) / stage,
    }
