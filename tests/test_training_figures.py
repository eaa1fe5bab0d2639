"""The loss-curve figure of a pre-training log."""

from __future__ import annotations

import numpy as np
import pandas as pd

from babelscope.report.figures.training import heldout_languages, plot_training_loss


def _log(steps: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    step = np.arange(steps + 1)
    loss = np.r_[np.nan, 9 - np.log1p(step[1:]) + rng.normal(0, 0.1, steps)]
    df = pd.DataFrame({"step": step, "loss": loss, "lr": 1e-3, "tokens_seen": step * 64})
    for i, lang in enumerate(("eng", "spa", "zho")):
        held = 9 - np.log1p(step) * (1 + 0.1 * i)
        df[f"heldout_loss_{lang}"] = np.where(step % 8 == 0, held, np.nan)
    return df


def test_plot_training_loss_writes_png_and_svg(tmp_path):
    log = _log()
    assert heldout_languages(log) == ["eng", "spa", "zho"]
    paths = plot_training_loss(log, tmp_path / "figures" / "training_loss")
    assert [p.suffix for p in paths] == [".png", ".svg"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = paths[1].read_text()
    assert "<svg" in svg and "zho" in svg  # one legend entry per language
    assert not list((tmp_path / "figures").glob(".*"))  # no temporaries left


def test_plot_handles_a_log_with_only_step_zero(tmp_path):
    log = _log().iloc[:1]
    paths = plot_training_loss(log, tmp_path / "loss", languages=["eng"])
    assert all(p.stat().st_size > 0 for p in paths)
