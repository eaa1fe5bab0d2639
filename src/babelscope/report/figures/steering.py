"""Where the steering figures are drawn (Experiment 3).

From ``results/steering.parquet`` (see :mod:`babelscope.analysis.steering`), two figures,
each saved as PNG and SVG into the run's ``figures/`` directory:

- ``steering_dose_response``: per steered checkpoint (rows, at most four spread from the
  first to the last) the share of outputs in the source language, in English, and naming
  the concept against K, one line per condition with its 95 % Wilson band; the unforced
  outputs (K = 0) as a dashed line and band across the panel;
- ``steering_languages``: the detected language of the outputs per checkpoint as stacked
  bars, one panel per condition at the largest K (and without forcing). The source
  language and English always keep their own colour; rare languages are pooled.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from babelscope.analysis.steering import CONDITION_LABELS, CONDITIONS
from babelscope.analysis.steering.stage import spread
from babelscope.analysis.steering.summary import dose_response
from babelscope.report.figures import pyplot, save_figure

MAX_LANGS = 9  # distinct colours before the rest is pooled as "other"
MAX_STEP_ROWS = 4
_CONDITION_COLOURS = {
    "experts": "#d62728", "none": "#7f7f7f", "random": "#1f77b4",
    "other_concept": "#2ca02c", "other_lang": "#9467bd",
}  # fmt: skip


def _check(df: pd.DataFrame) -> None:
    need = {"step", "concept", "condition", "k", "lang", "source_lang", "concept_hit"}
    missing = need - set(df.columns)
    if missing:
        raise ValueError(f"steering table lacks column(s) {sorted(missing)}")


def language_shares(
    df: pd.DataFrame, max_langs: int = MAX_LANGS, keep: list[str] | None = None
) -> pd.DataFrame:
    """Share of outputs per (condition, step, language); rare languages -> other.

    ``keep`` (default: the source languages and English) are always kept; then the most
    frequent over the whole table up to ``max_langs``, so colours mean the same in every
    panel; ``und`` is always kept apart. Unforced texts judged for several concepts count once.
    """
    if keep is None:
        keep = [*sorted(df["source_lang"].unique()), "eng"]
    texts = df.drop_duplicates(["step", "condition", "k", "draw", "seed", "forced_from", "text"])
    counts = texts["lang"].value_counts()
    top = list(dict.fromkeys(keep + [x for x in counts.index if x != "und"]))[
        : max(max_langs, len(keep))
    ]
    lang = texts["lang"].where(texts["lang"].isin(top + ["und"]), "other")
    g = texts.assign(lang=lang).groupby(["condition", "step", "lang"]).size()
    share = g / g.groupby(level=["condition", "step"]).transform("sum")
    return share.rename("share").reset_index()


def _lang_colours(langs: list[str]) -> dict[str, tuple]:
    import matplotlib as mpl

    cmap = mpl.colormaps["tab10"]
    out: dict[str, tuple] = {}
    i = 0
    for lang in langs:
        if lang == "und":
            out[lang] = (0.85, 0.85, 0.85, 1.0)
        elif lang == "other":
            out[lang] = (0.55, 0.55, 0.55, 1.0)
        else:
            out[lang] = cmap(i % 10)
            i += 1
            if i == 7:  # tab10's grey is kept for "other"
                i += 1
    return out


def plot_language_distribution(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Stacked bars of output languages per checkpoint, one panel per condition (largest K)."""
    from matplotlib.patches import Patch

    from babelscope.languages import name_of

    plt = pyplot()
    _check(df)
    kmax = int(df["k"].max())
    df = df[(df["condition"] == "none") | (df["k"] == kmax)]
    sources = sorted(df["source_lang"].unique())
    shares = language_shares(df, keep=[*sources, "eng"])
    totals = shares.groupby("lang")["share"].sum().sort_values(ascending=False)
    named = [x for x in totals.index if x not in ("other", "und")]
    lead = list(dict.fromkeys([*sources, "eng"]))  # drawn even where no output is in them
    langs = lead + [x for x in named if x not in lead] + ["other", "und"]
    colours = _lang_colours(langs)
    conditions = [c for c in CONDITIONS if c in set(df["condition"])]
    steps = sorted(df["step"].unique())
    x = np.arange(len(steps))
    w = min(2.2 + 0.45 * len(steps), 6.0)
    fig, axes = plt.subplots(
        1, len(conditions), figsize=(w * len(conditions), 3.6), squeeze=False, sharey=True,
        constrained_layout=True,
    )  # fmt: skip
    for c, cond in enumerate(conditions):
        ax = axes[0][c]
        sub = shares[shares["condition"] == cond]
        grid = sub.pivot_table(index="step", columns="lang", values="share", fill_value=0.0)
        grid = grid.reindex(index=steps, columns=langs, fill_value=0.0)
        bottom = np.zeros(len(steps))
        for lang in langs:
            v = grid[lang].to_numpy()
            ax.bar(x, v, bottom=bottom, color=colours[lang], width=0.8, edgecolor="white", lw=0.3)
            bottom += v
        ax.set_xticks(x, [str(s) for s in steps], rotation=60, ha="right", fontsize=8)
        ax.set_ylim(0, 1)
        k = "" if cond == "none" else f", K = {kmax}"
        ax.set_title(f"{CONDITION_LABELS.get(cond, cond)}{k}", fontsize=9)
        ax.set_xlabel("checkpoint (training step)")
        if c == 0:
            ax.set_ylabel("share of outputs")
    fig.suptitle(f"Language of generated text (experts found in {', '.join(sources)})")
    handles = [
        Patch(color=colours[lang],
              label=lang if lang in ("other", "und") else f"{lang} ({name_of(lang)})")
        for lang in reversed(langs)  # listed top-down, as stacked
    ]  # fmt: skip
    fig.legend(handles=handles, loc="outside right center", fontsize=8, title="detected")
    paths = save_figure(fig, out_dir, "steering_languages")
    plt.close(fig)
    return paths


