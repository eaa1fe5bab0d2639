"""Where the steering figures are drawn (Experiment 3).

From ``results/steering.parquet`` (see :mod:`babelscope.analysis.steering`), two figures,
each saved as PNG and SVG into the run's ``figures/`` directory:

- ``steering_languages``: the detected language of the outputs per checkpoint as stacked
  bars (share of outputs), one panel per condition (experts forced, no forcing, K random
  units forced) and, for a few concepts, one row per concept (else pooled over concepts);
- ``steering_concept_hits``: the share of outputs that name the concept in their own
  language, per checkpoint, one line per condition (mean over concepts, with each
  concept faint behind it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from babelscope.analysis.steering import CONDITION_LABELS, CONDITIONS
from babelscope.report.figures import save_figure

MAX_LANGS = 9  # distinct colours before the rest is pooled as "other"
MAX_CONCEPT_ROWS = 4
_CONDITION_COLOURS = {"experts": "#d62728", "none": "#7f7f7f", "random": "#1f77b4"}


def _check(df: pd.DataFrame) -> None:
    need = {"step", "concept", "condition", "detected_lang", "concept_hit"}
    missing = need - set(df.columns)
    if missing:
        raise ValueError(f"steering table lacks column(s) {sorted(missing)}")


def language_shares(df: pd.DataFrame, max_langs: int = MAX_LANGS) -> pd.DataFrame:
    """Share of outputs per (concept, condition, step, language); rare languages -> other.

    The kept languages are the most frequent over the whole table, so colours mean the
    same in every panel; ``und`` is always kept apart.
    """
    counts = df["detected_lang"].value_counts()
    top = [lang for lang in counts.index if lang != "und"][:max_langs]
    lang = df["detected_lang"].where(df["detected_lang"].isin(top + ["und"]), "other")
    g = df.assign(lang=lang).groupby(["concept", "condition", "step", "lang"]).size()
    share = g / g.groupby(level=["concept", "condition", "step"]).transform("sum")
    return share.rename("share").reset_index()


def _lang_order(shares: pd.DataFrame, first: list[str]) -> list[str]:
    """Bottom-up stacking order: ``first`` (the source language, English), then by
    total share, then ``other`` and ``und`` on top."""
    totals = shares.groupby("lang")["share"].sum().sort_values(ascending=False)
    named = [lang for lang in totals.index if lang not in ("other", "und")]
    lead = [lang for lang in first if lang in named]
    rest = [lang for lang in named if lang not in lead]
    return lead + rest + [x for x in ("other", "und") if x in totals.index]


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
    """Stacked bars of output languages per checkpoint, one panel per condition."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from babelscope.languages import name_of

    _check(df)
    concepts = list(dict.fromkeys(df["concept"]))
    if len(concepts) > MAX_CONCEPT_ROWS:  # many concepts: pool them
        df = df.assign(concept="all concepts")
        concepts = ["all concepts"]
    shares = language_shares(df)
    sources = sorted(df["source_lang"].unique()) if "source_lang" in df else []
    langs = _lang_order(shares, first=[*sources, "eng"])
    colours = _lang_colours(langs)
    conditions = [c for c in CONDITIONS if c in set(df["condition"])]
    steps = sorted(df["step"].unique())
    x = np.arange(len(steps))
    w = min(2.2 + 0.45 * len(steps), 8.0)
    fig, axes = plt.subplots(
        len(concepts), len(conditions), figsize=(w * len(conditions), 2.8 * len(concepts) + 0.8),
        squeeze=False, sharey=True, constrained_layout=True,
    )  # fmt: skip
    for r, concept in enumerate(concepts):
        for c, cond in enumerate(conditions):
            ax = axes[r][c]
            sub = shares[(shares["concept"] == concept) & (shares["condition"] == cond)]
            grid = sub.pivot_table(index="step", columns="lang", values="share", fill_value=0.0)
            grid = grid.reindex(index=steps, columns=langs, fill_value=0.0)
            bottom = np.zeros(len(steps))
            for lang in langs:
                v = grid[lang].to_numpy()
                ax.bar(
                    x, v, bottom=bottom, color=colours[lang], width=0.8, edgecolor="white", lw=0.3
                )
                bottom += v
            ax.set_xticks(x, [str(s) for s in steps], rotation=60, ha="right", fontsize=8)
            ax.set_ylim(0, 1)
            if r == 0:
                ax.set_title(CONDITION_LABELS.get(cond, cond))
            if c == 0:
                ax.set_ylabel(f"{concept}\nshare of outputs")
            if r == len(concepts) - 1:
                ax.set_xlabel("checkpoint (training step)")
    fig.suptitle(f"Language of generated text (experts found in {', '.join(sources) or '?'})")
    handles = [
        Patch(
            color=colours[lang],
            label=lang if lang in ("other", "und") else f"{lang} ({name_of(lang)})",
        )
        for lang in reversed(langs)  # listed top-down, as stacked
    ]
    fig.legend(handles=handles, loc="outside right center", fontsize=8, title="detected")
    paths = save_figure(fig, out_dir, "steering_languages")
    plt.close(fig)
    return paths


def hit_rates(df: pd.DataFrame) -> pd.DataFrame:
    """Concept-hit rate per (concept, condition, step)."""
    return (
        df.groupby(["concept", "condition", "step"])["concept_hit"]
        .mean()
        .rename("hit_rate")
        .reset_index()
    )


def plot_concept_hits(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Concept-hit rate per checkpoint, one line per condition."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _check(df)
    rates = hit_rates(df)
    steps = sorted(df["step"].unique())
    pos = {s: i for i, s in enumerate(steps)}  # by rank: series are often spaced by powers of 2
    fig, ax = plt.subplots(
        figsize=(min(3.5 + 0.4 * len(steps), 10.0), 3.6), constrained_layout=True
    )
    several = rates["concept"].nunique() > 1
    for cond in [c for c in CONDITIONS if c in set(rates["condition"])]:
        sub = rates[rates["condition"] == cond]
        colour = _CONDITION_COLOURS.get(cond, "k")
        if several:
            for _, g in sub.groupby("concept"):
                g = g.sort_values("step")
                ax.plot(g["step"].map(pos), g["hit_rate"], color=colour, alpha=0.2, lw=0.8)
        mean = sub.groupby("step")["hit_rate"].mean().reindex(steps)
        ax.plot(
            range(len(steps)),
            mean.to_numpy(),
            "o-",
            color=colour,
            label=CONDITION_LABELS.get(cond, cond),
        )
    ax.set_xticks(range(len(steps)), [str(s) for s in steps], rotation=60, ha="right", fontsize=8)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("checkpoint (training step)")
    ax.set_ylabel("outputs naming the concept")
    what = "mean over concepts; faint: each concept" if several else str(rates["concept"].iloc[0])
    ax.set_title(f"Concept-hit rate ({what})")
    ax.legend(fontsize=8)
    paths = save_figure(fig, out_dir, "steering_concept_hits")
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
    return plot_language_distribution(df, out_dir) + plot_concept_hits(df, out_dir)
