"""The experts stage's unit of work (one checkpoint): run again after being stopped part
way, it recomputes only what is missing and gives the same shards."""

from __future__ import annotations

import numpy as np
import pandas as pd

from babelscope.analysis.experts import ExpertSettings, run_experts
from babelscope.executor import SerialExecutor


class Recording(SerialExecutor):
    """The serial engine, keeping what each unit returned."""

    def map(self, fn, items, shared=None, *, desc):
        self.done = super().map(fn, items, shared, desc=desc)
        return self.done


def _arrays(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def test_a_step_stopped_part_way_redoes_only_what_is_missing(tmp_path, tiny_series_dir):
    from babelscope.checkpoints.series import resolve_series
    from test_experts import _data_dir

    series = resolve_series(str(tiny_series_dir))
    data, out = _data_dir(tmp_path), tmp_path / "run"
    st = ExpertSettings(top_k_store=5, min_positives=1, threads=1)
    ex = Recording()
    df = run_experts(series, data, out, st, executor=ex)
    assert [d.seconds is not None for d in ex.done] == [True, True, True]
    assert [d.path.name for d in ex.done] == ["complete.json"] * 3

    # Step 1 as a worker killed after its first language would leave it: one shard and
    # the marker missing. The rerun reloads step 1 only and writes only what is missing.
    step = out / "results" / "ap" / "step-1"
    spa = _arrays(step / "spa.npz")
    (step / "spa.npz").unlink()
    (step / "complete.json").unlink()
    kept = {p: p.stat().st_mtime_ns for p in (out / "results" / "ap").rglob("*.npz")}
    df2 = run_experts(series, data, out, st, executor=ex)
    assert [d.seconds is None for d in ex.done] == [True, False, True]  # 0 and 2 reused
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # nothing finished was rewritten
    assert (step / "complete.json").exists()
    again = _arrays(step / "spa.npz")
    assert sorted(again) == sorted(spa)
    for k in spa:
        np.testing.assert_array_equal(again[k], spa[k], err_msg=k)
    pd.testing.assert_frame_equal(df, df2)


def test_unmatched_pools_as_the_study_and_no_stale_comparison(tmp_path, tiny_series_dir):
    """pools = "unmatched" scores into the step's own folder (align reads it); turning the
    comparison off removes an earlier one, so the align stage cannot show it."""
    from babelscope.analysis.alignment import AlignSettings, run_alignment
    from babelscope.checkpoints.series import resolve_series
    from test_experts import _data_dir

    series = resolve_series(str(tiny_series_dir))
    data, out = _data_dir(tmp_path), tmp_path / "run"
    align = AlignSettings(k=1, permutations=5)
    run_experts(series, data, out, ExpertSettings(min_positives=1, threads=1), align=align)
    last = out / "results" / "ap" / "step-2"
    assert (last / "unmatched").is_dir()
    run_alignment(out, align)
    assert (out / "results" / "alignment_unmatched.parquet").exists()
    st = ExpertSettings(min_positives=1, threads=1, pools="unmatched")
    run_experts(series, data, out, st, align=align)
    assert not (last / "unmatched").exists() and (last / "eng.npz").exists()
    df = run_alignment(out, align)
    assert len(df) and not (out / "results" / "alignment_unmatched.parquet").exists()
