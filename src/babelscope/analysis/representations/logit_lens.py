"""The latent language of every layer: the logit lens over the residual stream.

The logit lens (nostalgebraist 2020; as used by Wendler et al. 2024, "Do Llamas work in
English?") decodes a layer's residual state as if it were the last one: through the
model's final norm, output projection (OPT) and LM head — found through the family table
(:func:`babelscope.activations.families.output_head`) — and a softmax. Per token
position we then ask how much of that next-token distribution falls on tokens of the
input's own language, on the pivot language (English), on other languages, on tokens
shared by several languages, and on tokens the corpus never shows. Tuned-lens style
affine translators per layer are out of scope: the plain lens is biased against early
layers, whose states are not yet in the output basis, so early-layer shares mean "what
the output head reads there", not "what the layer represents".

**Which language a token belongs to** (:func:`token_languages`): every language's
corpus text is tokenized and token counts are normalised per language (so a language
with more text does not claim every token). A token belongs to language ``l`` when it
occurs at least ``min_count`` times in ``l`` and ``l`` holds at least ``dominance`` (0.8)
of the token's normalised frequency summed over languages; a token seen ``min_count``
times but claimed by no single language is **shared**; a token seen fewer times
(including special tokens and tokens of no corpus text) is **unseen**.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from babelscope.activations.families import OutputHead
from babelscope.errors import BabelscopeError

SHARED, UNSEEN = "shared", "unseen"


@dataclass
class TokenLanguages:
    """A class per vocabulary entry: ``classes[label[t]]`` is token ``t``'s language,
    ``"shared"`` or ``"unseen"``. ``counts[l, t]``: occurrences of ``t`` in language ``l``."""

    languages: list[str]
    label: np.ndarray
    counts: np.ndarray
    min_count: int
    dominance: float

    @property
    def classes(self) -> list[str]:
        return [*self.languages, SHARED, UNSEEN]

    def vocab_share(self) -> np.ndarray:
        """Share of the vocabulary in each class: the mass a uniform next-token guess puts there."""
        return np.bincount(self.label, minlength=len(self.classes)) / len(self.label)

    def onehot(self) -> np.ndarray:
        """``(vocab, classes)`` float32 indicator: probabilities @ onehot = mass per class."""
        m = np.zeros((len(self.label), len(self.classes)), dtype=np.float32)
        m[np.arange(len(self.label)), self.label] = 1.0
        return m


def token_languages(
    tokenizer: Any,
    texts: Mapping[str, Sequence[str]],
    vocab_size: int,
    *,
    min_count: int = 3,
    dominance: float = 0.8,
) -> TokenLanguages:
    """Assign every token id below ``vocab_size`` to a language, "shared" or "unseen".

    ``texts``: per language the text whose tokens define it (e.g. its training sentences).
    """
    if not 0.5 < dominance <= 1.0:
        raise BabelscopeError(
            f"dominance must be in (0.5, 1] (a token can belong to one language only), not {dominance}"
        )
    languages = list(texts)
    counts = np.zeros((len(languages), vocab_size), dtype=np.int64)
    for i, lang in enumerate(languages):
        rows = list(texts[lang])
        if not rows:
            raise BabelscopeError(
                f"no text for language {lang} to find its tokens: add text or drop the language"
            )
        ids = tokenizer(rows, add_special_tokens=False)["input_ids"]
        flat = np.fromiter((t for r in ids for t in r), dtype=np.int64)
        flat = flat[flat < vocab_size]
        counts[i] = np.bincount(flat, minlength=vocab_size)
    special = [t for t in tokenizer.all_special_ids if t < vocab_size]
    counts[:, special] = 0
    freq = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    total = freq.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, freq / np.where(total > 0, total, 1), 0.0)
    best = share.argmax(axis=0)
    best_share = share.max(axis=0)
    best_count = counts[best, np.arange(vocab_size)]
    label = np.full(vocab_size, len(languages) + 1, dtype=np.int64)  # unseen
    seen = counts.sum(axis=0) >= min_count
    label[seen] = len(languages)  # shared
    own = (best_count >= min_count) & (best_share >= dominance)
    label[own] = best[own]
    return TokenLanguages(languages, label, counts, min_count, dominance)


def lens_mass(
    head: OutputHead,
    states: Mapping[int, np.ndarray],
    final_layer: int,
    classes: TokenLanguages,
    *,
    chunk: int = 512,
) -> dict[int, np.ndarray]:
    """Next-token probability mass per token class, per layer: ``(n_tokens, n_classes)``.

    ``states[layer]``: residual states ``(n_tokens, d)`` of layer ``layer``;
    ``final_layer`` (L) marks the base model's own output, which is already normed and
    projected, so only the head (and soft cap) apply to it: the lens at L is exactly
    the model's next-token distribution.
    """
    weight = head.head.weight
    onehot = torch.from_numpy(classes.onehot()).to(weight.device)
    vocab = onehot.shape[0]
    out: dict[int, np.ndarray] = {}
    with torch.inference_mode():
        for layer, x in states.items():
            rows = []
            for start in range(0, len(x), chunk):
                h = torch.from_numpy(np.ascontiguousarray(x[start : start + chunk]))
                h = h.to(device=weight.device, dtype=weight.dtype)
                logits = head.logits(h, final=layer == final_layer).float()
                if logits.shape[-1] != vocab:
                    raise BabelscopeError(
                        f"the output head gives {logits.shape[-1]} logits but tokens were classed for {vocab}: "
                        "class the tokens with the model's output width"
                    )
                rows.append((torch.softmax(logits, dim=-1) @ onehot).cpu().numpy())
            out[layer] = (
                np.concatenate(rows) if rows else np.zeros((0, onehot.shape[1]), np.float32)
            )
    return out


def sentence_means(values: np.ndarray, sentence: np.ndarray, n_sentences: int) -> np.ndarray:
    """Mean of ``values`` rows per sentence (``sentence[i]`` owns row ``i``); NaN where none."""
    sums = np.zeros((n_sentences, values.shape[1]), dtype=np.float64)
    if len(sentence):
        order = np.argsort(sentence, kind="stable")
        s = sentence[order]
        starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
        sums[s[starts]] = np.add.reduceat(values[order].astype(np.float64), starts, axis=0)
    n = np.bincount(sentence, minlength=n_sentences)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, sums / np.maximum(n, 1), np.nan)


def lens_positions(sentence: np.ndarray, per_sentence: int | None, seed: int = 0) -> np.ndarray:
    """Rows of a token-sample table to decode: up to ``per_sentence`` per sentence, seeded."""
    if per_sentence is None:
        return np.arange(len(sentence))
    rng = np.random.default_rng(seed)
    picked = []
    for s in np.unique(sentence):
        rows = np.flatnonzero(sentence == s)
        if len(rows) > per_sentence:
            rows = np.sort(rng.choice(rows, size=per_sentence, replace=False))
        picked.append(rows)
    return np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)


def lens_summary(
    mass: np.ndarray,
    lang_index: np.ndarray,
    classes: TokenLanguages,
    pivot: str,
    *,
    n_permutations: int = 100,
    n_boot: int = 1000,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Rows ``measure, value, chance, null…, ci…`` of one layer's per-sentence class mass.

    ``mass``: ``(n_sentences, n_classes)`` mean next-token mass per class of each sentence;
    ``lang_index[s]``: the input language of sentence ``s`` (index into
    ``classes.languages``). Only inputs in a language other than the pivot count, so
    "own" and "pivot" are different sets of tokens:

    - ``lens_own``: mass on the input language's tokens. Chance: their vocabulary share;
      null: the same with the sentences' language labels permuted (mass a layer puts on a
      language's tokens whatever the input);
    - ``lens_pivot``: mass on the pivot's tokens. Chance: their vocabulary share; null: the
      mass on a typical *other* language (neither the input's nor the pivot), with a paired
      sign-flip test per sentence;
    - ``lens_other`` (all other languages together), ``lens_shared``, ``lens_unseen``:
      shares with their vocabulary share as chance.
    """
    from babelscope.analysis.stats import (
        bootstrap_interval,
        null_summary,
        paired_permutation_test,
    )

    langs = classes.languages
    n_lang = len(langs)
    if pivot not in langs:
        raise BabelscopeError(
            f"pivot language {pivot} is not among the analysed languages ({', '.join(langs)}): "
            "add it or choose another pivot"
        )
    p = langs.index(pivot)
    keep = (lang_index != p) & np.isfinite(mass).all(axis=1)
    m, li = mass[keep], lang_index[keep]
    vs = classes.vocab_share()
    if len(m) < 2:
        return []
    rows = np.arange(len(m))
    own = m[rows, li]
    others = np.ones((len(m), n_lang), dtype=bool)
    others[rows, li] = False
    others[:, p] = False
    other_sum = (m[:, :n_lang] * others).sum(axis=1)
    typical = other_sum / np.maximum(others.sum(axis=1), 1)
    rng = np.random.default_rng(seed)
    null_own = np.array([m[rows, rng.permutation(li)].mean() for _ in range(n_permutations)])

    def row(measure: str, values: np.ndarray, chance: float, null: np.ndarray | None = None):
        lo, hi = bootstrap_interval(values, n_boot=n_boot, seed=seed)
        value = float(values.mean())
        stats = (
            null_summary(null, value)
            if null is not None
            else {"null_mean": np.nan, "null_p95": np.nan, "n_null": 0, "p_value": np.nan}
        )
        out = dict(measure=measure, value=value, chance=float(chance), ci_low=lo, ci_high=hi)
        return out | stats | {"n_items": len(values), "n_pairs": 0}

    piv = row("lens_pivot", m[:, p], vs[p])
    test = paired_permutation_test(m[:, p], typical, n_perm=max(n_permutations, 1), seed=seed)
    piv.update(null_mean=float(typical.mean()), null_p95=np.nan, n_null=0, p_value=test["p_value"])
    other_chance = float(((vs[:n_lang][None, :]) * others).sum(axis=1).mean())
    return [
        row("lens_own", own, float(vs[li].mean()), null_own),
        piv,
        row("lens_other", other_sum, other_chance),
        row("lens_shared", m[:, n_lang], vs[n_lang]),
        row("lens_unseen", m[:, n_lang + 1], vs[n_lang + 1]),
    ]


def lens_matrix(
    mass: np.ndarray, lang_index: np.ndarray, classes: TokenLanguages
) -> list[dict[str, Any]]:
    """Mean mass of every input language on every class (``input_lang, target, mass, n``)."""
    out = []
    for i, lang in enumerate(classes.languages):
        sel = mass[lang_index == i]
        sel = sel[np.isfinite(sel).all(axis=1)]
        if not len(sel):
            continue
        mean = sel.mean(axis=0)
        for c, target in enumerate(classes.classes):
            out.append(dict(input_lang=lang, target=target, mass=float(mean[c]), n=len(sel)))
    return out
