"""The pre-training loss curves: training loss, and held-out loss with one line per language."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

HELDOUT_PREFIX = "heldout_loss_"


def heldout_languages(log: pd.DataFrame) -> list[str]:
    """Languages with a held-out loss column in a training log."""
    return [c.removeprefix(HELDOUT_PREFIX) for c in log.columns if c.startswith(HELDOUT_PREFIX)]


def plot_training_loss(
    log: pd.DataFrame,
    out_stem: str | Path,
    *,
    languages: Sequence[str] | None = None,
    title: str = "pre-training",
    smooth: int = 25,
) -> list[Path]:
    """Draw the training log as ``<out_stem>.png`` and ``.svg``; return both paths.

    Left: the training loss per step (raw, light, and a running mean over ``smooth``
    steps). Right: the held-out loss of each language at every evaluated step. The step
    axis is symmetric-log so that the early, power-of-two checkpoints stay visible.
    """
    from babelscope.report.figures import pyplot, save_figure

    plt = pyplot()
    langs = list(languages) if languages is not None else heldout_languages(log)
    fig, (ax_train, ax_held) = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)

    train = log.dropna(subset=["loss"]).sort_values("step")
    if len(train):
        ax_train.plot(train["step"], train["loss"], color="0.75", lw=0.6, label="per step")
        ax_train.plot(
            train["step"],
            train["loss"].rolling(max(1, smooth), min_periods=1).mean(),
            color="C0",
            lw=1.5,
            label=f"running mean ({smooth})",
        )
        ax_train.legend(frameon=False)
    ax_train.set(title="training loss", xlabel="step", ylabel="loss (nats/token)")

    cmap = plt.get_cmap("tab20")
    for i, lang in enumerate(langs):
        col = HELDOUT_PREFIX + lang
        if col not in log.columns:
            continue
        pts = log.dropna(subset=[col]).sort_values("step")
        if len(pts):
            ax_held.plot(
                pts["step"], pts[col], marker=".", ms=3, lw=1.2, color=cmap(i % 20), label=lang
            )
    ax_held.set(title="held-out loss per language", xlabel="step", ylabel="loss (nats/token)")
    if langs:
        ax_held.legend(ncol=2, fontsize=7, frameon=False, loc="upper right")

    for ax in (ax_train, ax_held):
        ax.set_xscale("symlog", linthresh=1)
        ax.grid(alpha=0.3, lw=0.5)
    fig.suptitle(title)

    out_stem = Path(out_stem)
    try:
        return save_figure(fig, out_stem.parent, out_stem.name)
    finally:
        plt.close(fig)
