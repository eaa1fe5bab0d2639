"""The pools of sentences the experts are scored on: one per language, all concepts.

For one language every concept is labelled over the same pool of sentences
(:mod:`babelscope.concepts.labels`), so one extraction per language and checkpoint serves
all concepts. Each concept is scored on its own subset of that pool, ``members``:

* ``matched`` (default): the concept's matched pool (:mod:`babelscope.concepts.matching`):
  the same number of positives in every language, negatives matched to the positives'
  source and length;
* ``unmatched``: the language's whole base pool (positives plus random other sentences),
  as babelscope scored before matched pools; kept to show what matching changes.

Concepts with too few positives or negatives in a language are skipped there (and listed
in ``experts_skipped.parquet``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from babelscope.errors import BabelscopeError

if TYPE_CHECKING:
    from babelscope.analysis.experts import ExpertSettings

SKIPPED_FILE = "experts_skipped.parquet"


@dataclass
class Pool:
    """One language's sentence pool and its kept concepts."""

    lang: str
    ids: list[str]
    texts: list[str]
    concepts: list[str]
    labels: np.ndarray  # (n, C) bool, kept concepts only
    data_key: str  # the extracted texts (keys the activation cache)
    sources: list[str]
    groups: list[str]  # translation group of each sentence (same half in every language)
    members: np.ndarray  # (n, C) bool: the sentences each kept concept is scored on
    variant: str = "matched"
    label_key: str = ""  # labels and members (key the scores, not the activations)

    @property
    def n_pos(self) -> np.ndarray:
        """(C,) positives of every kept concept among its members."""
        return (self.labels & self.members).sum(axis=0)

    @property
    def n_neg(self) -> np.ndarray:
        """(C,) negatives of every kept concept among its members."""
        return (~self.labels & self.members).sum(axis=0)


def prepare_pools(
    data_dir: Path, settings: ExpertSettings, variant: str | None = None, *, quiet: bool = False
) -> tuple[list[Pool], pd.DataFrame, str]:
    """Pools per language (``variant``: ``matched`` or ``unmatched``, default the
    settings' ``pools``), and the table of skipped (concept, lang) pairs."""
    from babelscope.concepts.labels import label_matrix, load_concept_labels, pool_masks
    from babelscope.corpora.corpus import data_hash, load_corpus
    from babelscope.io import settings_hash
    from babelscope.progress import warn

    labels = load_concept_labels(data_dir)
    have_langs = sorted(labels["lang"].unique())
    langs = settings.languages or have_langs
    missing = [lang for lang in langs if lang not in have_langs]
    if missing:
        raise BabelscopeError(
            f"no concept labels for {', '.join(missing)} in {data_dir}: labelled languages are {', '.join(have_langs)}"
        )
    if settings.concepts:
        unknown = sorted(set(settings.concepts) - set(labels["concept"].unique()))
        if unknown:
            raise BabelscopeError(
                f"unknown concept(s) {', '.join(unknown)}: not in {data_dir}/concepts.parquet"
            )
    from babelscope.analysis.halves import sentence_groups

    corpus = load_corpus(data_dir, languages=langs)
    text_of = dict(zip(corpus["id"], corpus["text"], strict=True))
    source_of = dict(zip(corpus["id"], corpus["source"].astype(str), strict=True))
    group_of = sentence_groups(corpus)
    dhash = data_hash(data_dir)
    variant = variant or settings.pools
    pools, skipped = [], []
    for lang in langs:
        ids, concepts, y = label_matrix(labels, lang)
        ids, concepts, y = list(ids), list(concepts), np.asarray(y, dtype=bool)
        if settings.concepts:  # the requested ones that this language labels, in request order
            cols = [concepts.index(c) for c in settings.concepts if c in concepts]
            concepts, y = [concepts[j] for j in cols], y[:, cols]
        matched, base = pool_masks(labels, lang, ids, concepts)
        members = matched if variant == "matched" else np.repeat(base[:, None], len(concepts), 1)
        absent = [i for i in ids if i not in text_of]
        if absent:
            raise BabelscopeError(
                f"concept labels name sentence id '{absent[0]}' ({lang}) that is not in the corpus: rebuild the data dir"
            )
        n_pos = (y & members).sum(axis=0)
        n_neg = (~y & members).sum(axis=0)
        keep = []
        for j, c in enumerate(concepts):
            reason = None
            if not members[:, j].any():
                reason = "no matched pool"
            elif n_pos[j] == 0:
                reason = "no positives"
            elif n_neg[j] == 0:
                reason = "no negatives"
            elif n_pos[j] < settings.min_positives:
                reason = f"fewer than {settings.min_positives} positives"
            elif n_neg[j] < settings.min_negatives:
                reason = f"fewer than {settings.min_negatives} negatives"
            if reason:
                skipped.append(
                    dict(
                        concept=c,
                        lang=lang,
                        n_pos=int(n_pos[j]),
                        n_neg=int(n_neg[j]),
                        reason=reason,
                    )
                )
            else:
                keep.append(j)
        if settings.concepts:
            for c in [c for c in settings.concepts if c not in concepts]:
                skipped.append(
                    dict(concept=c, lang=lang, n_pos=0, n_neg=len(ids), reason="not labelled")
                )
        pools.append(
            Pool(lang=lang, ids=ids, texts=[text_of[i] for i in ids], concepts=[concepts[j] for j in keep],
                  labels=y[:, keep], sources=[source_of[i] for i in ids],
                  groups=[group_of[i] for i in ids], members=members[:, keep], variant=variant,
                  data_key=f"{dhash}:{lang}:{settings_hash(ids)}",
                  # A rebuilt concept table changes AP on the same text (not the activations).
                  label_key=settings_hash([np.packbits(y[:, keep]).tobytes().hex(),
                                           np.packbits(members[:, keep]).tobytes().hex()]))
        )  # fmt: skip
    skipped_df = pd.DataFrame(skipped, columns=["concept", "lang", "n_pos", "n_neg", "reason"])
    if len(skipped_df) and not quiet:
        shown = ", ".join(
            f"{r.concept}/{r.lang} ({r.reason})" for r in skipped_df.head(8).itertuples()
        )
        more = f" and {len(skipped_df) - 8} more" if len(skipped_df) > 8 else ""
        warn(
            f"experts: skipped {len(skipped_df)} (concept, language) pair(s): {shown}{more}; see {SKIPPED_FILE}"
        )
    return pools, skipped_df, dhash
