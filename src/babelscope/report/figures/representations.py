"""Where the representation figures are drawn (retrieval, CKA, the latent language).

Saved as PNG and SVG into the run's ``figures/``:

- ``representations_heatmap``: layer x checkpoint panels side by side — the LID probe's
  accuracy (when ``probe.parquet`` exists), translation retrieval raw and language-centred,
  linear CKA, and the logit lens's mass on the input's own language and on the pivot —
  so the LID drop, retrieval rising and the latent language can be read in the same
  layers. Each panel's colour bar marks its reference (chance or null mean) with a white line;
- ``representations_by_layer``: each measure by layer at the first and last checkpoint,
  with its 95 % interval and its reference (chance / null 95th percentile) dashed;
- ``representations_latent_language``: per layer, the lens's next-token mass split into own language,
  pivot, other languages, shared and unseen tokens, at the first and last checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from babelscope.report.figures import pyplot, save_figure

#: Heatmap panels: measure, title, colour map.
PANELS = [
    ("retrieval", "retrieval P@1 (raw)", "viridis"),
    ("retrieval_centred", "retrieval P@1 (language-centred)", "viridis"),
    ("cka", "linear CKA between languages", "cividis"),
    ("lens_own", "lens: mass on the input's language", "magma"),
    ("lens_pivot", "lens: mass on the pivot (English)", "magma"),
]
LENS_PARTS = [
    ("lens_own", "own language"),
    ("lens_pivot", "pivot"),
    ("lens_other", "other languages"),
    ("lens_shared", "shared tokens"),
    ("lens_unseen", "unseen tokens"),
]


def _grid(df: pd.DataFrame, measure: str, col: str = "value") -> pd.DataFrame:
    sel = df[df["measure"] == measure]
    return sel.pivot_table(index="layer", columns="step", values=col, aggfunc="mean")


def _probe_grid(run_dir: Path) -> tuple[pd.DataFrame, float] | None:
    p = run_dir / "results" / "probe.parquet"
    if not p.exists():
        return None
    probe = pd.read_parquet(p)
    grid = probe.pivot_table(index="layer", columns="step", values="accuracy", aggfunc="mean")
    return grid, float(probe["chance"].iloc[0])


def _heat(ax, fig, grid: pd.DataFrame, title: str, cmap: str, lo: float, hi: float, ref: float):
    arr = grid.to_numpy()
    im = ax.imshow(arr, aspect="auto", origin="lower", cmap=cmap, vmin=lo, vmax=hi)
    steps, layers = list(grid.columns), list(grid.index)
    ax.set_xticks(range(len(steps)), [str(s) for s in steps], rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(layers)), [str(v) for v in layers], fontsize=8)
    ax.set_xlabel("checkpoint (step)")
    ax.set_ylabel("layer (0 = embeddings)")
    ax.set_title(title, fontsize=9)
    cb = fig.colorbar(im, ax=ax, shrink=0.9)
    if np.isfinite(ref) and lo <= ref <= hi:
        cb.ax.axhline(ref, color="white", lw=1.5)
    if arr.size <= 40:  # numbers in the cells while few (text is slow to render)
        for i in range(arr.shape[0]):
            for j in range(arr.shape[1]):
                if np.isfinite(arr[i, j]):
                    bright = (arr[i, j] - lo) / max(hi - lo, 1e-9) > 0.6
                    ax.text(j, i, f"{arr[i, j]:.2f}", ha="center", va="center", fontsize=5,
                            color="black" if bright else "white")  # fmt: skip


def plot_heatmap(df: pd.DataFrame, out_dir: Path, run_dir: Path | None = None) -> list[Path]:
    """Layer x checkpoint heatmaps of every representation measure (beside the LID probe)."""
    plt = pyplot()
    panels = [p for p in PANELS if (df["measure"] == p[0]).any()]
    probe = _probe_grid(run_dir) if run_dir is not None else None
    n = len(panels) + (probe is not None)
    steps = sorted(df["step"].unique())
    layers = sorted(df["layer"].unique())
    w, h = min(2.4 + 0.3 * len(steps), 6.0), max(2.8, 1.4 + 0.3 * len(layers))
    ncols = min(n, 3)
    nrows = -(-n // ncols)
    fig, grid_axes = plt.subplots(
        nrows, ncols, figsize=(w * ncols, h * nrows), constrained_layout=True, squeeze=False
    )
    axes = list(grid_axes.ravel())
    for ax in axes[n:]:
        ax.set_visible(False)
    if probe is not None:
        grid, chance = probe
        _heat(axes.pop(0), fig, grid, "LID probe accuracy", "viridis", chance, 1.0, chance)
    for ax, (measure, title, cmap) in zip(axes, panels, strict=False):
        grid = _grid(df, measure).reindex(index=layers, columns=steps)
        sel = df[df["measure"] == measure]
        ref = float(sel["null_mean"].mean() if measure == "cka" else sel["chance"].mean())
        top = float(np.nanmax(grid.to_numpy()))
        lo = min(float(np.nanmin(grid.to_numpy())), ref) if measure == "cka" else 0.0
        # Retrieval and the lens use the range they reach (chance is small); CKA runs to 1.
        hi = 1.0 if measure == "cka" else max(top, 2 * ref, 0.05)
        _heat(ax, fig, grid, title, cmap, lo, max(hi, lo + 1e-6), ref)
    fig.suptitle("Representations over training: layer × checkpoint (white line: chance / null)")
    paths = save_figure(fig, out_dir, "representations_heatmap")
    plt.close(fig)
    return paths


def plot_by_layer(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Each measure by layer at the first and last checkpoint, with intervals and references."""
    plt = pyplot()
    measures = [m for m in ("retrieval", "retrieval_centred", "cka", "margin", "margin_centred")
                if (df["measure"] == m).any()]  # fmt: skip
    first, last = int(df["step"].min()), int(df["step"].max())
    fig, axes = plt.subplots(1, len(measures), figsize=(3.2 * len(measures), 3.2),
                             constrained_layout=True, squeeze=False)  # fmt: skip
    for ax, measure in zip(axes[0], measures, strict=True):
        for step, colour in ((first, "tab:grey"), (last, "tab:blue")):
            g = df[(df["measure"] == measure) & (df["step"] == step)].sort_values("layer")
            ax.plot(g["layer"], g["value"], "o-", color=colour, label=f"step {step}")
            ax.fill_between(g["layer"], g["ci_low"], g["ci_high"], color=colour, alpha=0.2)
            ax.plot(g["layer"], g["null_p95"], ":", color=colour, lw=1)
        ax.axhline(float(df.loc[df["measure"] == measure, "chance"].mean()), color="black",
                   ls="--", lw=1, label="chance")  # fmt: skip
        ax.set_title(measure.replace("_", " "), fontsize=9)
        ax.set_xlabel("layer")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("By layer, first vs last checkpoint (band: 95% CI; dotted: null 95th pct.)")
    paths = save_figure(fig, out_dir, "representations_by_layer")
    plt.close(fig)
    return paths


