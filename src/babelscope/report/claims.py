"""What the probe and the alignment results support, in words no stronger than their tests.

Each sentence names the test behind it ("above the permutation null, p <= 0.05, in layers
0 and 2"); a measure that is not above its null is reported as such, with its numbers. The
tables beside them are what docs/results.md and the report print (value, interval, null,
p) — one source for both.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ALPHA = 0.05
MEASURE_WORDS = {
    "overlap": "overlap@K (cross-fitted)",
    "jaccard": "Jaccard",
    "transfer_ap": "transfer AP (held-out)",
    "self_ap": "own-language AP (held-out)",
    "crosslingual": "cross-lingual experts per concept",
}


def _layers_text(layers: list[str]) -> str:
    named = [("whole model" if x == "all" else f"layer {x}") for x in layers]
    return ", ".join(named) if named else "no layer"


def alignment_table(df: pd.DataFrame, steps: list[int] | None = None) -> pd.DataFrame:
    """Per layer at the given steps (default: first and last): value [CI], null mean and 95th
    percentile, p, the different-concept reference and the floor."""
    if steps is None:
        steps = [int(df["step"].min()), int(df["step"].max())]
    d = df[df["step"].isin(steps)].copy()
    d["layer"] = d["layer"].astype(str)
    cols = ["measure", "layer", "step", "value", "ci_lo", "ci_hi", "null_mean", "null_p95",
            "p_value", "diffconcept", "floor"]  # fmt: skip
    d = d[[c for c in cols if c in d.columns]]
    order = {m: i for i, m in enumerate(df["measure"].unique())}
    d = d.sort_values(
        ["measure", "layer", "step"], key=lambda s: s.map(order) if s.name == "measure" else s
    )
    return d.reset_index(drop=True)


def alignment_claims(df: pd.DataFrame) -> list[str]:
    """One sentence per measure at the last checkpoint (and how it compares with the first)."""
    out = []
    d = df.copy()
    d["layer"] = d["layer"].astype(str)
    first, last = int(d["step"].min()), int(d["step"].max())
    for measure, words in MEASURE_WORDS.items():
        g = d[(d["measure"] == measure) & (d["step"] == last)]
        if g.empty:
            continue
        if not g["p_value"].notna().any():
            out.append(
                f"{words} at step {last}: no permutation null was computed, so no claim is made."
            )
            continue
        above = g[g["p_value"] <= ALPHA]
        above_dc = above[above["value"] > above["diffconcept"]] if "diffconcept" in g else above
        not_above = g[g["p_value"] > ALPHA]
        n_null = int(g["n_null"].max())
        s = f"{words} at step {last}: "
        if len(above):
            s += (f"above the permutation null (p <= {ALPHA}, {n_null} permutations) in "
                  f"{_layers_text(above['layer'].tolist())}")  # fmt: skip
            if not len(above_dc):
                s += (
                    "; in none of them above the different-concept reference (not concept-specific)"
                )
            elif len(above_dc) < len(above):
                s += (f"; of these, above the different-concept reference only in "
                      f"{_layers_text(above_dc['layer'].tolist())}")  # fmt: skip
        else:
            s += f"not above the permutation null (p > {ALPHA}) in any layer"
        if len(not_above) and len(above):
            s += f"; not above it in {_layers_text(not_above['layer'].tolist())}"
        w = g[g["layer"] == "all"]
        w0 = d[(d["measure"] == measure) & (d["step"] == first) & (d["layer"] == "all")]
        if len(w) and len(w0):
            r, r0 = w.iloc[0], w0.iloc[0]
            s += (f". Whole model: {r0['value']:.3g} at step {first} -> {r['value']:.3g} "
                  f"[{r['ci_lo']:.3g}, {r['ci_hi']:.3g}] at step {last} (null mean {r['null_mean']:.3g}, "
                  f"95th pct. {r['null_p95']:.3g}, p = {r['p_value']:.2g}).")  # fmt: skip
        else:
            s += "."
        out.append(s)
    return out


def probe_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per (step, layer): accuracy [CI], control-task accuracy, selectivity, lexical baseline."""
    from babelscope.analysis.probe import summarize

    s = summarize(df)
    cols = ["step", "layer", "accuracy", "ci_lo", "ci_hi", "accuracy_std", "control_accuracy",
            "selectivity", "lexical_accuracy", "chance"]  # fmt: skip
    return s[[c for c in cols if c in s.columns]]


def probe_claims(df: pd.DataFrame) -> list[str]:
    """The LID probe at the first and last checkpoint, layer by layer, against its controls."""
    t = probe_table(df)
    first, last = int(t["step"].min()), int(t["step"].max())
    chance = float(t["chance"].iloc[0])
    out = []
    for step in sorted({first, last}):
        g = t[t["step"] == step].sort_values("layer")
        acc = ", ".join(f"{a:.2f}" for a in g["accuracy"])
        sel = ", ".join(f"{v:.2f}" for v in g["selectivity"]) if "selectivity" in g else "n/a"
        lex = float(g["lexical_accuracy"].mean()) if "lexical_accuracy" in g else np.nan
        out.append(
            f"LID probe at step {step}, layers {g['layer'].min()}..{g['layer'].max()}: accuracy {acc} "
            f"(chance {chance:.3f}); selectivity over the type-level control task {sel}; "
            f"lexical baseline (token identity alone) {lex:.2f}."
        )
    g0, g1 = t[t["step"] == first].set_index("layer"), t[t["step"] == last].set_index("layer")
    common = [la for la in g1.index if la in g0.index and la > 0]
    if common and "ci_lo" in g1:
        down = [la for la in common if g1.loc[la, "ci_hi"] < g0.loc[la, "ci_lo"]]
        up = [la for la in common if g1.loc[la, "ci_lo"] > g0.loc[la, "ci_hi"]]
        out.append(
            f"From step {first} to {last} (95 % intervals over test sentences not overlapping): "
            f"accuracy rose in layers {up or 'none'} and fell in layers {down or 'none'}."
        )
    return out
