"""Where the control-language figures are drawn (issue 14; docs/control-language.md).

A control language (``eng~x``) is a ciphered copy of its original: the alignment the
measures find between the two is the study's known-positive case. Saved as PNG and SVG:

- ``alignment_control``: original ↔ control overlap@K and transfer AP (whole model) over
  the checkpoints of a run, against the permutation null band (mean to 95th percentile),
  beside the mean over the real language pairs — read from the alignment stage's
  ``results/alignment_overlap.parquet``;
- ``control_capacity``: the same measures for models of several widths
  (:func:`babelscope.analysis.control.control_alignment_series` rows with a ``width``
  column; ``benchmarks/cipher_capacity.py``).

:func:`control_table` gives the per-checkpoint numbers as a markdown table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from babelscope.languages import control_original
from babelscope.report.figures import pyplot, save_figure

PAIR = ("overlap", "transfer_ap")
LABELS = {"overlap": "overlap@K", "transfer_ap": "transfer AP (original's experts on the control)"}


def control_pairs(ov: pd.DataFrame, layer: str = "all") -> pd.DataFrame:
    """Original → control rows of an ``alignment_overlap`` table at ``layer``, one per step,
    with ``real_<measure>``: the mean over ordered pairs of two real languages."""
    d = ov[ov["layer"].astype(str) == str(layer)]
    is_ctrl = d["lang_b"].map(lambda b: control_original(str(b)))
    pairs = d[is_ctrl == d["lang_a"]].copy()
    real = d[
        d["lang_a"].map(lambda a: control_original(str(a)) is None)
        & d["lang_b"].map(lambda b: control_original(str(b)) is None)
        & (d["lang_a"] != d["lang_b"])
    ]
    means = real.groupby("step")[[m for m in PAIR if m in real]].mean().add_prefix("real_")
    pairs = pairs.rename(columns={"lang_a": "original", "lang_b": "control"})
    return pairs.merge(means, left_on="step", right_index=True, how="left").sort_values(
        ["control", "step"]
    )


def control_table(run_dir: str | Path, layer: str = "all") -> str:
    """Markdown: per control and checkpoint, overlap and transfer AP with null and p-value."""
    path = Path(run_dir) / "results" / "alignment_overlap.parquet"
    if not path.exists():
        return ""
    df = control_pairs(pd.read_parquet(path), layer)
    if df.empty:
        return ""
    head = ["pair", "step"]
    for m in PAIR:
        head += [m, "null mean / p95", "p", f"real pairs' {m}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in df.iterrows():
        cells = [f"{r['original']} → {r['control']}", str(int(r["step"]))]
        for m in PAIR:
            cells += [
                f"{r[m]:.4f}",
                f"{r.get(f'{m}_null_mean', np.nan):.4f} / {r.get(f'{m}_null_p95', np.nan):.4f}",
                f"{r.get(f'{m}_p_value', np.nan):.3f}",
                f"{r.get(f'real_{m}', np.nan):.4f}",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _band(ax, x, lo, hi, colour) -> None:
    lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    if np.isfinite(lo).any() and np.isfinite(hi).any():
        ax.fill_between(x, lo, hi, color=colour, alpha=0.18, linewidth=0)


def _steps_axis(ax, steps) -> None:
    if len(steps) and min(steps) >= 0 and max(steps) > 8:
        ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel("step")


def plot_control_alignment(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """``alignment_control``: original ↔ control over checkpoints, null band, real pairs."""
    run_dir = Path(run_dir)
    path = run_dir / "results" / "alignment_overlap.parquet"
    if not path.exists():
        return []
    df = control_pairs(pd.read_parquet(path))
    if df.empty:
        return []
    plt = pyplot()
    fig, axes = plt.subplots(1, len(PAIR), figsize=(5.2 * len(PAIR), 3.6), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, m in zip(axes[0], PAIR, strict=True):
        for i, (ctrl, g) in enumerate(df.groupby("control", sort=True)):
            c = colours[i % len(colours)]
            x = g["step"].to_numpy()
            ax.plot(x, g[m], marker="o", ms=3, color=c, label=f"{g['original'].iloc[0]} → {ctrl}")
            if f"{m}_null_mean" in g:
                _band(ax, x, g[f"{m}_null_mean"], g[f"{m}_null_p95"], c)
        if f"real_{m}" in df:
            real = df.drop_duplicates("step").sort_values("step")
            ax.plot(
                real["step"], real[f"real_{m}"], ls="--", color="grey", label="real pairs (mean)"
            )
        _steps_axis(ax, df["step"].tolist())
        ax.set_title(LABELS[m], fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle("control language: alignment with its original (band: permutation null mean–p95)",
                 fontsize=10)  # fmt: skip
    out = Path(out_dir) if out_dir is not None else run_dir / "figures"
    paths = save_figure(fig, out, "alignment_control")
    plt.close(fig)
    return paths


def plot_control_capacity(df: pd.DataFrame, out_dir: str | Path, scope: str = "all") -> list[Path]:
    """``control_capacity``: one line per model width (rows of ``control_alignment_series``
    with a ``width`` column), each with its permutation null band."""
    d = df[df["scope"].astype(str) == scope]
    if d.empty:
        return []
    plt = pyplot()
    measures = [m for m in (*PAIR, "self_ap") if m in set(d["measure"])]
    fig, axes = plt.subplots(1, len(measures), figsize=(4.6 * len(measures), 3.6), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, m in zip(axes[0], measures, strict=True):
        for i, (w, g) in enumerate(d[d["measure"] == m].groupby("width", sort=True)):
            g = g.sort_values("step")
            c = colours[i % len(colours)]
            ax.plot(g["step"], g["value"], marker="o", ms=3, color=c, label=f"d_model {w}")
            _band(ax, g["step"], g["null_mean"], g["null_p95"], c)
        _steps_axis(ax, d["step"].tolist())
        ax.set_title(
            {"self_ap": "self AP (ceiling of transfer)"}.get(m, LABELS.get(m, m)), fontsize=9
        )
        ax.legend(fontsize=7)
    pair = f"{d['original'].iloc[0]} ↔ {d['control'].iloc[0]}" if "original" in d else "control"
    fig.suptitle(
        f"{pair} by model width (same tokens; band: permutation null mean–p95)", fontsize=10
    )
    paths = save_figure(fig, out_dir, "control_capacity")
    plt.close(fig)
    return paths


__all__ = ["control_pairs", "control_table", "plot_control_alignment", "plot_control_capacity"]