def plot_latent_language(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Stacked lens mass per layer (own, pivot, other, shared, unseen), first and last step."""
    plt = pyplot()
    first, last = int(df["step"].min()), int(df["step"].max())
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.4), sharey=True, constrained_layout=True)
    colours = ["tab:red", "tab:blue", "tab:orange", "tab:grey", "lightgrey"]
    for ax, step in zip(axes, (first, last), strict=True):
        g = df[df["step"] == step]
        layers = sorted(g["layer"].unique())
        bottom = np.zeros(len(layers))
        for (measure, label), colour in zip(LENS_PARTS, colours, strict=True):
            v = _grid(g, measure).reindex(index=layers).iloc[:, 0].to_numpy()
            ax.bar(layers, v, bottom=bottom, color=colour, label=label)
            bottom += np.nan_to_num(v)
        ax.set_title(f"step {step}", fontsize=9)
        ax.set_xlabel("layer (decoded through final norm + head)")
    axes[0].set_ylabel("next-token probability mass")
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle("Latent language (logit lens), non-pivot inputs")
    paths = save_figure(fig, out_dir, "representations_latent_language")
    plt.close(fig)
    return paths


def plot_representations(run_dir: str | Path) -> list[Path]:
    """Every representation figure of a run directory (nothing when there are no results)."""
    run_dir = Path(run_dir)
    p = run_dir / "results" / "similarity.parquet"
    if not p.exists():
        return []
    df = pd.read_parquet(p)
    out = run_dir / "figures"
    paths = plot_heatmap(df, out, run_dir) + plot_by_layer(df, out)
    if (df["measure"] == "lens_own").any():
        paths += plot_latent_language(df, out)
    return paths
