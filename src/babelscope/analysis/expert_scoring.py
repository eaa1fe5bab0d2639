"""Scoring one checkpoint's pools: shards (in-sample and held-out AP over every concept's
members) and the permutation null, for the matched scoring and, at the last checkpoint,
the unmatched comparison; the lexical split of the null's plan.

:func:`babelscope.analysis.experts.run_experts` prepares the :class:`Scoring` objects once;
:func:`babelscope.analysis.experts_step.experts_step` calls :func:`score_step` per checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from babelscope.analysis.experts import (
    ExpertSettings,
    _shard_ok,
    save_shard,
    shard_path,
)
from babelscope.analysis.pools import Pool


def _scoring(pools: list[Pool], settings: ExpertSettings, align: Any, variant: str) -> Scoring:
    """Halves and null plan of one set of pools."""
    from babelscope.analysis.alignment_null import align_pools, make_plan, real_languages
    from babelscope.analysis.halves import assign_halves

    group_of = {i: g for p in pools for i, g in zip(p.ids, p.groups, strict=True)}
    # Balance each concept's positives among its members (the sentences it is scored on).
    halves = assign_halves([(p.ids, p.labels & p.members) for p in pools], group_of,
                           settings.split_seed)  # fmt: skip
    null_pools = align_pools(pools, align)
    plan = make_plan(
        [pools[i] for i in null_pools], [halves[i] for i in null_pools],
        align.min_languages_for(int(real_languages([pools[i].lang for i in null_pools]).sum())),
        permutations=align.permutations,
        seed=align.null_seed, n_bins=align.length_bins, settings=align.null_key(),
    )  # fmt: skip
    return Scoring(variant, pools, halves, plan, null_pools)


def same_items(pools: list[Pool], like: list[Pool]) -> list[Pool]:
    """``pools`` restricted to the languages and, per language, the concepts of ``like``."""
    from dataclasses import replace

    from babelscope.io import settings_hash

    want = {p.lang: p.concepts for p in like}
    out = []
    for q in pools:
        cols = [q.concepts.index(c) for c in want.get(q.lang, []) if c in q.concepts]
        if not cols:
            continue
        y, mem = q.labels[:, cols], q.members[:, cols]
        out.append(replace(q, concepts=[q.concepts[j] for j in cols], labels=y, members=mem,
                           label_key=settings_hash([np.packbits(y).tobytes().hex(),
                                                    np.packbits(mem).tobytes().hex()])))  # fmt: skip
    return out


def split_for(lexical: pd.DataFrame | None, plan: Any) -> np.ndarray | None:
    """The null plan's lexical split (token-sharing items) from the lexical table."""
    from babelscope.analysis.lexical import split_mask

    return None if lexical is None else split_mask(lexical, plan.langs, plan.concepts)


def _lexical(series: Any, data_dir: Path, plan: Any, out_dir: Path) -> pd.DataFrame | None:
    """The lexical-overlap table of the compared concepts, with the last checkpoint's
    tokenizer (written to ``results/lexical_overlap.parquet``); sets the plan's split."""
    from babelscope.analysis.lexical import LEXICAL_FILE, data_lexicon, lexical_table
    from babelscope.checkpoints.series import _load_tokenizer
    from babelscope.io import provenance, settings_hash, write_parquet_atomic

    tok = _load_tokenizer(series.checkpoints[-1])
    lex = data_lexicon(data_dir)
    table = lexical_table(tok, lex, plan.concepts, plan.langs)
    plan.split = split_for(table, plan)
    plan.settings = {**plan.settings, "lexical": settings_hash(table.to_dict(orient="records"))}
    meta = provenance("lexical", tokenizer=series.checkpoints[-1].label, lexicon=lex.source,
                      step=int(series.checkpoints[-1].step))  # fmt: skip
    write_parquet_atomic(table, out_dir / "results" / LEXICAL_FILE, metadata=meta)
    return table


