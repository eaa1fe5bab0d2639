"""Checkpoints of a pre-training run, written atomically, with the state needed to resume.

Layout of ``<out>/checkpoints/step-<N>/``::

    config.json  generation_config.json  model.safetensors     (Hugging Face model)
    tokenizer.json  tokenizer_config.json                      (Hugging Face tokenizer)
    provenance.json        step, run id, data hash, tokens seen, held-out losses
    training_state/        resume only; the HF loaders never look here
        tensors.safetensors  optimizer moments, torch RNG (tensors only: no code can run)
        tensors.json       the structure around them: param groups, scheduler, scalars
        state.json         step, tokens seen, sampler (data position) state
        log.parquet        the training log up to this step

A checkpoint is built in ``<out>/.staging/`` and renamed into ``checkpoints/`` as its last
act, so ``checkpoints/`` only ever holds complete checkpoints; a killed run leaves at
most a staging directory, which the next run removes.

Resume state is data, never a pickle: a planted ``state.pt`` is not executed (an older
run's ``state.pt`` is read with ``weights_only=True``, which unpickles tensors only).
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

from babelscope.errors import BabelscopeError
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


TENSORS_FILE = "tensors.safetensors"
STRUCTURE_FILE = "tensors.json"
LEGACY_FILE = "state.pt"  # written by babelscope < 0.2: read with weights_only=True


def has_training_state(path: Path) -> bool:
    state = Path(path) / STATE_DIR
    if not (state / "state.json").is_file():
        return False
    return ((state / TENSORS_FILE).is_file() and (state / STRUCTURE_FILE).is_file()) or (
        state / LEGACY_FILE
    ).is_file()


def _split_tensors(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """``obj`` as JSON with each tensor replaced by a reference into ``tensors``.

    Dicts with non-string keys (the optimizer's ``{param_id: state}``) and tuples are
    tagged so that :func:`_join_tensors` gives back exactly what was saved.
    """
    if isinstance(obj, torch.Tensor):
        name = f"t{len(tensors)}"
        # Own, contiguous storage: safetensors refuses shared or strided views.
        tensors[name] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": name}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj) and "__items__" not in obj:
            return {k: _split_tensors(v, tensors) for k, v in obj.items()}
        return {"__items__": [[k, _split_tensors(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_split_tensors(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_split_tensors(v, tensors) for v in obj]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"resume state holds a {type(obj).__name__}: only tensors and plain data")


def _join_tensors(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]]
        if set(obj) == {"__items__"}:
            return {k: _join_tensors(v, tensors) for k, v in obj["__items__"]}
        if set(obj) == {"__tuple__"}:
            return tuple(_join_tensors(v, tensors) for v in obj["__tuple__"])
        return {k: _join_tensors(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_join_tensors(v, tensors) for v in obj]
    return obj


def save_tensor_state(state: dict[str, Any], directory: Path) -> None:
    """Write ``state`` (tensors in nested dicts/lists) as safetensors + JSON, no pickle."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    structure = _split_tensors(state, tensors)
    save_file(tensors, str(Path(directory) / TENSORS_FILE))
    (Path(directory) / STRUCTURE_FILE).write_text(json.dumps(structure))


def load_tensor_state(directory: Path) -> dict[str, Any]:
    """What :func:`save_tensor_state` wrote (or a legacy ``state.pt``, tensors only)."""
    from safetensors.torch import load_file

    directory = Path(directory)
    if not (directory / TENSORS_FILE).is_file() and (directory / LEGACY_FILE).is_file():
        # weights_only=True: the unpickler builds tensors and plain containers, nothing else.
        return torch.load(directory / LEGACY_FILE, map_location="cpu", weights_only=True)
    tensors = load_file(str(directory / TENSORS_FILE), device="cpu")
    return _join_tensors(json.loads((directory / STRUCTURE_FILE).read_text()), tensors)


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
        save_tensor_state(torch_state, state)
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
    """``(torch_state, json_state, log)`` saved beside a checkpoint's weights.

    A damaged or foreign state (truncated file, a pickle where tensors belong, edited JSON)
    is a one-line error that says how to start over, never a traceback or executed code.
    """
    state = Path(path) / STATE_DIR
    try:
        torch_state = load_tensor_state(state)
        json_state = json.loads((state / "state.json").read_text())
        log = pd.read_parquet(state / "log.parquet")
    except Exception as e:  # noqa: BLE001 - safetensors, JSON, pyarrow and unpickler errors alike
        first = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise BabelscopeError(
            f"cannot resume from {path}: its training state is damaged or not babelscope's "
            f"({type(e).__name__}: {first}); rerun with --force to train from scratch"
        ) from None
    if not isinstance(torch_state, dict) or not {"optimizer", "scheduler", "torch_rng"} <= set(
        torch_state
    ):
        raise BabelscopeError(
            f"cannot resume from {path}: its training state lacks optimizer, scheduler or RNG "
            "state; rerun with --force to train from scratch"
        )
    return torch_state, json_state, log


def drop_training_state(path: Path) -> None:
    """Remove the resume state of an older checkpoint (the weights stay)."""
    shutil.rmtree(Path(path) / STATE_DIR, ignore_errors=True)
