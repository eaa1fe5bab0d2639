"""What the concept data measures: shortcuts against experts, and alignment before and
after matching (``figures/shortcuts.png``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from babelscope.report.figures import pyplot, save_figure

COLOURS = {"unmatched": "#d95f02", "matched": "#1b9e77"}


def plot_shortcuts(run_dir: str | Path) -> list[Path]:
    """Left: per (concept, language), the best trivial shortcut's held-out AP against the
    median held-out AP of the top-K experts, for unmatched and matched pools (above the
    diagonal: flagged). Right: whole-model overlap and transfer AP at the last checkpoint
    on both kinds of pool, each with its permutation null (mean to 95th percentile)."""
    import pandas as pd

    from babelscope.analysis.shortcuts import load_shortcuts

    run = Path(run_dir)
    t = load_shortcuts(run)
    if t is None or t.empty:
        return []
    plt = pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.6))
    for pools, g in t.groupby("pools"):
        ax.scatter(g["expert_median_ap"], g["best_ap"], s=10, alpha=0.6, label=f"{pools} pools",
                   color=COLOURS.get(str(pools), "grey"))  # fmt: skip
    lim = [0, float(np.nanmax([t["expert_median_ap"].max(), t["best_ap"].max(), 0.1])) * 1.05]
    ax.plot(lim, lim, color="black", lw=0.8, ls="--", label="shortcut = experts (flag line)")
    ax.set(xlim=lim, ylim=lim, xlabel="median held-out AP of the top-K experts",
           ylabel="best trivial shortcut, held-out AP",
           title=f"Shortcuts per (concept, language), step {int(t['step'].max())}")  # fmt: skip
    ax.legend(fontsize=8)

    res = run / "results"
    a, u = res / "alignment.parquet", res / "alignment_unmatched.parquet"
    if a.exists() and u.exists():
        m = pd.read_parquet(a)
        rows = {"unmatched": pd.read_parquet(u), "matched": m[m["step"] == m["step"].max()]}
        measures = ["overlap", "transfer_ap"]
        for j, (pools, df) in enumerate(rows.items()):
            w = df[(df["layer"] == "all") & df["measure"].isin(measures)].set_index("measure")
            x = np.arange(len(measures)) + (j - 0.5) * 0.35
            vals = [w.loc[k, "value"] if k in w.index else np.nan for k in measures]
            bx.bar(x, vals, width=0.33, color=COLOURS[pools], label=f"{pools} pools")
            for xi, k in zip(x, measures, strict=True):
                if k in w.index and np.isfinite(w.loc[k, "null_mean"]):
                    bx.plot([xi, xi], [w.loc[k, "null_mean"], w.loc[k, "null_p95"]], color="black", lw=3,
                            alpha=0.5, label="null mean–95th pct" if (j, k) == (0, measures[0]) else None)  # fmt: skip
        bx.set_xticks(np.arange(len(measures)), ["overlap@K", "transfer AP"])
        bx.set(ylabel="whole model, last checkpoint", title="Alignment before and after matching")
        bx.legend(fontsize=8)
    else:
        bx.axis("off")
    fig.tight_layout()
    paths = save_figure(fig, run / "figures", "shortcuts")
    plt.close(fig)
    return paths
