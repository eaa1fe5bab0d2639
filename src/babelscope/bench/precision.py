"""Precision: how much half-precision storage and bf16/fp16 models change AP and the experts.

The reference is a float32 model's pooled activations kept in float32. Against it:

- ``store_<dtype>_*``: the same activations stored as ``float16`` / ``bfloat16`` (the
  activation cache's ``cache_dtype``), read back as float32;
- ``model_<dtype>_*``: the model itself run in ``bf16`` / ``fp16`` (``[model] dtype``), its
  activations pooled in float32 as always.

For each: ``max_abs`` (largest |AP difference| over units and concepts), ``max_rel``
(relative to the reference AP, units with AP >= 0.01) and ``top_k_agreement`` (share of
the reference top-K units per concept found in the other top K, mean over concepts;
``top_k_min`` the worst concept). :func:`measure` is shared with the tests
(tests/test_dtypes.py, tiny models) and ``benchmarks/gpu_precision.py`` (CUDA).

The benchmark itself: a random GPT-2-style model (6 blocks of width 384, MLP 1,536;
``quick``: 2 blocks of 128), 240 synthetic sentences in three word lists (English,
Spanish, German words; the concept = the word list), on the CPU.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np


def unit_ap(pooled: Any, labels: np.ndarray) -> np.ndarray:
    """AP of every unit (all layers side by side) for each label column: ``(C, units)``."""
    from babelscope.analysis.average_precision import score_units

    return np.concatenate(
        [score_units(pooled.get(layer), labels, threads=1).ap for layer in pooled.layers], axis=1
    )


def measure(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    labels: np.ndarray,
    *,
    device: str = "cpu",
    model_dtypes: Sequence[str] = ("bf16", "fp16"),
    store_dtypes: Sequence[str] = ("float16", "bfloat16"),
    k: int = 50,
    batch_size: int = 32,
) -> dict[str, float]:
    """Figures ``store_<dtype>_<measure>`` and ``model_<dtype>_<measure>`` (see the module doc)
    for a float32 ``model``, against its own float32 extraction on ``device``."""
    import torch

    from babelscope.activations.dtypes import Decoded, compare_scores, encode_array
    from babelscope.activations.extract import extract_pooled
    from babelscope.checkpoints.series import torch_dtype

    common = dict(kind="mlp", pooling="mean", batch_size=batch_size, device=device)
    ref_model = model.to(device).eval()
    ref = extract_pooled(ref_model, tokenizer, texts, **common)
    ap_ref = unit_ap(ref, labels)
    out: dict[str, float] = {"units": float(ap_ref.shape[1]), "k": float(k)}

    def record(prefix: str, ap: np.ndarray) -> None:
        res = compare_scores(ap_ref, ap, k)
        for name in ("max_abs", "max_rel", "top_k_agreement", "top_k_min"):
            out[f"{prefix}_{name}"] = res[name]

    for name in store_dtypes:
        stored = copy.copy(ref)
        stored.arrays = Decoded({i: encode_array(ref.get(i), name) for i in ref.layers}, name)
        record(f"store_{name}", unit_ap(stored, labels))
    for name in model_dtypes:
        low = copy.deepcopy(model).to(device=device, dtype=torch_dtype(name)).eval()
        with torch.inference_mode():
            record(
                f"model_{name}", unit_ap(extract_pooled(low, tokenizer, texts, **common), labels)
            )
        del low
    return out


_LISTS = {
    "eng": "water river city music family book school doctor house night light stone tree bread",
    "spa": "agua río ciudad música familia libro escuela médico casa noche luz piedra árbol pan",
    "deu": "Wasser Fluss Stadt Musik Familie Buch Schule Arzt Haus Nacht Licht Stein Baum Brot",
}


def word_list_texts(n_per_list: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Synthetic sentences from three word lists and their one-hot list labels ``(n, 3)``."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for j, words in enumerate(_LISTS.values()):
        w = words.split()
        for _ in range(n_per_list):
            texts.append(" ".join(rng.choice(w, size=int(rng.integers(4, 16)))) + ".")
            labels.append(j)
    return texts, np.eye(len(_LISTS), dtype=bool)[labels]


def random_gpt2(texts: list[str], layers: int, width: int, seed: int = 0) -> tuple[Any, Any]:
    """A random GPT-2-style model and a byte-level BPE trained on ``texts``."""
    import torch
    import transformers as tf

    from babelscope.pretrain.config import TokenizerConfig
    from babelscope.pretrain.tokenizer import train_tokenizer

    tok = train_tokenizer({"x": texts}, TokenizerConfig(vocab_size=400), model_max_length=256)
    torch.manual_seed(seed)
    cfg = tf.GPT2Config(vocab_size=len(tok), n_positions=256, n_embd=width, n_layer=layers,
                        n_head=max(1, width // 64), bos_token_id=0, eos_token_id=2, pad_token_id=1)  # fmt: skip
    return tf.GPT2LMHeadModel(cfg).eval(), tok


def run(quick: bool = False) -> dict[str, float]:
    layers, width, n = (2, 128, 40) if quick else (6, 384, 80)
    texts, labels = word_list_texts(n)
    model, tok = random_gpt2(texts, layers, width)
    return measure(model, tok, texts, labels, k=20 if quick else 50)
