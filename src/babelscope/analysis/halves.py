"""Two halves of every concept pool: experts are chosen on one and scored on the other.

Choosing the best K of thousands of units by AP inflates their AP on the same sentences
(the winner's curse). Every (concept, language) pool is therefore split in two halves;
experts are selected on one half and their AP is measured on the other, both ways
(cross-fitting), and the two directions are averaged.

The split is made over **groups**, not sentences: sentences that are translations of each
other (the same ``align_id``; a control language's copy of its original sentence) fall in
the same half in every language. So experts selected on half 0 of language a are never
scored on the translation, in language b, of a sentence they were chosen on.

It is **stratified by label**: concepts are visited from the rarest to the most frequent,
and each concept's still unassigned positive groups are dealt alternately to the two
halves (in a seeded random order), starting with the half that holds fewer of that
concept's positives so far; groups positive for nothing are dealt the same way. Every
concept's positives are thus split as evenly as the groups allow, in every language.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd


def sentence_groups(corpus: pd.DataFrame) -> dict[str, str]:
    """Sentence id -> group: its ``align_id`` if set, else the id itself.

    A control language's sentence (``<lang>~<tag>:<original id>``) takes its original's group.
    """
    ids = corpus["id"].astype(str).to_numpy()
    aids = corpus["align_id"].astype("string").fillna("").astype(str).to_numpy()
    group = {i: (a if a else i) for i, a in zip(ids, aids, strict=True)}
    for i in ids:
        head, sep, orig = i.partition(":")
        if sep and "~" in head.split(":")[0] and orig in group:
            group[i] = group[orig]
    return group


def assign_halves(
    pools: Sequence[tuple[Sequence[str], np.ndarray]],
    group_of: Mapping[str, str],
    seed: int = 0,
) -> list[np.ndarray]:
    """Half (0 or 1) of every sentence of every pool.

    ``pools``: per language, the sentence ids and their ``(n, C)`` boolean labels (the
    columns need not be the same concepts across languages, but a concept should sit in
    the same column position only within one pool: columns are matched by position
    within each pool, and the balance is kept per pool column). Returns per pool an
    ``(n,)`` int8 array.
    """
    rng = np.random.default_rng(seed)
    half: dict[str, int] = {}
    size = [0, 0]  # groups dealt to each half
    # Per (pool, column): positives already in each half, to balance the next deal.
    count = [np.zeros((np.asarray(y).shape[1], 2), dtype=np.int64) for _, y in pools]
    cols = [
        (pi, c, int(np.asarray(y)[:, c].sum()))
        for pi, (_, y) in enumerate(pools)
        for c in range(np.asarray(y).shape[1])
    ]
    cols.sort(key=lambda t: (t[2], t[0], t[1]))  # rarest first: they need the balance most
    group_cols: dict[str, list[tuple[int, int]]] = {}
    for pi, (ids, y) in enumerate(pools):
        yy = np.asarray(y, dtype=bool)
        for r, i in enumerate(ids):
            for c in np.flatnonzero(yy[r]):
                group_cols.setdefault(group_of.get(i, i), []).append((pi, int(c)))

    def deal(groups: list[str], balance: tuple[int, int] | None) -> None:
        groups = sorted(set(groups) - half.keys())
        if not groups:
            return
        order = [groups[j] for j in rng.permutation(len(groups))]
        # Start with the half holding fewer of this concept's positives; on a tie, the
        # half holding fewer groups overall (else every rare concept would start in half 0).
        n0, n1 = count[balance[0]][balance[1]] if balance is not None else (0, 0)
        first = 0 if (n0, size[0]) <= (n1, size[1]) else 1
        for j, g in enumerate(order):
            h = (first + j) % 2
            half[g] = h
            size[h] += 1
            for pi, c in group_cols.get(g, ()):
                count[pi][c, h] += 1

    for pi, c, _ in cols:
        ids, y = pools[pi]
        pos = np.flatnonzero(np.asarray(y, dtype=bool)[:, c])
        deal([group_of.get(ids[r], ids[r]) for r in pos], (pi, c))
    rest = [group_of.get(i, i) for ids, _ in pools for i in ids]
    deal(rest, None)
    return [np.array([half[group_of.get(i, i)] for i in ids], dtype=np.int8) for ids, _ in pools]
