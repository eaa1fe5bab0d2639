"""Hub revisions downloaded into a per-run cache, removed once loaded unless kept.

``from_pretrained(repo, revision=...)`` keeps every revision it fetches in the user's hub
cache: one whole model per checkpoint, for every checkpoint of a series. A run instead
gives its hub checkpoints a ``download_dir`` (``<run>/cache/hub``, :func:`use_download_dir`):
:func:`fetch` downloads a revision there (hub cache layout, ``huggingface_hub``), the model
is loaded from it, and :func:`release` deletes that revision again unless
``keep_download`` (``[model] keep_downloads``). A loaded model no longer reads its files,
so the directory holds at most the checkpoints being loaded at that moment; each stage that
loads a checkpoint downloads it again (``babelscope plan`` counts these downloads).
Blobs shared with a revision still there (identical tokenizer files) are kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from babelscope.errors import BabelscopeError

#: What a checkpoint needs: config, weights (safetensors first), tokenizer files.
NEEDED = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken"]
BIN_WEIGHTS = ["pytorch_model*.bin"]


def use_download_dir(series: Any, directory: str | Path, keep: bool = False) -> None:
    """Send the series' hub revisions through ``directory`` (local checkpoints unchanged)."""
    for c in series.checkpoints:
        if c.revision and not c.is_local:
            c.download_dir, c.keep_download = str(directory), bool(keep)


def fetch(ckpt: Any) -> Path | None:
    """The local snapshot of ``ckpt``'s revision in its ``download_dir`` (downloaded when
    missing), or None when the checkpoint is not a hub revision with a download dir."""
    if not (ckpt.revision and ckpt.download_dir) or ckpt.is_local:
        return None
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    from babelscope.checkpoints.series import _has_weights

    kw = dict(revision=ckpt.revision, cache_dir=ckpt.download_dir)
    try:
        path = Path(snapshot_download(ckpt.source, allow_patterns=NEEDED, **kw))
        if not _has_weights(path):  # an older repository: PyTorch .bin shards only
            path = Path(snapshot_download(ckpt.source, allow_patterns=BIN_WEIGHTS, **kw))
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BabelscopeError(
            f"cannot download {ckpt.label} into {ckpt.download_dir}: {first[:200]}; "
            "check the repository, the revision and the network (or HF_HUB_OFFLINE)"
        ) from None
    return path


def release(ckpt: Any, path: Path | None) -> int:
    """Delete the downloaded revision at ``path`` from its download dir unless the checkpoint
    keeps it; return the bytes freed (0 when kept or not downloaded)."""
    if path is None or ckpt.keep_download:
        return 0
    from huggingface_hub import scan_cache_dir

    info = scan_cache_dir(ckpt.download_dir)
    commits = [
        rev.commit_hash
        for repo in info.repos
        for rev in repo.revisions
        if Path(rev.snapshot_path).resolve() == Path(path).resolve()
    ]
    if not commits:
        return 0
    strategy = info.delete_revisions(*commits)
    strategy.execute()
    return int(strategy.expected_freed_size)


def download_size(directory: str | Path) -> int:
    """Bytes held by a download dir (0 when it does not exist)."""
    d = Path(directory)
    if not d.is_dir():
        return 0
    from huggingface_hub import scan_cache_dir

    return int(scan_cache_dir(d).size_on_disk)
