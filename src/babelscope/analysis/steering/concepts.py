"""Which concepts to steer, and the sentences their forcing values are measured on."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from babelscope.errors import BabelscopeError

STRENGTH_TOP = 10  # a concept's strength: mean AP of its ten best units


def experts_index(out_dir: Path) -> tuple[pd.DataFrame, str]:
    """(step, concept, lang) for which experts were computed in ``out_dir``, and their unit kind."""
    from babelscope.io import read_parquet_metadata

    path = out_dir / "results" / "experts.parquet"
    if not path.exists():
        raise BabelscopeError(
            f"no experts in {out_dir} ({path} is missing): run `babelscope experts --out {out_dir}` first"
        )
    df = pd.read_parquet(path, columns=["step", "concept", "lang"]).drop_duplicates()
    kind = (read_parquet_metadata(path).get("settings") or {}).get("kind", "mlp")
    return df.reset_index(drop=True), str(kind)


def concept_strengths(out_dir: Path, step: int, lang: str) -> tuple[dict[str, float], bool]:
    """How well each concept's experts predict it at ``step`` in ``lang``, and whether held out.

    With the shard arrays ``ap_half0``/``ap_half1`` (AP on two halves of the sentences): the
    top units chosen on one half are scored on the other, both ways, averaged — choosing
    the best of thousands of units on the same data would flatter every concept. Without
    them, the in-sample mean AP of the best units (marked ``False``).
    """
    from babelscope.analysis.experts import read_shard, shard_path, top_indices

    shard = read_shard(shard_path(out_dir, step, lang))
    held_out = "ap_half0" in shard and "ap_half1" in shard
    out = {}
    for c, concept in enumerate(shard["concepts"]):
        if held_out:
            h0 = np.asarray(shard["ap_half0"][c], dtype=np.float64)
            h1 = np.asarray(shard["ap_half1"][c], dtype=np.float64)
            with warnings.catch_warnings():  # no positives in a half: NaN strength
                warnings.simplefilter("ignore", RuntimeWarning)
                a = np.nanmean(h1[top_indices(h0, STRENGTH_TOP)])
                b = np.nanmean(h0[top_indices(h1, STRENGTH_TOP)])
            out[concept] = float((a + b) / 2)
        else:
            ap = np.asarray(shard["ap"][c], dtype=np.float64)
            out[concept] = float(np.nanmean(ap[top_indices(ap, STRENGTH_TOP)]))
    return out, held_out


def choose_concepts(
    index: pd.DataFrame, settings: Any, steps: list[int], out_dir: Path | None = None
) -> tuple[list[str], list[str], bool]:
    """The concepts to steer, every concept ranked by strength, and whether held out.

    Default: the ``max_concepts`` concepts whose source-language experts are strongest at
    the last step (:func:`concept_strengths`), among those scored at every step; steering
    a concept that no unit predicts shows nothing. A one-line error if a requested
    concept lacks experts.
    """
    lang = settings.source_lang
    have = index[index["lang"] == lang]
    if have.empty:
        langs = sorted(index["lang"].unique())
        raise BabelscopeError(
            f"no experts were computed for source language '{lang}': choose one of {', '.join(langs)} "
            f"or compute experts for '{lang}'"
        )
    at_all = have.groupby("concept")["step"].apply(lambda s: set(steps) <= set(s.astype(int)))
    eligible = [c for c in dict.fromkeys(have["concept"]) if at_all.get(c, False)]
    strength, held_out = ({}, False)
    if out_dir is not None:
        strength, held_out = concept_strengths(out_dir, max(steps), lang)
    ranked = sorted(eligible, key=lambda c: -strength.get(c, 0.0))
    if settings.concepts is None:
        chosen = ranked[: settings.max_concepts] if settings.max_concepts else ranked
        return chosen, ranked, held_out
    for concept in settings.concepts:
        rows = have[have["concept"] == concept]
        if rows.empty:
            known = sorted(have["concept"].unique())
            raise BabelscopeError(
                f"no experts were computed for concept '{concept}' in '{lang}': choose one of "
                f"{', '.join(known[:12])}{'…' if len(known) > 12 else ''}"
            )
        missing = sorted(set(steps) - set(rows["step"].astype(int)))
        if missing:
            raise BabelscopeError(
                f"no experts for concept '{concept}' in '{lang}' at step(s) {missing}: "
                "run `babelscope experts` on these checkpoints or leave them out with --steps"
            )
    return list(settings.concepts), ranked, held_out


def pool_texts(
    data_dir: Path, lang: str, concepts: list[str], n_background: int, seed: int = 0
) -> tuple[dict[str, list[str]], list[str]]:
    """Positive sentences of each concept in ``lang``'s pool, and up to ``n_background``
    pool sentences positive for none of ``concepts`` (a fixed random sample)."""
    from babelscope.concepts.labels import label_matrix, load_concept_labels
    from babelscope.corpora.corpus import load_corpus

    labels = load_concept_labels(data_dir)
    have = set(labels.loc[labels["lang"] == lang, "concept"].astype(str))
    wanted = [c for c in concepts if c in have]
    ids, cols, y = label_matrix(labels, lang, wanted)
    corpus = load_corpus(data_dir, languages=[lang])
    text_of = dict(zip(corpus["id"].astype(str), corpus["text"], strict=True))
    missing = [i for i in ids if i not in text_of]
    if missing:
        raise BabelscopeError(
            f"concept labels name sentence id '{missing[0]}' ({lang}) that is not in the corpus: "
            "rebuild the data dir"
        )
    positives = {c: [text_of[ids[i]] for i in np.flatnonzero(y[:, j])] for j, c in enumerate(cols)}
    free = np.flatnonzero(~y.any(axis=1)) if len(cols) else np.arange(len(ids))
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(free, size=min(n_background, len(free)), replace=False))
    return positives, [text_of[ids[i]] for i in pick]
