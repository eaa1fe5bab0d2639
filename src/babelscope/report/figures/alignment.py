"""Where the alignment figures are drawn (Experiment 2).

Saved as PNG and SVG into the run's ``figures/`` directory:

- ``alignment_<measure>``: a heatmap over layer (rows) x checkpoint (columns) of one
  measure, cells above the permutation null (p <= 0.05) marked; beside it the whole-model
  value per checkpoint with its 95 % interval, the null band (mean to 95th percentile),
  the different-concept reference and the closed-form floor;
- ``alignment_languages``: the language x language overlap matrix (whole model) at the
  first and the last checkpoint, on one colour scale, pairs above their null marked;
- ``alignment_trajectories``: the held-out AP (half 1) of the units most shared across
  languages on half 0 of the last checkpoint, at every checkpoint, one line per language.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from babelscope.analysis.alignment import (
    ALIGNMENT_FILE,
    ALL,
    OVERLAP_FILE,
    ROW_MEASURES,
    TRAJECTORY_FILE,
)
from babelscope.report.figures import pyplot, save_figure

TITLES = {
    "overlap": "overlap@K of experts between languages",
    "jaccard": "Jaccard of experts between languages",
    "transfer_ap": "transfer AP (experts of language A, scored in B)",
    "self_ap": "held-out AP of the experts in their own language",
    "self_ap_insample": "in-sample AP of the experts (chosen and scored on the same sentences)",
    "crosslingual": "cross-lingual experts per concept (top K in >= m languages)",
}


ALPHA = 0.05


def plot_measure(df: pd.DataFrame, measure: str, out_dir: Path) -> list[Path]:
    """Heatmap of ``measure`` over layer x checkpoint (cells above the null marked), and the
    whole-model value with its interval beside the null band and the references."""
    plt = pyplot()
    d = df[df["measure"] == measure]
    per_layer = d[d["layer"] != ALL].copy()
    per_layer["layer_n"] = per_layer["layer"].astype(int)
    steps = sorted(d["step"].unique())
    grid = per_layer.pivot(index="layer_n", columns="step", values="value").reindex(columns=steps)
    pgrid = per_layer.pivot(index="layer_n", columns="step", values="p_value").reindex(
        columns=steps
    )
    whole = d[d["layer"] == ALL].sort_values("step")
    fig, (ax, ax2) = plt.subplots(
        1, 2, figsize=(min(4 + 0.45 * len(steps), 12) + 5, max(3.4, 1.5 + 0.3 * len(grid))),
        gridspec_kw={"width_ratios": [max(len(steps), 3), 4]},
    )  # fmt: skip
    im = ax.imshow(grid.to_numpy(dtype=float), aspect="auto", origin="lower", cmap="viridis")
    sig = np.argwhere(pgrid.to_numpy(dtype=float) <= ALPHA)
    if len(sig):
        ax.scatter(sig[:, 1], sig[:, 0], marker="*", s=30, c="white", edgecolors="k", lw=0.4,
                   label=f"above null, p <= {ALPHA}")  # fmt: skip
        ax.legend(fontsize=6, loc="upper left")
    ax.set_xticks(range(len(steps)), [str(s) for s in steps], rotation=60, fontsize=7)
    ax.set_yticks(range(len(grid)), [str(i) for i in grid.index], fontsize=7)
    ax.set_xlabel("checkpoint (step)")
    ax.set_ylabel("layer")
    n_null = int(d["n_null"].max()) if "n_null" in d and len(d) else 0
    ax.set_title(
        f"{TITLES.get(measure, measure)}\nper layer; null: {n_null} label permutations",
        fontsize=9,
    )
    fig.colorbar(im, ax=ax, fraction=0.04)
    x = np.arange(len(whole))
    if len(whole) and whole["null_mean"].notna().any():
        ax2.fill_between(x, whole["null_mean"], whole["null_p95"], color="0.8",
                         label="null (mean to 95th pct.)")  # fmt: skip
    err = np.vstack([whole["value"] - whole["ci_lo"], whole["ci_hi"] - whole["value"]])
    ax2.errorbar(x, whole["value"], yerr=np.where(np.isfinite(err), err, 0), fmt="o-", ms=4,
                 capsize=2, label="whole model, 95 % CI")  # fmt: skip
    if whole["diffconcept"].notna().any():
        ax2.plot(x, whole["diffconcept"], ":", color="tab:red", label="different concept")
    ax2.plot(x, whole["floor"], "--", color="0.4", lw=0.8, label="floor (closed form)")
    ax2.set_xticks(x, [str(s) for s in whole["step"]], rotation=60, fontsize=7)
    ax2.set_xlabel("checkpoint (step)")
    ax2.set_title(
        f"whole model (K = {int(whole['k'].iloc[0])})" if len(whole) else "whole model", fontsize=9
    )
    ax2.legend(fontsize=6)
    fig.tight_layout()
    paths = save_figure(fig, out_dir, f"alignment_{measure}")
    plt.close(fig)
    return paths


def plot_language_matrices(ov: pd.DataFrame, out_dir: Path, layer: str = ALL) -> list[Path]:
    """Language x language overlap at the first and last checkpoint."""
    plt = pyplot()
    d = ov[ov["layer"] == layer]
    steps = sorted(d["step"].unique())
    if not steps:
        return []
    shown = [steps[0], steps[-1]] if len(steps) > 1 else steps
    langs = sorted(set(d["lang_a"]) | set(d["lang_b"]))
    mats, sigs = [], []
    for s in shown:
        m = d[d["step"] == s].pivot(index="lang_a", columns="lang_b", values="overlap")
        mats.append(m.reindex(index=langs, columns=langs).to_numpy(dtype=float))
        if "overlap_p_value" in d:
            p = d[d["step"] == s].pivot(index="lang_a", columns="lang_b", values="overlap_p_value")
            sigs.append(np.argwhere(p.reindex(index=langs, columns=langs).to_numpy(float) <= ALPHA))
        else:
            sigs.append(np.zeros((0, 2), dtype=int))
    vmax = max(float(np.nanmax(m)) if np.isfinite(m).any() else 0.0 for m in mats) or 1.0
    size = max(3.5, 0.35 * len(langs) + 1.5)
    fig, axes = plt.subplots(1, len(shown), figsize=(size * len(shown) + 1, size), squeeze=False)
    k, units = int(d["k"].iloc[0]), int(d["units"].iloc[0])
    for ax, s, m, sig in zip(axes[0], shown, mats, sigs, strict=True):
        im = ax.imshow(m, vmin=0, vmax=vmax, cmap="magma")
        if len(sig):
            ax.scatter(sig[:, 1], sig[:, 0], marker=".", s=12, c="cyan")
        ax.set_xticks(range(len(langs)), langs, rotation=90, fontsize=7)
        ax.set_yticks(range(len(langs)), langs, fontsize=7)
        ax.set_title(f"step {s}", fontsize=9)
    fig.colorbar(im, ax=axes[0].tolist(), fraction=0.03)
    scope = "whole model" if layer == ALL else f"layer {layer}"
    fig.suptitle(f"cross-fitted overlap@K of experts, {scope} (K = {k} of {units}); "
                 f"dots: pair above its permutation null, p <= {ALPHA}", fontsize=9)  # fmt: skip
    paths = save_figure(fig, out_dir, "alignment_languages")
    plt.close(fig)
    return paths


def plot_trajectories(tr: pd.DataFrame, out_dir: Path, max_units: int = 6) -> list[Path]:
    """AP of each followed unit over checkpoints, one line per language."""
    plt = pyplot()
    if tr.empty:
        return []
    ranks = sorted(tr["rank"].unique())[:max_units]
    cols = min(3, len(ranks))
    rows = int(np.ceil(len(ranks) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    steps = sorted(tr["step"].unique())
    pos = {s: i for i, s in enumerate(steps)}
    for ax, r in zip(axes.flat, ranks, strict=False):
        d = tr[tr["rank"] == r]
        for lang, g in d.groupby("lang"):
            g = g.sort_values("step")
            ax.plot([pos[s] for s in g["step"]], g["ap"], marker=".", lw=1, label=lang)
        first = d.iloc[0]
        ax.set_title(
            f"{first['concept']}: layer {first['layer']} unit {first['unit']} "
            f"({first['n_languages_last']} langs)", fontsize=8,
        )  # fmt: skip
        ax.set_xticks(range(len(steps)), [str(s) for s in steps], rotation=60, fontsize=6)
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("AP", fontsize=8)
    for ax in list(axes.flat)[len(ranks) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=7)
    fig.suptitle("held-out AP (half 1) of the units most shared across languages on half 0 "
                 f"of step {steps[-1]}", fontsize=9)  # fmt: skip
    fig.tight_layout(rect=(0, 0, 0.92, 1))
    paths = save_figure(fig, out_dir, "alignment_trajectories")
    plt.close(fig)
    return paths


def plot_alignment(run_dir: str | Path) -> list[Path]:
    """Every alignment figure of a run, from its ``results/alignment*.parquet``."""
    from babelscope.errors import BabelscopeError

    run_dir = Path(run_dir)
    res, out = run_dir / "results", run_dir / "figures"
    if not (res / ALIGNMENT_FILE).exists():
        raise BabelscopeError(
            f"no {ALIGNMENT_FILE} under {res}: run `babelscope align --out {run_dir}` first"
        )
    df = pd.read_parquet(res / ALIGNMENT_FILE)
    df["layer"] = df["layer"].astype(str)
    paths: list[Path] = []
    for measure in ROW_MEASURES:
        if (df["measure"] == measure).any():
            paths += plot_measure(df, measure, out)
    if (res / OVERLAP_FILE).exists():
        ov = pd.read_parquet(res / OVERLAP_FILE)
        if not ov.empty:
            ov["layer"] = ov["layer"].astype(str)
            paths += plot_language_matrices(ov, out)
    if (res / TRAJECTORY_FILE).exists():
        paths += plot_trajectories(pd.read_parquet(res / TRAJECTORY_FILE), out)
    return paths
