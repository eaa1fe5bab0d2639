"""Checkpoints of a pre-training run, written atomically, with the state needed to resume.

Layout of ``<out>/checkpoints/step-<N>/``::

    config.json  generation_config.json  model.safetensors     (Hugging Face model)
    tokenizer.json  tokenizer_config.json                      (Hugging Face tokenizer)
    provenance.json        step, run id, data hash, tokens seen, held-out losses
    training_state/        resume only; the HF loaders never look here
        state.pt           optimizer, scheduler, torch RNG
        state.json         step, tokens seen, sampler (data position) state
        log.parquet        the training log up to this step

A checkpoint is built in ``<out>/.staging/`` and renamed into ``checkpoints/`` as its last
act, so ``checkpoints/`` only ever holds complete checkpoints; a killed run leaves at
most a staging directory, which the next run removes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from babelscope.io import write_json_atomic

CHECKPOINTS_DIR = "checkpoints"
STAGING_DIR = ".staging"
STATE_DIR = "training_state"
STEP_RE = re.compile(r"^step-(\d+)$")
# Files a complete checkpoint must hold (tokenizer.json: we always save a fast tokenizer).
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "provenance.json")


def checkpoint_dir(out_dir: Path, step: int) -> Path:
    return Path(out_dir) / CHECKPOINTS_DIR / f"step-{step}"


def list_checkpoints(out_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run, ``(step, path)`` ascending by step."""
    root = Path(out_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = STEP_RE.match(p.name)
        if m and p.is_dir() and all((p / f).is_file() for f in REQUIRED_FILES):
            found.append((int(m.group(1)), p))
    return sorted(found)


def has_training_state(path: Path) -> bool:
    return (path / STATE_DIR / "state.pt").is_file() and (path / STATE_DIR / "state.json").is_file()


def clean_staging(out_dir: Path) -> None:
    """Remove half-written checkpoints left by a killed run."""
    shutil.rmtree(Path(out_dir) / STAGING_DIR, ignore_errors=True)


def save_checkpoint(
    out_dir: Path,
    step: int,
    model: Any,
    tokenizer: Any,
    *,
    provenance: dict[str, Any],
    torch_state: dict[str, Any],
    json_state: dict[str, Any],
    log: pd.DataFrame,
) -> Path:
    """Write ``checkpoints/step-<step>`` atomically (staging directory, then rename)."""
    out_dir = Path(out_dir)
    staging = out_dir / STAGING_DIR
    staging.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"step-{step}.", dir=staging))
    try:
        with quiet_hf_progress():
            model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        state = tmp / STATE_DIR
        state.mkdir()
        torch.save(torch_state, state / "state.pt")
        (state / "state.json").write_text(json.dumps(json_state, sort_keys=True))
        log.to_parquet(state / "log.parquet", index=False)
        # Written last inside the staging dir: REQUIRED_FILES makes a torn copy visible.
        write_json_atomic(tmp / "provenance.json", provenance)
        final = checkpoint_dir(out_dir, step)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():  # a stale copy of the same step (e.g. after --force was interrupted)
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


@contextlib.contextmanager
def quiet_hf_progress() -> Iterator[None]:
    """Silence transformers' per-file "Writing model shards" / "Loading weights" bars."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def load_training_state(path: Path) -> tuple[dict[str, Any], dict[str, Any], pd.DataFrame]:
    """``(torch_state, json_state, log)`` saved beside a checkpoint's weights."""
    state = Path(path) / STATE_DIR
    torch_state = torch.load(state / "state.pt", map_location="cpu", weights_only=False)
    json_state = json.loads((state / "state.json").read_text())
    log = pd.read_parquet(state / "log.parquet")
    return torch_state, json_state, log


def drop_training_state(path: Path) -> None:
    """Remove the resume state of an older checkpoint (the weights stay)."""
    shutil.rmtree(Path(path) / STATE_DIR, ignore_errors=True)