@dataclass
class Scoring:
    """One way of scoring a checkpoint's pools: ``matched`` (the study) or ``unmatched``
    (the comparison at the last checkpoint), each with its halves and null plan."""

    variant: str
    pools: list[Pool]
    halves: list[np.ndarray]
    plan: Any = None
    null_pools: list[int] | None = None
    key: str | None = None  # its shards' and null's key (default: the step's)

    def index(self, lang: str) -> int | None:
        for i, p in enumerate(self.pools):
            if p.lang == lang:
                return i
        return None


def score_step(
    out_dir: Path,
    step: int,
    pools: list[Pool],
    halves: list[np.ndarray],
    get_pooled: Any,
    settings: ExpertSettings,
    *,
    key: str = "",
    fingerprint: str = "",
    plan: Any = None,
    null_pools: list[int] | None = None,
    align: Any = None,
    also: list[Scoring] | tuple = (),
    on_language: Any = None,
) -> None:
    """Score one checkpoint: a shard per pool (in-sample AP and statistics over every
    concept's members, AP on each half), then, with a null ``plan``, the permutation null
    of the alignment measures. ``also``: further scorings of the same activations (the
    unmatched pools), written under their variant's folder.

    ``get_pooled(pool)`` returns the pool's pooled activations (``.get``, ``.layers``,
    ``.flat()``, ``.n_truncated``), read once per language for every scoring; a pool whose
    shard is done is only read again when the null needs its ranks. ``on_language(lang,
    pooled)`` runs after a language is scored (the shortcut diagnostics).
    """
    from babelscope.analysis.alignment_null import write_null
    from babelscope.analysis.member_scores import half_scores, member_counts, score_members
    from babelscope.progress import track

    null_pools = list(range(len(pools))) if null_pools is None else null_pools
    scorings = [Scoring("main", pools, halves, plan, null_pools), *also]
    langs = list(dict.fromkeys(p.lang for sc in scorings for p in sc.pools))
    ranks: list[dict[int, Any]] = [{} for _ in scorings]
    for lang in track(langs, f"step {step}: languages", transient=True):
        todo = []
        for si, sc in enumerate(scorings):
            pi = sc.index(lang)
            if pi is None:
                continue
            path = shard_path(out_dir, step, lang, sc.variant)
            need_ranks = sc.plan is not None and pi in (sc.null_pools or [])
            if not _shard_ok(path, sc.key or key) or need_ranks:
                todo.append((si, sc, pi, path, need_ranks))
        if not todo and on_language is None:
            continue
        pooled = get_pooled(
            next(sc.pools[sc.index(lang)] for sc in scorings if sc.index(lang) is not None)
        )
        x = pooled.flat()
        for si, sc, pi, path, need_ranks in todo:
            pool = sc.pools[pi]
            hr, ap0, ap1 = half_scores(x, pool.labels, sc.halves[pi], pool.members)
            if need_ranks:
                ranks[si][pi] = hr
            if not _shard_ok(path, sc.key or key):
                stats, widths = score_members(pooled.get, list(pooled.layers), pool.labels,
                                              pool.members, threads=settings.threads)  # fmt: skip
                save_shard(
                    out_dir, step, lang, stats, concepts=pool.concepts,
                    layers=list(pooled.layers), widths=widths, n_pos=pool.n_pos,
                    n_neg=pool.n_neg, key=sc.key or key, fingerprint=fingerprint,
                    store_dtype=settings.store_dtype, variant=sc.variant,
                    extra={"n_truncated": int(pooled.n_truncated), "half": sc.halves[pi],
                           "ap_half0": ap0.astype(settings.store_dtype),
                           "ap_half1": ap1.astype(settings.store_dtype),
                           **member_counts(pool.labels, sc.halves[pi], pool.members)},
                )  # fmt: skip
                del stats
        if on_language is not None:
            on_language(lang, pooled)
        del pooled, x
    for si, sc in enumerate(scorings):
        nps = sc.null_pools or []
        if sc.plan is not None and len(nps) >= 2:
            write_null(out_dir, step, sc.plan, [ranks[si][i] for i in nps], sc.key or key, align,
                       sc.variant)  # fmt: skip
