"""The align stage's checks of what the alignment is made of.

* **Shortcut concepts** (``results/shortcuts.parquet``): concepts that a trivial score
  ranks as well as their experts in at least half of their languages are left out of the
  averages (``align.keep_shortcut_concepts`` keeps them); their names go in the metadata.
* **Lexical split** (``results/lexical_overlap.parquet``): rows for token-sharing and
  token-disjoint (concept, language pair) items, and ``results/alignment_lexical.parquet``:
  the Spearman correlation between the lexical Jaccard and expert overlap over items at
  the last checkpoint (permutation p), with the share of items that share tokens.
* **Before matching** (``ap/step-<N>/unmatched/``): the same rows on the unmatched pools at
  the last checkpoint, ``results/alignment_unmatched.parquet``.
* **With the flagged concepts** (``results/alignment_with_flagged.parquet``): the last
  checkpoint's rows with every concept kept. Which concepts are flagged depends on their
  experts' AP, and the null is not re-selected under permutation, so the rows without them
  are shown beside the rows with them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

UNMATCHED_FILE = "alignment_unmatched.parquet"
WITH_FLAGGED_FILE = "alignment_with_flagged.parquet"
LEXICAL_SUMMARY_FILE = "alignment_lexical.parquet"


def concept_keep(out_dir: Path, settings: Any) -> set[str]:
    """The concepts to leave out: flagged by the shortcut table (none when kept by setting
    or when there is no table)."""
    from babelscope.analysis.shortcuts import concept_flags, load_shortcuts

    table = load_shortcuts(out_dir)
    if table is None or settings.keep_shortcut_concepts:
        return set()
    return {c for c, f in concept_flags(table, main_pools(out_dir)).items() if f}


def main_pools(out_dir: Path) -> str:
    """The kind of pool the study scored (``[experts] pools``), from experts.parquet."""
    from babelscope.io import read_parquet_metadata

    path = Path(out_dir) / "results" / "experts.parquet"
    meta = read_parquet_metadata(path) if path.exists() else {}
    return str((meta.get("settings") or {}).get("pools", "matched"))


def lexical_split(out_dir: Path, langs: list[str], concepts: list[str]) -> np.ndarray | None:
    """(L, C, L) token-sharing mask from ``results/lexical_overlap.parquet``, or None."""
    from babelscope.analysis.lexical import LEXICAL_FILE, split_mask

    path = Path(out_dir) / "results" / LEXICAL_FILE
    if not path.exists():
        return None
    return split_mask(pd.read_parquet(path), langs, concepts)


def unmatched_rows(
    out_dir: Path, step: int, langs: list[str], scopes: list, m: int, settings: Any,
    flagged: set[str], meta: dict[str, Any],
) -> pd.DataFrame | None:  # fmt: skip
    """Alignment rows of the unmatched pools at ``step`` (written), or None when the
    experts stage did not score them."""
    from babelscope.analysis.alignment import _check_null, _load_step, align_step, step_arrays
    from babelscope.analysis.alignment_null import NULL_FILE, load_null
    from babelscope.analysis.experts import step_dir
    from babelscope.io import write_parquet_atomic

    d = step_dir(out_dir, step, "unmatched")
    path = Path(out_dir) / "results" / UNMATCHED_FILE
    if not all((d / f"{lang}.npz").exists() for lang in langs):
        path.unlink(missing_ok=True)  # never leave a comparison from another run
        return None
    arr = step_arrays(_load_step(out_dir, step, langs, "unmatched"), langs)
    null = load_null(d / NULL_FILE)
    _check_null(null, langs, arr["concepts"], scopes, m, step)
    keep = np.array([c not in flagged for c in arr["concepts"]], dtype=bool)
    split = lexical_split(out_dir, langs, arr["concepts"])
    rows, _ = align_step(step, arr, langs, scopes, m, null, settings, keep=keep, split=split)
    df = pd.DataFrame(rows)
    write_parquet_atomic(df, path, metadata={**meta, "pools": "unmatched (before matching)"})
    return df


def with_flagged_rows(
    out_dir: Path, step: int, langs: list[str], scopes: list, m: int, settings: Any,
    flagged: set[str], meta: dict[str, Any],
) -> pd.DataFrame | None:  # fmt: skip
    """The last checkpoint's rows with every concept (written when some were left out)."""
    from babelscope.analysis.alignment import _load_step, align_step, step_arrays
    from babelscope.analysis.alignment_null import NULL_FILE, load_null
    from babelscope.analysis.experts import step_dir
    from babelscope.io import write_parquet_atomic

    path = Path(out_dir) / "results" / WITH_FLAGGED_FILE
    if not flagged:
        path.unlink(missing_ok=True)
        return None
    arr = step_arrays(_load_step(out_dir, step, langs), langs)
    null = load_null(step_dir(out_dir, step) / NULL_FILE)
    split = lexical_split(out_dir, langs, arr["concepts"])
    rows, _ = align_step(step, arr, langs, scopes, m, null, settings, split=split)
    df = pd.DataFrame(rows)
    write_parquet_atomic(df, path, metadata={**meta, "concepts": "all, flagged ones kept"})
    return df