def plot_dose_response(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Shares against K with Wilson bands, one row per checkpoint, one line per condition."""
    plt = pyplot()
    _check(df)
    dr = dose_response(df)
    steps = spread(sorted(dr["step"].unique()), MAX_STEP_ROWS)
    src = ", ".join(sorted(df["source_lang"].unique()))
    outcomes = [("source", f"output in {src}"), ("eng", "output in English"),
                ("hit", "names the concept")]  # fmt: skip
    ks = sorted(k for k in dr["k"].unique() if k > 0)
    fig, axes = plt.subplots(
        len(steps), 3, figsize=(11, 2.6 * len(steps) + 0.6), squeeze=False, sharex=True,
        sharey=True, constrained_layout=True,
    )  # fmt: skip
    for r, step in enumerate(steps):
        at = dr[dr["step"] == step]
        for c, (name, label) in enumerate(outcomes):
            ax = axes[r][c]
            none = at[at["condition"] == "none"]
            if len(none):
                v = none.iloc[0]
                ax.axhline(v[name], color=_CONDITION_COLOURS["none"], ls="--", lw=1,
                           label=CONDITION_LABELS["none"])  # fmt: skip
                ax.axhspan(v[f"{name}_lo"], v[f"{name}_hi"], color="0.85", alpha=0.5, lw=0)
            # Baselines first, the experts last and thicker: where a baseline gives the same
            # shares (two concepts as each other's "other concept") the experts stay visible.
            for cond in ["other_lang", "other_concept", "random", "experts"]:
                g = at[at["condition"] == cond].sort_values("k")
                if g.empty:
                    continue
                colour = _CONDITION_COLOURS.get(cond, "k")
                ax.plot(g["k"], g[name], "o-", color=colour, ms=3, lw=2.2 if cond == "experts" else 1.2,
                        label=CONDITION_LABELS.get(cond, cond))  # fmt: skip
                ax.fill_between(
                    g["k"], g[f"{name}_lo"], g[f"{name}_hi"], color=colour, alpha=0.15, lw=0
                )
            ax.set_xscale("log")
            ax.set_ylim(-0.02, 1.02)
            if ks:
                ax.set_xticks(ks, [str(k) for k in ks], fontsize=8)
                ax.minorticks_off()
            if r == 0:
                ax.set_title(label)
            if c == 0:
                ax.set_ylabel(f"step {step}\nshare of outputs")
            if r == len(steps) - 1:
                ax.set_xlabel("K (units forced)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=5, fontsize=8)
    fig.suptitle("Steering dose-response (95 % Wilson intervals; pooled over concepts)")
    paths = save_figure(fig, out_dir, "steering_dose_response")
    plt.close(fig)
    return paths


def plot_steering(df: pd.DataFrame | str | Path, out_dir: str | Path) -> list[Path]:
    """Draw every steering figure into ``out_dir`` (a run's ``figures/``); the paths.

    ``df`` is the steering table or the path of ``steering.parquet``.
    """
    if not isinstance(df, pd.DataFrame):
        df = pd.read_parquet(df)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if df.empty:
        return []
    return plot_dose_response(df, out_dir) + plot_language_distribution(df, out_dir)
