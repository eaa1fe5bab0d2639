"""Training data: tokenised sentences per language, language-balanced batches, held-out sets.

A training sequence is monolingual: a language is drawn with probability
``p(l) ∝ share(l)^alpha`` (share = the language's fraction of training tokens), then
random sentences of that language, each ``<s> … </s>``, are packed until the sequence is
full. Every sequence starts with BOS at position 0, as a sentence does at extraction
time. The sampler draws from its own NumPy generator; its state is the whole "data
position", so a resumed run draws the same batches as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from babelscope.errors import BabelscopeError
from babelscope.pretrain.tokenizer import BOS_ID, EOS_ID, PAD_ID


def texts_by_language(
    corpus: pd.DataFrame, split: str, languages: Sequence[str]
) -> dict[str, list[str]]:
    """Texts of one split per language, in id order (deterministic whatever the file order)."""
    part = corpus[corpus["split"] == split].sort_values("id")
    grouped = {lang: g["text"].tolist() for lang, g in part.groupby("lang", sort=True)}
    return {lang: [t for t in grouped.get(lang, []) if t.strip()] for lang in languages}


def encode_sentences(tokenizer: Any, texts: Sequence[str], max_len: int) -> list[np.ndarray]:
    """``<s> text </s>`` token ids per text (BOS added by the tokenizer), cut at ``max_len``."""
    if not texts:
        return []
    # Truncate in the tokenizer (room left for EOS): quiet, and no work on long tails.
    enc = tokenizer(list(texts), add_special_tokens=True, truncation=True, max_length=max_len - 1)[
        "input_ids"
    ]
    out = []
    for ids in enc:
        if not ids or ids[0] != BOS_ID:  # a tokenizer saved without the BOS post-processor
            ids = [BOS_ID, *ids]
        out.append(np.asarray([*ids, EOS_ID][:max_len], dtype=np.int64))
    return out


def language_probabilities(token_counts: Mapping[str, int], alpha: float) -> dict[str, float]:
    """Temperature sampling: p(l) ∝ (n_l / Σn)^alpha. alpha=1 keeps the data mix, 0 is uniform."""
    langs = sorted(token_counts)
    n = np.array([token_counts[lang] for lang in langs], dtype=np.float64)
    w = (n / n.sum()) ** alpha
    w /= w.sum()
    return {lang: float(p) for lang, p in zip(langs, w, strict=True)}


class LanguageSampler:
    """Draws packed monolingual training sequences with language-balanced probabilities."""

    def __init__(self, sentences: Mapping[str, list[np.ndarray]], alpha: float, seed: int) -> None:
        self.languages = sorted(sentences)
        self.sentences = {lang: sentences[lang] for lang in self.languages}
        self.token_counts = {
            lang: int(sum(len(s) for s in v)) for lang, v in self.sentences.items()
        }
        self.probs = language_probabilities(self.token_counts, alpha)
        self._p = np.array([self.probs[lang] for lang in self.languages])
        self.rng = np.random.Generator(np.random.PCG64(seed))

    def batch(self, batch_size: int, seq_len: int) -> tuple[torch.Tensor, list[str]]:
        """``(batch_size, seq_len)`` token ids and the language of each row."""
        rows = np.empty((batch_size, seq_len), dtype=np.int64)
        lang_idx = self.rng.choice(len(self.languages), size=batch_size, p=self._p)
        langs = [self.languages[i] for i in lang_idx]
        for r, lang in enumerate(langs):
            pool = self.sentences[lang]
            filled = 0
            while filled < seq_len:
                sent = pool[int(self.rng.integers(len(pool)))]
                take = min(len(sent), seq_len - filled)
                rows[r, filled : filled + take] = sent[:take]
                filled += take
        return torch.from_numpy(rows), langs

    def state(self) -> dict[str, Any]:
        """The sampler's position: its generator state (JSON-able)."""
        return self.rng.bit_generator.state

    def set_state(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state


def eval_batches(
    sentences: Mapping[str, list[np.ndarray]], n_per_language: int, batch_size: int
) -> dict[str, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Right-padded ``(ids, attention_mask)`` batches of the first ``n`` held-out sentences per language.

    Sentences are batched in length order so that little of each batch is padding.
    """
    out: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    for lang in sorted(sentences):
        sents = sorted(sentences[lang][:n_per_language], key=len)
        batches = []
        for i in range(0, len(sents), batch_size):
            chunk = sents[i : i + batch_size]
            width = max(len(s) for s in chunk)
            ids = torch.full((len(chunk), width), PAD_ID, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for r, s in enumerate(chunk):
                ids[r, : len(s)] = torch.from_numpy(s)
                mask[r, : len(s)] = 1
            batches.append((ids, mask))
        if batches:
            out[lang] = batches
    return out


def check_training_text(train: Mapping[str, list[str]], where: str) -> None:
    """One-line error if the corpus or any requested language has no training text."""
    if not any(train.values()):
        raise BabelscopeError(
            f"{where}: no training text (split 'train' is empty); rebuild the corpus"
        )
    empty = [lang for lang, texts in train.items() if not texts]
    if empty:
        raise BabelscopeError(
            f"{where}: no training text in {', '.join(empty)}; rebuild the corpus or leave "
            f"{'this language' if len(empty) == 1 else 'these languages'} out of `languages`"
        )
