"""Hub revisions through a per-run download dir: loaded from there, removed unless kept.

The hub is never contacted (HF_HUB_OFFLINE): the download dir is laid out like the hub
cache (models--org--name/{blobs,refs,snapshots}), which is what huggingface_hub reads."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from babelscope.checkpoints.downloads import download_size, use_download_dir
from babelscope.checkpoints.series import load_checkpoint, resolve_series
from babelscope.errors import BabelscopeError

REPO = "org/tiny-intermediate"


def _hub_layout(cache: Path, revisions: dict[str, Path]) -> None:
    """Put local checkpoint dirs into ``cache`` as revisions of REPO (blobs shared by hash)."""
    root = cache / f"models--{REPO.replace('/', '--')}"
    for rev, src in revisions.items():
        commit = hashlib.sha1(rev.encode()).hexdigest()
        snap = root / "snapshots" / commit
        snap.mkdir(parents=True)
        for f in src.iterdir():
            data = f.read_bytes()
            blob = root / "blobs" / hashlib.sha256(data).hexdigest()
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(data)
            os.symlink(os.path.relpath(blob, snap), snap / f.name)
        (root / "refs").mkdir(exist_ok=True)
        (root / "refs" / rev).write_text(commit)


@pytest.fixture
def hub_series(tmp_path, tiny_series_dir):
    cache = tmp_path / "run" / "cache" / "hub"
    _hub_layout(cache, {f"global_step{i}": tiny_series_dir / f"step-{i}" for i in (1, 2)})
    series = resolve_series(
        {"repo": REPO, "revisions": ["global_step1", "global_step2"]}, check=False
    )
    return series, cache


def test_revisions_load_from_the_run_cache_and_are_removed(hub_series, tiny_series_dir):
    series, cache = hub_series
    use_download_dir(series, cache)
    before = download_size(cache)
    ref = load_checkpoint(resolve_series(tiny_series_dir).get(1))
    got = load_checkpoint(series.get(1))
    assert got.fingerprint == ref.fingerprint and got.step == 1
    snaps = list(cache.glob("models--*/snapshots/*"))
    assert len(snaps) == 1, "global_step1 is deleted once loaded"
    # The blobs global_step1 shared with global_step2 (tokenizer files) stay.
    assert 0 < download_size(cache) < before
    assert load_checkpoint(series.get(2)).fingerprint != ref.fingerprint
    assert download_size(cache) == 0 and not list(cache.glob("models--*/snapshots/*"))


def test_kept_revisions_stay(hub_series):
    series, cache = hub_series
    use_download_dir(series, cache, keep=True)
    before = download_size(cache)
    for step in (1, 2):
        load_checkpoint(series.get(step))
    assert download_size(cache) == before and len(list(cache.glob("models--*/snapshots/*"))) == 2


def test_a_revision_missing_offline_is_one_line(hub_series):
    series, cache = hub_series
    use_download_dir(series, cache)
    shutil.rmtree(next(cache.glob("models--*/snapshots")))
    with pytest.raises(BabelscopeError, match=r"cannot download step 1 .*global_step1.* into"):
        load_checkpoint(series.get(1))


def test_local_checkpoints_are_not_touched(tiny_series_dir, tmp_path):
    series = resolve_series(tiny_series_dir)
    use_download_dir(series, tmp_path / "hub")
    assert all(c.download_dir is None for c in series.checkpoints)
    load_checkpoint(series.get(0))
    assert not (tmp_path / "hub").exists()
