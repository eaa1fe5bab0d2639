"""Tables and sentences on what the concept data measures: matching, shortcuts, lexical
overlap and label precision, read from a run directory.

Each function returns a small DataFrame (or sentences) that the HTML report and
``docs/results.md`` print; nothing here computes a statistic of its own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

COMPARED = ("overlap", "transfer_ap", "self_ap", "crosslingual")
ALPHA = 0.05


def _last(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["step"] == df["step"].max()]


SIDE_COLUMNS = ["value", "null_mean", "p_value", "n_concepts"]


def _beside_last(run: Path, other: str, suffixes: tuple[str, str]) -> pd.DataFrame:
    """The compared measures of results/``other`` (suffix 0) merged with the last checkpoint
    of alignment.parquet (suffix 1) per layer and measure; empty when either is missing."""
    res = Path(run) / "results"
    a, o = res / "alignment.parquet", res / other
    if not (a.exists() and o.exists()):
        return pd.DataFrame()
    cols = ["layer", "measure", *SIDE_COLUMNS]
    m = _last(pd.read_parquet(a))[cols]
    t = pd.read_parquet(o)[cols].merge(m, on=["layer", "measure"], suffixes=suffixes)
    return t[t["measure"].isin(COMPARED)]


def matching_table(run: Path) -> pd.DataFrame:
    """Each measure at the last checkpoint on unmatched and on matched pools (whole model
    and every layer): value, null mean, p, and the excess over the null (value - null
    mean: the pools differ in positive rate, so raw values are on different scales)."""
    t = _beside_last(run, "alignment_unmatched.parquet", ("_unmatched", "_matched"))
    if t.empty:
        return t
    for k in ("unmatched", "matched"):
        t[f"excess_{k}"] = t[f"value_{k}"] - t[f"null_mean_{k}"]
    order = {k: i for i, k in enumerate(COMPARED)}
    t = t.assign(_m=t["measure"].map(order), _l=t["layer"].map(lambda x: (x == "all", str(x))))
    return t.sort_values(["_m", "_l"]).drop(columns=["_m", "_l"]).reset_index(drop=True)


def flagged_table(run: Path) -> pd.DataFrame:
    """Whole model, last checkpoint: each measure without and with the concepts the shortcut
    table flagged (which concepts are flagged depends on their experts' AP)."""
    t = _beside_last(run, "alignment_with_flagged.parquet", ("_all", "_kept"))
    if t.empty:
        return t
    cols = ["layer", "measure", *(f"{c}{k}" for k in ("_kept", "_all") for c in SIDE_COLUMNS)]
    return t.loc[t["layer"] == "all", cols].reset_index(drop=True)


def shortcut_table(run: Path) -> pd.DataFrame:
    """Per concept and kind of pool: median over languages of the best shortcut's
    held-out AP, of the experts' median held-out AP, of chance, and the share flagged."""
    from babelscope.analysis.shortcuts import load_shortcuts

    t = load_shortcuts(run)
    if t is None or t.empty:
        return pd.DataFrame()
    from babelscope.languages import is_control

    t = t[~t["lang"].map(is_control)]
    g = t.groupby(["concept", "pools"]).agg(
        best_shortcut_ap=("best_ap", "median"), expert_median_ap=("expert_median_ap", "median"),
        chance=("chance", "median"), share_flagged=("flagged", "mean"), languages=("lang", "nunique"),
        top_family=("best", lambda s: s.mode().iat[0] if len(s.mode()) else ""),
    ).reset_index()  # fmt: skip
    return g.sort_values(["pools", "share_flagged", "concept"], ascending=[True, False, True])


def shortcut_claims(run: Path) -> list[str]:
    """What the shortcut table supports, per kind of pool."""
    from babelscope.analysis.shortcuts import concept_flags, load_shortcuts

    t = load_shortcuts(run)
    if t is None or t.empty:
        return []
    out = []
    for pools in ("unmatched", "matched"):
        sub = t[t["pools"] == pools]
        if sub.empty:
            continue
        flags = concept_flags(t, pools)
        flagged = sorted(c for c, f in flags.items() if f)
        fam = sub.loc[sub["flagged"], "best"].value_counts()
        out.append(
            f"{pools.capitalize()} pools: in {int(sub['flagged'].sum())} of {len(sub)} (concept, "
            f"language) pairs a trivial score (chosen on one half, AP on the other) reaches the "
            f"median held-out AP of the top-K experts"
            + (f", most often {fam.index[0]} ({int(fam.iloc[0])})" if len(fam) else "")
            + f"; {len(flagged)} of {len(flags)} concepts are flagged in at least half of their "
            f"languages" + (f" ({', '.join(flagged[:12])}{' …' if len(flagged) > 12 else ''})" if flagged else "")
            + "."
        )  # fmt: skip
    return out


def lexical_rows(run: Path) -> pd.DataFrame:
    """Overlap and transfer AP over token-sharing and token-disjoint items (every layer and
    the whole model, last checkpoint), with their nulls."""
    p = Path(run) / "results" / "alignment.parquet"
    if not p.exists():
        return pd.DataFrame()
    df = _last(pd.read_parquet(p))
    t = df[df["measure"].astype(str).str.endswith(("_shared", "_disjoint"))]
    cols = ["layer", "measure", "value", "ci_lo", "ci_hi", "null_mean", "null_p95", "p_value",
            "n_items"]  # fmt: skip
    return t[[c for c in cols if c in t.columns]].reset_index(drop=True)


def lexical_claims(run: Path) -> list[str]:
    """How much of the alignment is lexical, in words no stronger than the numbers."""
    res = Path(run) / "results"
    out = []
    rows = lexical_rows(run)
    whole = rows[rows["layer"] == "all"].set_index("measure") if len(rows) else pd.DataFrame()
    for base, name in (("overlap", "overlap@K"), ("transfer_ap", "transfer AP")):
        if f"{base}_shared" not in whole.index:
            continue
        s, d = whole.loc[f"{base}_shared"], whole.loc[f"{base}_disjoint"]
        if not (np.isfinite(s["p_value"]) and np.isfinite(d["p_value"])):
            verdict = "no permutation null was computed, so no claim is made"
        elif d["p_value"] <= ALPHA:
            verdict = (f"above its null (p <= {ALPHA}) also over items whose concept words "
                       "share no token of two or more characters")  # fmt: skip
        elif s["p_value"] <= ALPHA:
            verdict = (f"above its null (p <= {ALPHA}) over token-sharing items only: what is "
                       "above the null cannot be told apart from shared tokens")  # fmt: skip
        else:
            verdict = f"above its null (p <= {ALPHA}) over neither kind of item"
        out.append(
            f"Whole-model {name} at the last checkpoint: {s['value']:.4f} over {int(s.get('n_items', 0))} "
            f"token-sharing items (null {s['null_mean']:.4f}, p = {s['p_value']:.3g}) and "
            f"{d['value']:.4f} over {int(d.get('n_items', 0))} token-disjoint items (null "
            f"{d['null_mean']:.4f}, p = {d['p_value']:.3g}): {verdict}."
        )
    p = res / "alignment_lexical.parquet"
    if p.exists():
        for r in pd.read_parquet(p).itertuples():
            if not np.isfinite(r.rho):
                continue
            out.append(
                f"Spearman correlation between the lexical Jaccard of a concept's words and "
                f"{r.measure} over {r.n_items} (concept, language pair) items: rho = {r.rho:.3f} "
                + (f"[{r.ci_lo:.3f}, {r.ci_hi:.3f}] " if hasattr(r, "ci_lo") else "")
                + f"(permutation p = {r.p_value:.3g}); {100 * r.share_shared:.0f} % of the items "
                f"share tokens (mean {r.mean_shared:.4f} there, {r.mean_disjoint:.4f} elsewhere)."
            )
    return out


def matching_claims(run: Path) -> list[str]:
    """Before and after matching, whole model, last checkpoint."""
    t = matching_table(run)
    if t.empty:
        return []
    w = t[t["layer"] == "all"]
    parts = [
        f"{r.measure} {r.value_unmatched:.4f} (null {r.null_mean_unmatched:.4f}, p = "
        f"{r.p_value_unmatched:.3g}) → {r.value_matched:.4f} (null {r.null_mean_matched:.4f}, "
        f"p = {r.p_value_matched:.3g})"
        for r in w.itertuples()
    ]
    return [
        "Whole model at the last checkpoint, unmatched → matched pools: " + "; ".join(parts) + "."
    ]


def label_precision_table(run: Path) -> pd.DataFrame:
    """The data's measured label precision per language and pooled (``label_precision.parquet``
    in the run's data dir): lexicon labels against the pivot labels on parallel text."""
    run = Path(run)
    p = run / "data" / "label_precision.parquet"
    if not p.exists():
        return pd.DataFrame()
    t = pd.read_parquet(p)
    t = t[t["scope"].isin(["language", "all"])]
    cols = ["lang", "sentences", "tp", "fp", "fn", "precision", "precision_lo", "precision_hi",
            "recall", "recall_lo", "recall_hi"]  # fmt: skip
    return t[[c for c in cols if c in t.columns]].reset_index(drop=True)
