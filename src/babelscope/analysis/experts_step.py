"""One checkpoint of the experts stage: the executor's unit of work.

:func:`experts_step` scores one checkpoint (a shard per language pool, the permutation
null, then ``complete.json``) with :func:`babelscope.analysis.experts.score_step`, and
keeps what an earlier run or attempt finished: a complete step is not loaded again, a
shard with the step's key is not recomputed. :func:`babelscope.analysis.experts.run_experts`
sends one per checkpoint to its executor and merges the shards into ``experts.parquet``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from babelscope.analysis.expert_scoring import score_step
from babelscope.analysis.experts import (
    AP_DIR,
    COMPLETE,
    ExpertSettings,
    _pooled,
    _shard_ok,
    _step_key,
    mark_complete,
    shard_path,
)
from babelscope.analysis.pools import Pool
from babelscope.executor.base import StepDone


@dataclass
class ExpertsJob:
    """What every checkpoint needs: the pools, their halves and the null's plan (sent to a
    worker once, not per checkpoint)."""

    out_dir: Path
    pools: list[Pool]  # the scored pools (at least one concept each)
    halves: list[np.ndarray]
    plan: Any  # babelscope.analysis.alignment_null.NullPlan
    null_pools: list[int]
    settings: ExpertSettings
    align: Any  # babelscope.analysis.alignment.AlignSettings
    cache_dir: Path | None
    device: str
    dtype: str
    compare: Any = None  # babelscope.analysis.experts.Scoring of the unmatched pools
    last_step: int | None = None  # where the comparison and the shortcut table are made

    def key(self, ckpt: Any) -> str:
        """What the step's shards and marker are keyed by: weights, pools, settings, null."""
        return _step_key(ckpt, self.pools, self.settings, self.dtype, self.plan.settings)


def marker_path(out_dir: Path, step: int) -> Path:
    return Path(out_dir) / "results" / AP_DIR / f"step-{int(step)}" / COMPLETE


def step_complete(job: ExpertsJob, ckpt: Any, key: str) -> bool:
    """The step's marker and every shard carry ``key``: nothing to do."""
    marker = marker_path(job.out_dir, ckpt.step)
    try:
        done = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    if not (done.get("key") == key and all(
        _shard_ok(shard_path(job.out_dir, ckpt.step, p.lang), key) for p in job.pools
    )):  # fmt: skip
        return False
    if not _at_last(job, ckpt):
        return True
    from babelscope.analysis.step_extras import extras_done

    return extras_done(job, ckpt.step, key)


def _at_last(job: ExpertsJob, ckpt: Any) -> bool:
    return job.last_step is not None and int(ckpt.step) == int(job.last_step)


def experts_step(ckpt: Any, job: ExpertsJob) -> StepDone:
    """Score checkpoint ``ckpt`` (shards, null, marker, each written atomically); returns
    the marker's path. Safe to run again: finished parts are kept."""
    from babelscope.analysis.alignment_null import NULL_FILE, load_null
    from babelscope.checkpoints.series import load_checkpoint

    key = job.key(ckpt)
    marker = marker_path(job.out_dir, ckpt.step)
    if step_complete(job, ckpt, key):
        return StepDone(marker)
    t0 = time.perf_counter()
    want_null = job.plan.n_perm > 0 and len(job.null_pools) >= 2
    null_path = marker.parent / NULL_FILE
    if want_null:
        old = load_null(null_path) if null_path.exists() else None
        want_null = old is None or old["key"] != key
    s, cache = job.settings, job.cache_dir
    loaded = load_checkpoint(ckpt, dtype=job.dtype, device=job.device)
    extras = None
    if _at_last(job, ckpt):  # the unmatched comparison and the shortcut table
        from babelscope.analysis.step_extras import LastStepExtras

        extras = LastStepExtras(job, ckpt.step, loaded, key)
    score_step(
        job.out_dir, ckpt.step, job.pools, job.halves,
        lambda pool: _pooled(loaded, pool, s, cache, job.device), s, key=key,
        fingerprint=loaded.fingerprint, plan=job.plan if want_null else None,
        null_pools=job.null_pools, align=job.align,
        also=extras.also if extras else (), on_language=extras.on_language if extras else None,
    )  # fmt: skip
    if extras is not None:
        extras.write()
    langs = [p.lang for p in job.pools]
    mark_complete(job.out_dir, ckpt.step, langs, key=key, fingerprint=loaded.fingerprint)
    from babelscope.activations.cache import remove_entries  # keep_cache = false: drop them

    remove_entries(None if s.keep_cache else cache, ckpt.step, loaded.fingerprint)
    return StepDone(marker, time.perf_counter() - t0)
