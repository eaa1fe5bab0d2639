"""Where the LID-probe figures are drawn (Experiment 1).

Two figures, each saved as PNG and SVG into the run's ``figures/`` directory:

- ``probe_heatmap``: probe accuracy and selectivity over layer x checkpoint (mean over seeds);
- ``probe_by_layer``: accuracy by layer, one line per checkpoint coloured by training
  progress, its 95 % interval over test sentences shaded, the type-level control task
  dashed, the lexical baseline dash-dotted and chance as a horizontal line; beside it the
  selectivity (accuracy - control accuracy) by layer;
- ``probe_confusion``: row-normalised confusion matrices at the first and last checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from babelscope.analysis.probe import summarize
from babelscope.report.figures import save_figure


def _progress_colours(steps: list[int]):
    """A colour per checkpoint from early (dark) to late (bright), by rank of the step.

    Rank, not the step value: series are often spaced by powers of two, and a linear step
    scale would give all early checkpoints one colour.
    """
    import matplotlib as mpl
    from matplotlib.colors import ListedColormap

    # viridis without its palest yellow, which vanishes on white.
    cmap = ListedColormap(mpl.colormaps["viridis"](np.linspace(0.0, 0.9, 256)))
    n = len(steps)
    return {s: cmap(i / max(n - 1, 1)) for i, s in enumerate(steps)}, cmap


def plot_probe_heatmap(summary: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Accuracy and selectivity over layer (rows) x checkpoint (columns)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = sorted(summary["step"].unique())
    layers = sorted(summary["layer"].unique())
    chance = float(summary["chance"].iloc[0])
    width = min(3.0 + 0.4 * len(steps), 10.0)  # per panel
    height = max(3.2, 1.6 + 0.32 * len(layers))
    fig, axes = plt.subplots(1, 2, figsize=(2 * width, height), constrained_layout=True)
    panels = [
        ("accuracy", "probe accuracy", (chance, 1.0), "viridis"),
        ("selectivity", "selectivity (accuracy − control)", (0.0, 1.0 - chance), "magma"),
    ]
    for ax, (col, title, (lo, hi), cmap) in zip(axes, panels, strict=True):
        grid = summary.pivot(index="layer", columns="step", values=col).reindex(
            index=layers, columns=steps
        )
        im = ax.imshow(grid.to_numpy(), aspect="auto", origin="lower", cmap=cmap, vmin=lo, vmax=hi)
        ax.set_xticks(
            range(len(steps)), [str(s) for s in steps], rotation=60, ha="right", fontsize=8
        )
        ax.set_yticks(range(len(layers)), [str(layer) for layer in layers], fontsize=8)
        ax.set_xlabel("checkpoint (training step)")
        ax.set_ylabel("layer (0 = embeddings)")
        ax.set_title(title)
        cb = fig.colorbar(im, ax=ax, shrink=0.9)
        if col == "accuracy":
            cb.ax.axhline(chance, color="white", lw=1.5)
            cb.set_label("accuracy (floor = chance, white line)")
        if len(steps) * len(layers) <= 240:  # numbers in the cells while they stay legible
            arr = grid.to_numpy()
            for i in range(arr.shape[0]):
                for j in range(arr.shape[1]):
                    if np.isfinite(arr[i, j]):
                        bright = (arr[i, j] - lo) / max(hi - lo, 1e-9) > 0.6
                        ax.text(j, i, f"{arr[i, j]:.2f}", ha="center", va="center", fontsize=6,
                                color="black" if bright else "white")  # fmt: skip
    fig.suptitle("Language identification probe: layer × checkpoint (mean over seeds)")
    paths = save_figure(fig, out_dir, "probe_heatmap")
    plt.close(fig)
    return paths


def plot_probe_by_layer(summary: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Accuracy by layer (one line per checkpoint, control dashed, chance line) and selectivity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.lines import Line2D

    steps = sorted(summary["step"].unique())
    chance = float(summary["chance"].iloc[0])
    colours, cmap = _progress_colours(steps)
    fig, (ax_acc, ax_sel) = plt.subplots(1, 2, figsize=(12, 4.6), constrained_layout=True)
    for step in steps:
        g = summary[summary["step"] == step].sort_values("layer")
        c = colours[step]
        x = g["layer"].to_numpy()
        ax_acc.plot(x, g["accuracy"], color=c, lw=1.8, marker="o", ms=3)
        lo, hi = (g["ci_lo"], g["ci_hi"]) if "ci_lo" in g else (
            g["accuracy"] - g["accuracy_std"], g["accuracy"] + g["accuracy_std"])  # fmt: skip
        ax_acc.fill_between(x, lo, hi, color=c, alpha=0.15, lw=0)
        ax_acc.plot(x, g["control_accuracy"], color=c, lw=1.0, ls="--", alpha=0.8)
        if "lexical_accuracy" in g and g["lexical_accuracy"].notna().any():
            ax_acc.plot(x, g["lexical_accuracy"], color=c, lw=0.8, ls="-.", alpha=0.6)
        ax_sel.plot(x, g["selectivity"], color=c, lw=1.8, marker="o", ms=3)
        ax_sel.fill_between(x, g["selectivity"] - g["selectivity_std"], g["selectivity"] + g["selectivity_std"],
                            color=c, alpha=0.15, lw=0)  # fmt: skip
    ax_acc.axhline(chance, color="grey", lw=1.2, ls=":")
    ax_sel.axhline(0.0, color="grey", lw=1.2, ls=":")
    layers = sorted(summary["layer"].unique())
    for ax in (ax_acc, ax_sel):
        ax.set_xticks(layers)
        ax.set_xlabel("layer (0 = embeddings)")
        ax.grid(alpha=0.3)
    ax_acc.set_ylim(0, 1.02)
    ax_acc.set_ylabel("test accuracy (mean over seeds, 95 % CI over sentences)")
    ax_acc.set_title("LID probe accuracy by layer")
    ax_sel.set_ylabel("selectivity = accuracy − control")
    ax_sel.set_title("Selectivity by layer")
    fig.legend(
        handles=[
            Line2D([], [], color="black", lw=1.8, marker="o", ms=3, label="probe"),
            Line2D(
                [],
                [],
                color="black",
                lw=1.0,
                ls="--",
                label="control task (random language per token type)",
            ),
            Line2D(
                [], [], color="black", lw=0.8, ls="-.", label="lexical baseline (token identity)"
            ),
            Line2D([], [], color="grey", lw=1.2, ls=":", label=f"chance = {chance:.3f}"),
        ],
        fontsize=8,
        loc="outside lower center",
        ncol=4,
    )
    sm = ScalarMappable(norm=Normalize(0, max(len(steps) - 1, 1)), cmap=cmap)
    cb = fig.colorbar(sm, ax=[ax_acc, ax_sel], shrink=0.9, pad=0.01)
    idx = np.unique(np.linspace(0, len(steps) - 1, min(len(steps), 8)).round().astype(int))
    cb.set_ticks(idx.tolist(), labels=[str(steps[i]) for i in idx])
    cb.set_label("checkpoint (training step)")
    paths = save_figure(fig, out_dir, "probe_by_layer")
    plt.close(fig)
    return paths


def plot_probe_confusion(conf: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Row-normalised confusion (true x predicted language) at the first and last checkpoint,
    for the middle layer and the last layer."""
    from babelscope.report.figures import pyplot

    if conf.empty:
        return []
    plt = pyplot()
    steps = sorted(conf["step"].unique())
    shown = [steps[0], steps[-1]] if len(steps) > 1 else steps
    layers = sorted(conf["layer"].unique())
    picked = sorted({layers[len(layers) // 2], layers[-1]})
    langs = sorted(set(conf["true"]))
    size = max(3.0, 0.28 * len(langs) + 1.5)
    fig, axes = plt.subplots(len(picked), len(shown), figsize=(size * len(shown), size * len(picked)),
                             squeeze=False)  # fmt: skip
    for i, layer in enumerate(picked):
        for j, step in enumerate(shown):
            d = conf[(conf["step"] == step) & (conf["layer"] == layer)]
            m = d.pivot(index="true", columns="predicted", values="count").reindex(
                index=langs, columns=langs
            )
            m = m.to_numpy(dtype=float)
            m = m / np.maximum(m.sum(1, keepdims=True), 1)
            ax = axes[i, j]
            ax.imshow(m, vmin=0, vmax=1, cmap="Blues")
            ax.set_xticks(range(len(langs)), langs, rotation=90, fontsize=6)
            ax.set_yticks(range(len(langs)), langs, fontsize=6)
            ax.set_title(f"step {step}, layer {layer}", fontsize=8)
            ax.set_xlabel("predicted", fontsize=7)
            ax.set_ylabel("true", fontsize=7)
    fig.suptitle("LID probe confusion (share of each true language's test tokens)", fontsize=9)
    fig.tight_layout()
    paths = save_figure(fig, out_dir, "probe_confusion")
    plt.close(fig)
    return paths


def plot_probe(results: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Draw every probe figure from a ``probe.parquet`` frame (and, beside it in the run,
    ``probe_confusion.parquet``); return the files written."""
    out_dir = Path(out_dir)
    if results.empty:
        return []
    summary = summarize(results)
    paths = plot_probe_heatmap(summary, out_dir) + plot_probe_by_layer(summary, out_dir)
    conf_file = out_dir.parent / "results" / "probe_confusion.parquet"
    if conf_file.exists():
        paths += plot_probe_confusion(pd.read_parquet(conf_file), out_dir)
    return paths
