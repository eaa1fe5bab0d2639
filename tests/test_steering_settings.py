"""Steering settings: the K grid, the embedded defaults, validation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from babelscope.analysis.steering import EMBEDDED_DEFAULTS, SteerSettings
from babelscope.errors import BabelscopeError


def test_defaults_and_k_grid():
    s = SteerSettings()
    assert (s.source_lang, s.other_lang, s.seeds, s.max_new_tokens, s.temperature, s.top_p) == (
        "spa", "swa", 100, 64, 0.8, 0.9)  # fmt: skip
    assert s.k == [10, 30, 100, 300, 1000] and s.random_draws >= 5
    assert s.resolve_ks(98_304) == [10, 30, 100, 300, 1000]
    assert s.resolve_ks(2048) == [10, 30, 100, 300, 1000]
    assert s.resolve_ks(128) == [10, 30, 64]  # capped at half the units
    assert SteerSettings(k=7).k == [7] and SteerSettings(k=[30, 10, 30]).k == [10, 30]
    assert SteerSettings(statistic="on_p50").statistic == "pooled"
    with pytest.raises(BabelscopeError, match="at least 2"):
        s.resolve_ks(1)


def test_embedded_defaults_leave_explicit_settings_alone():
    e = SteerSettings().for_embedded()
    for k, v in EMBEDDED_DEFAULTS.items():
        assert getattr(e, k) == v
    mine = SteerSettings(seeds=7, k=[5]).for_embedded()
    assert (mine.seeds, mine.k, mine.checkpoints) == (7, [5], EMBEDDED_DEFAULTS["checkpoints"])


def test_validation():
    with pytest.raises(ValidationError, match="K grid"):
        SteerSettings(k=[0])
    with pytest.raises(ValidationError):
        SteerSettings(statistic="mean")
    with pytest.raises(ValidationError):
        SteerSettings(mode="multiply")
    with pytest.raises(ValidationError, match="extra"):
        SteerSettings(seed=3)
    with pytest.raises(ValidationError, match="unknown language code"):
        SteerSettings(other_lang="sw")
    assert SteerSettings(conditions=["random", "experts"]).conditions == ["experts", "random"]
