"""The HTML report: self-contained, every figure displayed (checked in headless Chromium)."""

import json
import shutil
import subprocess

import pandas as pd
import pytest

from babelscope.report.html import render_report


def fake_run(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = tmp_path / "run"
    (run / "figures").mkdir(parents=True)
    (run / "results").mkdir()
    for name in ("probe_heatmap", "alignment_overlap", "steering_languages", "training_loss"):
        fig, ax = plt.subplots(figsize=(3, 2))
        ax.plot([0, 1], [1, 0])
        fig.savefig(run / "figures" / f"{name}.png")
        plt.close(fig)
    (run / "config.toml").write_text('name = "t"\n')
    (run / "checkpoints.json").write_text(
        json.dumps({"checkpoints": [
            {"step": 0, "params": 10, "fingerprint": "abc", "ppl_eng": 100.0, "flags": []},
            {"step": 8, "params": 10, "fingerprint": "abc", "ppl_eng": 100.0, "flags": ["duplicate_of:0"]},
        ]})
    )  # fmt: skip
    rows = [
        dict(step=s, layer=i, seed=0, accuracy=0.5 + 0.1 * i, ci_lo=0.45 + 0.1 * i, ci_hi=0.55 + 0.1 * i,
             control_accuracy=0.25, selectivity=0.25 + 0.1 * i, lexical_accuracy=0.4, chance=0.25)
        for s in (0, 8) for i in range(3)
    ]  # fmt: skip
    pd.DataFrame(rows).to_parquet(run / "results" / "probe.parquet")
    align = [
        dict(step=s, layer=layer, measure=m, value=v, ci_lo=v - 0.01, ci_hi=v + 0.01, null_mean=0.02,
             null_p95=0.03, p_value=0.01 if s else 0.5, n_null=100, diffconcept=0.02, floor=0.01)
        for s, v in ((0, 0.02), (8, 0.05)) for layer in ("0", "all") for m in ("overlap", "jaccard")
    ]  # fmt: skip
    pd.DataFrame(align).to_parquet(run / "results" / "alignment.parquet")
    return run


def test_report_is_self_contained(tmp_path):
    run = fake_run(tmp_path)
    path = render_report(run)
    html = path.read_text()
    assert html.count("data:image/png;base64,") == 4
    assert 'src="http' not in html and 'href="http' not in html
    assert "1 checkpoint(s) flagged" in html
    assert "Language identification by layer" in html
    assert "Probe at the first and last checkpoint" in html and "lexical_accuracy" in html
    assert "Per layer at the first and last checkpoint" in html
    assert (
        "above the permutation null (p &lt;= 0.05, 100 permutations) in layer 0, whole model"
        in html
    )


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.browser
@pytest.mark.skipif(
    _chromium() is None, reason="chromium not installed (make test installs Debian's chromium)"
)
def test_report_renders_in_headless_chromium(tmp_path):
    run = fake_run(tmp_path)
    path = render_report(run)
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000",
    ]  # fmt: skip
    dom = subprocess.run(
        [_chromium(), *flags, "--dump-dom", path.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert 'data-images="4"' in dom, dom[:500]
    assert 'data-broken-images="0"' in dom
    shot = tmp_path / "report.png"
    subprocess.run(
        [_chromium(), *flags, f"--screenshot={shot}", "--window-size=1200,2400", path.as_uri()],
        capture_output=True, timeout=120,
    )  # fmt: skip
    assert shot.exists() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 10_000
