"""Shortcut diagnostics: how far trivial scores get on a concept's pool.

An expert is interesting only if it beats what needs no model at all. For every
(concept, language) pool this module computes the AP of trivial scores:

``length``   the sentence length in the model's tokens (long or short first);
``source``   an indicator of each source (Django strings, UDHR, ...);
``digits``   the share of digits in the text (high or low first);
``punct``    the share of punctuation (high or low first);
``first``    each unit's activation at the first content token alone (the model sees
             one token: a lexical shortcut of how sentences begin).

Like the experts, a shortcut is **chosen on one half and scored on the other** (both
ways, averaged), so a family with many candidates (every source, every unit) gets no
winner's curse. A (concept, language) is *flagged* when its best shortcut reaches the
median held-out AP of its top-K experts; a concept is flagged when it is flagged in at
least half of its real languages, and the align stage leaves flagged concepts out
unless ``align.keep_shortcut_concepts`` is set. Written to ``results/shortcuts.parquet``
at the last checkpoint, for the matched pools and (when scored) the unmatched ones.
"""

from __future__ import annotations

import unicodedata
from typing import Any

import numpy as np
import pandas as pd

from babelscope.analysis.ap_sets import ap_of_sets, ranks

SHORTCUTS_FILE = "shortcuts.parquet"
FAMILIES = ("length", "source", "digits", "punct", "first")
SHORTCUT_COLUMNS = ["step", "pools", "concept", "lang", "n_pos", "n_members",
                    *(f"ap_{f}" for f in FAMILIES), "best", "best_ap", "expert_median_ap",
                    "chance", "flagged"]  # fmt: skip


def _share(text: str, cat: str) -> float:
    if not text:
        return 0.0
    return sum(unicodedata.category(ch).startswith(cat) for ch in text) / len(text)


def trivial_scores(
    texts: list[str], sources: list[str], n_tokens: np.ndarray
) -> dict[str, np.ndarray]:
    """Candidate scores per family: ``{family: (n, candidates)}`` (both directions where
    a score has one)."""
    length = np.asarray(n_tokens, dtype=np.float64)
    digits = np.array([_share(t, "N") for t in texts])
    punct = np.array([_share(t, "P") for t in texts])
    src = np.asarray(sources, dtype=str)
    names = sorted(set(src))
    return {
        "length": np.stack([length, -length], 1),
        "source": np.stack([(src == s).astype(np.float64) for s in names], 1),
        "digits": np.stack([digits, -digits], 1),
        "punct": np.stack([punct, -punct], 1),
    }


def _ap_all_candidates(
    every: np.ndarray, labels: np.ndarray, members: np.ndarray, half: np.ndarray
) -> list[np.ndarray]:
    """Per half, ``(C, candidates)`` AP of every candidate column of ``every`` for every
    concept over its members of that half (NaN where a half has no positive or no
    negative). Concepts with the same members share one ranking."""
    from babelscope.analysis.member_scores import member_groups

    y = np.asarray(labels, dtype=bool)
    out = []
    for h in (0, 1):
        ap = np.full((y.shape[1], every.shape[1]), np.nan)
        for idx, cols in member_groups(members, np.asarray(half) == h):
            sets = [np.flatnonzero(y[idx, j]) for j in cols]
            ok = [q for q, pos in enumerate(sets) if 0 < len(pos) < len(idx)]
            if not ok:
                continue
            table = ranks(every[idx].astype(np.float32))
            ap[cols[ok]] = ap_of_sets(table, [sets[q] for q in ok]).astype(np.float64)
        out.append(ap)
    return out


def heldout_best(ap_h: list[np.ndarray]) -> float:
    """Mean over the two directions of the AP, on one half, of the candidate best on the
    other half (NaN when a half has no finite AP)."""
    vals = []
    for a, b in ((0, 1), (1, 0)):
        if not np.isfinite(ap_h[a]).any() or not np.isfinite(ap_h[b]).any():
            return float("nan")
        vals.append(ap_h[b][int(np.nanargmax(ap_h[a]))])
    return float(np.mean(vals))


