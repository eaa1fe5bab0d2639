"""Tables from ``steering.parquet``: the dose-response with Wilson intervals, and paired
tests between the experts and each baseline over the shared seeds.

Three outcomes per output: written in the source language (``lang == source_lang``), in
English, and naming the concept (in any language). The unforced outputs (K = 0) are one
set of texts judged against each concept: for the language shares each text counts once;
for concept hits once per concept.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from babelscope.analysis.stats import mcnemar_exact, paired_permutation_test, wilson_interval

OUTCOMES = ("source", "eng", "hit")
_KEYS = ["step", "condition", "k"]


def outcomes(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with boolean columns ``source``, ``eng``, ``hit`` and ``und``."""
    return df.assign(
        source=df["lang"] == df["source_lang"],
        eng=df["lang"] == "eng",
        hit=df["concept_hit"].astype(bool),
        und=df["lang"] == "und",
    )


def _shares(g: pd.DataFrame, texts: pd.DataFrame) -> dict[str, float]:
    row: dict[str, float] = {"outputs": len(texts)}
    for name, frame in (("source", texts), ("eng", texts), ("und", texts), ("hit", g)):
        n, x = len(frame), int(frame[name].sum())
        lo, hi = wilson_interval(x, n)
        row |= {name: x / n if n else np.nan, f"{name}_lo": lo, f"{name}_hi": hi}
    row["fluency"] = float(texts["fluency"].mean())
    return row


def dose_response(df: pd.DataFrame, by_concept: bool = False) -> pd.DataFrame:
    """Per (step, condition, K) — and concept with ``by_concept`` — the shares of outputs
    in the source language, in English, undetermined and naming the concept, each with
    its 95 % Wilson interval, and the mean fluency (loss per token, lower is more fluent).
    Random draws are pooled (their seeds differ or repeat, see ``random_seeds``)."""
    if df.empty:
        return pd.DataFrame()
    d = outcomes(df)
    keys = _KEYS + (["concept"] if by_concept else [])
    rows = []
    for key, g in d.groupby(keys, sort=True):
        # The same text judged for several concepts counts once in the language shares.
        texts = g.drop_duplicates(["draw", "seed", "forced_from", "text"])
        if g["condition"].iloc[0] != "none" or by_concept:
            texts = g
        rows.append(dict(zip(keys, key, strict=True)) | _shares(g, texts))
    return pd.DataFrame(rows)


def _per_seed(g: pd.DataFrame, outcome: str) -> pd.Series:
    return g.groupby("seed")[outcome].mean()


def paired_tests(df: pd.DataFrame) -> pd.DataFrame:
    """Experts against each baseline, per (step, K, concept) and outcome, paired by seed.

    Where each seed has one output on both sides: the exact McNemar test (``n_ab``: the
    experts' output has the outcome and the baseline's does not). Where a baseline has
    several outputs per seed (random draws with ``random_seeds = 'all'``): a sign-flip
    test of the per-seed difference of means. The baseline ``none`` is K = 0.
    """
    if df.empty:
        return pd.DataFrame()
    d = outcomes(df)
    rows = []
    for (step, concept), g in d.groupby(["step", "concept"], sort=True):
        none = g[g["condition"] == "none"]
        for k, gk in g[g["condition"] == "experts"].groupby("k"):
            for base in ("none", "random", "other_concept", "other_lang"):
                b = none if base == "none" else g[(g["condition"] == base) & (g["k"] == k)]
                if b.empty:
                    continue
                for outcome in OUTCOMES:
                    e, r = _per_seed(gk, outcome), _per_seed(b, outcome)
                    shared = e.index.intersection(r.index)
                    single = (
                        b.groupby("seed").size().max() == 1 and gk.groupby("seed").size().max() == 1
                    )
                    if single:
                        t = mcnemar_exact(e[shared].astype(bool), r[shared].astype(bool))
                        test = "mcnemar"
                    else:
                        t = paired_permutation_test(e[shared], r[shared]) | {"n_ab": -1, "n_ba": -1}
                        test = "sign-flip"
                    rows.append({
                        "step": int(step), "concept": concept, "k": int(k), "baseline": base,
                        "outcome": outcome, "experts": float(e[shared].mean()),
                        "baseline_share": float(r[shared].mean()), "n_seeds": len(shared),
                        "n_ab": t["n_ab"], "n_ba": t["n_ba"], "p_value": t["p_value"], "test": test,
                    })  # fmt: skip
    return pd.DataFrame(rows)


def _cell(share: float, lo: float, hi: float) -> str:
    return f"{share:.0%} [{lo:.0%}, {hi:.0%}]"


def dose_table(df: pd.DataFrame, steps: list[int] | None = None) -> pd.DataFrame:
    """The dose-response as text cells "share [lo, hi]" (for docs and the report): rows
    (step, condition, K), columns source language, English, concept hit, undetermined,
    fluency. ``steps``: default the first and the last steered checkpoint."""
    dr = dose_response(df)
    if dr.empty:
        return dr
    if steps is None:
        steps = sorted({int(dr["step"].min()), int(dr["step"].max())})
    dr = dr[dr["step"].isin(steps)]
    src = str(df["source_lang"].iloc[0])
    out = pd.DataFrame({
        "step": dr["step"], "condition": dr["condition"], "K": dr["k"], "outputs": dr["outputs"],
        f"{src} output": [_cell(*r) for r in dr[["source", "source_lo", "source_hi"]].to_numpy()],
        "eng output": [_cell(*r) for r in dr[["eng", "eng_lo", "eng_hi"]].to_numpy()],
        "concept hit": [_cell(*r) for r in dr[["hit", "hit_lo", "hit_hi"]].to_numpy()],
        "und": [f"{x:.0%}" for x in dr["und"]], "loss/token": [f"{x:.2f}" for x in dr["fluency"]],
    })  # fmt: skip
    order = {"none": 0, "experts": 1, "random": 2, "other_concept": 3, "other_lang": 4}
    out = out.assign(_o=out["condition"].map(order)).sort_values(["step", "K", "_o"])
    return out.drop(columns="_o").reset_index(drop=True)


def summarize(df: pd.DataFrame, top: int = 4) -> pd.DataFrame:
    """Per checkpoint, condition and K: outputs, concept-hit rate, the most frequent languages."""
    cols = ["step", "condition", "k", "outputs", "concept_hit", "languages"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for (step, cond, k), g in df.groupby(["step", "condition", "k"], sort=True):
        share = g["lang"].value_counts(normalize=True).head(top)
        rows.append({
            "step": int(step), "condition": cond, "k": int(k), "outputs": len(g),
            "concept_hit": round(float(g["concept_hit"].mean()), 3),
            "languages": ", ".join(f"{lang} {s:.0%}" for lang, s in share.items()),
        })  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


def markdown(table: pd.DataFrame) -> str:
    """``table`` as a Markdown pipe table (for docs/results.md; no extra dependency)."""
    head = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "---|" * len(table.columns)
    body = ["| " + " | ".join(map(str, row)) + " |" for row in table.itertuples(index=False)]
    return "\n".join([head, rule, *body])
