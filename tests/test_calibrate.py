"""Calibration timings: positive, scaled by depth as documented, interpolated by rows."""

from __future__ import annotations

import pytest

from babelscope import calibrate as cb
from babelscope.config import load_config
from babelscope.plan import architecture, series_steps


@pytest.fixture(scope="module")
def arch(tiny_series_dir):
    cfg = load_config(None, overrides={"model": {"series": str(tiny_series_dir)}})
    series, _, _ = series_steps(cfg)
    return architecture(cfg, series)


def test_with_depth_changes_only_depth_and_vocabulary(arch):
    cfg = cb.with_depth(arch.hf_config, arch.spec, 1, vocab=50)
    assert arch.spec.num_layers(cfg) == 1 and cfg.vocab_size == 50
    assert arch.spec.hidden_size(cfg) == arch.hidden and arch.spec.num_layers(arch.hf_config) == 2
    assert cb.random_model(cfg, "cpu", "fp32").config.vocab_size == 50


def test_timings_are_positive_and_say_how(arch, monkeypatch):
    per_token, how = cb.time_forward(arch, "cpu", "fp32", batch=4, length=8)
    assert per_token > 0 and "2 of 2 blocks timed" in how
    # A weight budget of one block: 1 and 1 blocks timed, scaled to the depth.
    monkeypatch.setattr(cb, "WEIGHT_BUDGET", arch.block_bytes)
    assert "scaled by depth" in cb.time_forward(arch, "cpu", "fp32", batch=4, length=8)[1]
    assert cb.time_head(arch, "cpu", "fp32", tokens=16) > 0
    steps = cb.time_decode(arch, "cpu", "fp32", rows=3, steps=2)
    assert set(steps) == {1, 3} and min(steps.values()) > 0
    assert cb.time_hash(1 << 16) > 0


def test_decode_interpolates_between_measured_rows():
    cal = cb.Calibration("cpu", "fp32", decode_step={1: 0.01, 11: 0.11})
    assert cal.decode(6) == pytest.approx(0.06) and cal.decode(1) == pytest.approx(0.01)
    assert cb.Calibration("cpu", "fp32", decode_step={4: 0.2}).decode(9) == 0.2