def expert_median(ap0: np.ndarray, ap1: np.ndarray, k: int) -> float:
    """Median AP, on the other half, of the top ``k`` units chosen on one half; the two
    directions averaged."""
    from babelscope.analysis.experts import top_indices

    if not (np.isfinite(ap0).any() and np.isfinite(ap1).any()):
        return float("nan")
    return float(
        np.mean([np.median(ap1[top_indices(ap0, k)]), np.median(ap0[top_indices(ap1, k)])])
    )


def pool_shortcuts(
    pool: Any,
    half: np.ndarray,
    shard: dict[str, Any],
    candidates: dict[str, np.ndarray],
    k: int,
    step: int,
) -> list[dict[str, Any]]:
    """Rows of the shortcut table for one scored pool (its shard holds the experts' AP on
    each half)."""
    from babelscope.analysis.stats import expected_random_ap

    y_all = np.asarray(pool.labels, dtype=bool)
    names = list(candidates)
    every = np.concatenate([candidates[f] for f in names], axis=1)
    bounds = np.cumsum([0] + [candidates[f].shape[1] for f in names])
    ap_h = _ap_all_candidates(every, y_all, pool.members, half)
    rows = []
    for j, concept in enumerate(pool.concepts):
        idx = [np.flatnonzero(pool.members[:, j] & (half == h)) for h in (0, 1)]
        y = y_all[:, j]
        fam = {f: heldout_best([a[j, bounds[i] : bounds[i + 1]] for a in ap_h])
               for i, f in enumerate(names)}  # fmt: skip
        best = heldout_best([a[j] for a in ap_h])
        name = max((f for f in fam if np.isfinite(fam[f])), key=lambda f: fam[f], default="")
        c = shard["concepts"].index(concept)
        med = expert_median(shard["ap_half0"][c].astype(np.float64),
                            shard["ap_half1"][c].astype(np.float64), k)  # fmt: skip
        chance = np.mean(
            [expected_random_ap(max(int(y[ix].sum()), 1), max(len(ix), 1)) for ix in idx]
        )
        rows.append(dict(
            step=int(step), pools=pool.variant, concept=concept, lang=pool.lang,
            n_pos=int((y & pool.members[:, j]).sum()), n_members=int(pool.members[:, j].sum()),
            **{f"ap_{f}": fam.get(f, np.nan) for f in FAMILIES}, best=name, best_ap=best,
            expert_median_ap=med, chance=float(chance),
            flagged=bool(np.isfinite(best) and np.isfinite(med) and best >= med),
        ))  # fmt: skip
    return rows


def first_token_length(tokenizer: Any) -> int:
    """``max_length`` that keeps the special tokens and the first content token."""
    with_special = len(tokenizer("a")["input_ids"])
    plain = len(tokenizer("a", add_special_tokens=False)["input_ids"])
    return max(with_special - plain, 0) + 1


def token_lengths(tokenizer: Any, texts: list[str]) -> np.ndarray:
    """Content tokens per text (no special tokens)."""
    enc = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return np.array([len(e) for e in enc], dtype=np.int64)


def concept_flags(table: pd.DataFrame, pools: str = "matched") -> dict[str, bool]:
    """Per concept of ``pools``: flagged in at least half of its real languages."""
    from babelscope.languages import is_control

    if table.empty:
        return {}
    t = table[(table["pools"] == pools) & ~table["lang"].map(is_control)]
    share = t.groupby("concept")["flagged"].mean()
    return {str(c): bool(v >= 0.5) for c, v in share.items()}


def load_shortcuts(out_dir: Any) -> pd.DataFrame | None:
    """``results/shortcuts.parquet`` of a run, or None."""
    from pathlib import Path

    path = Path(out_dir) / "results" / SHORTCUTS_FILE
    return pd.read_parquet(path) if path.exists() else None