def item_table(stash: dict[str, Any], langs: list[str], measure: str = "overlap") -> pd.DataFrame:
    """Per (concept, language pair) value of ``measure`` at the stashed scope."""
    res, concepts = stash["result"], stash["concepts"]
    vals, _ = res.items[measure]
    cells = res.cells[measure]
    return pd.DataFrame({
        "concept": [concepts[c] for c in cells[:, 1]],
        "lang_a": [langs[a] for a in cells[:, 0]], "lang_b": [langs[b] for b in cells[:, 2]],
        measure: vals,
    })  # fmt: skip


def _sorted_pairs(df: pd.DataFrame) -> pd.DataFrame:
    """``lang_a``/``lang_b`` swapped where needed so that ``lang_a < lang_b``."""
    df = df.copy()
    swap = df["lang_a"].astype(str) > df["lang_b"].astype(str)
    df.loc[swap, ["lang_a", "lang_b"]] = df.loc[swap, ["lang_b", "lang_a"]].to_numpy()
    return df


def write_lexical_summary(
    out_dir: Path, stash: dict[str, Any], langs: list[str], step: int, meta: dict[str, Any]
) -> pd.DataFrame | None:
    """Correlation of lexical overlap with expert overlap and transfer AP over the items of
    the last checkpoint (whole model): ``results/alignment_lexical.parquet``."""
    from babelscope.analysis.lexical import LEXICAL_FILE, lexical_correlation
    from babelscope.io import write_parquet_atomic

    path = Path(out_dir) / "results" / LEXICAL_FILE
    out = Path(out_dir) / "results" / LEXICAL_SUMMARY_FILE
    if not path.exists() or "result" not in stash:
        out.unlink(missing_ok=True)
        return None
    # pairs named the same way on both sides (sorted codes): transfer AP has ordered pairs,
    # and the lexical table's order is the experts stage's language order
    table = _sorted_pairs(pd.read_parquet(path))
    rows = []
    for measure in ("overlap", "transfer_ap"):
        items = _sorted_pairs(item_table(stash, langs, measure))
        items = items.groupby(["concept", "lang_a", "lang_b"], as_index=False)[measure].mean()
        merged = table.merge(items, on=["concept", "lang_a", "lang_b"])
        corr = lexical_correlation(table, items, measure)
        rows.append(dict(step=int(step), measure=measure, **corr,
                         share_shared=float(merged["shared"].mean()) if len(merged) else np.nan,
                         mean_shared=float(merged.loc[merged["shared"], measure].mean()),
                         mean_disjoint=float(merged.loc[~merged["shared"], measure].mean())))  # fmt: skip
    df = pd.DataFrame(rows)
    write_parquet_atomic(df, out, metadata=meta)
    return df
