"""What the experts stage adds at the last checkpoint, from the same activations.

* the **unmatched comparison**: every language's whole base pool scored too (shards and
  null under ``ap/step-<N>/unmatched/``), so the report can show each alignment number
  before and after matching;
* the **shortcut table** (:mod:`babelscope.analysis.shortcuts`) for both kinds of pools,
  written to ``results/shortcuts.parquet``, keyed by the step and the comparison's pools.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from babelscope.analysis.expert_scoring import Scoring
from babelscope.analysis.experts import _shard_ok, read_shard, shard_path, step_dir
from babelscope.analysis.shortcuts import (
    SHORTCUT_COLUMNS,
    SHORTCUTS_FILE,
    first_token_length,
    pool_shortcuts,
    token_lengths,
    trivial_scores,
)


def extras_key(job: Any, key: str) -> str:
    """The step's key and the comparison's pools: what the extras are keyed by."""
    from babelscope.io import settings_hash

    c = job.compare
    pools = [(p.lang, p.data_key, p.label_key, p.concepts) for p in c.pools] if c else []
    return settings_hash([key, pools])


def extras_done(job: Any, step: int, key: str) -> bool:
    """The comparison's shards and the shortcut table of ``step`` carry the extras' key."""
    from babelscope.io import read_parquet_metadata

    key = extras_key(job, key)
    c = job.compare
    if c is not None and not all(
        _shard_ok(shard_path(job.out_dir, step, p.lang, c.variant), key) for p in c.pools
    ):
        return False
    path = job.out_dir / "results" / SHORTCUTS_FILE
    try:
        return read_parquet_metadata(path).get("key") == key
    except Exception:  # noqa: BLE001 - missing or unreadable: recompute
        return False


class LastStepExtras:
    """Collects the shortcut rows language by language while the step is scored."""

    def __init__(self, job: Any, step: int, loaded: Any, key: str) -> None:
        from babelscope.analysis.alignment_null import NULL_FILE, load_null

        self.job, self.step, self.loaded = job, int(step), loaded
        self.key = key = extras_key(job, key)
        self.rows: list[dict[str, Any]] = []
        self.also: list[Scoring] = []
        c = job.compare
        if c is not None:
            path = step_dir(job.out_dir, step, c.variant) / NULL_FILE
            old = load_null(path) if path.exists() else None
            want = (
                c.plan.n_perm > 0 and len(c.null_pools) >= 2 and (old is None or old["key"] != key)
            )
            self.also = [
                Scoring(c.variant, c.pools, c.halves, c.plan if want else None, c.null_pools, key)
            ]

    def _scorings(self) -> list[Scoring]:
        j = self.job
        return [Scoring("main", j.pools, j.halves), *self.also]

    def on_language(self, lang: str, pooled: Any) -> None:
        """Shortcut rows of ``lang`` for every scoring (after its shards are written)."""
        from babelscope.activations.extract import extract_pooled
        from babelscope.analysis.alignment import scopes_for

        s, tok = self.job.settings, self.loaded.tokenizer
        first = None
        for sc in self._scorings():
            pi = sc.index(lang)
            if pi is None:
                continue
            pool = sc.pools[pi]
            if first is None:  # the same sentences in both scorings: extract once
                first = extract_pooled(
                    self.loaded.model, tok, pool.texts, kind=s.kind, pooling="mean",
                    batch_size=s.batch_size, max_length=first_token_length(tok),
                    device=self.job.device,
                ).flat()  # fmt: skip
                cands = trivial_scores(pool.texts, pool.sources, token_lengths(tok, pool.texts))
                cands["first"] = first
            shard = read_shard(shard_path(self.job.out_dir, self.step, lang, sc.variant))
            k = scopes_for(shard["layers"], shard["widths"], self.job.align)[-1][3]
            self.rows += pool_shortcuts(pool, np.asarray(sc.halves[pi]), shard, cands, k, self.step)

    def write(self) -> None:
        """``results/shortcuts.parquet``, keyed by the step and the comparison's pools."""
        from babelscope.io import provenance, write_parquet_atomic

        df = pd.DataFrame(self.rows, columns=SHORTCUT_COLUMNS)
        meta = provenance(
            "shortcuts", key=self.key, step=self.step, fingerprint=self.loaded.fingerprint,
            rule="flagged: best shortcut (chosen on one half, AP on the other) >= median held-out "
            "AP of the top-K experts (analysis/shortcuts.py)",
        )  # fmt: skip
        write_parquet_atomic(df, self.job.out_dir / "results" / SHORTCUTS_FILE, metadata=meta)
