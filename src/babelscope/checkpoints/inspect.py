"""Integrity of a checkpoint series: fingerprints, perplexity per language, flags.

Flags (a ``;``-separated string, empty when the checkpoint is fine):

- ``duplicate_of:<step>``: same weight fingerprint as an earlier step, or identical logits
  on a probe batch (a copy saved in another format or dtype);
- ``broken:nonfinite``: NaN or infinite weights;
- ``broken:unreadable``: the weight files cannot be loaded (truncated, zero bytes, a
  garbage header, a ``.bin`` that safe loading refuses) — a flag, not a crash;
- ``broken:perplexity``: mean log-perplexity more than ``log(ratio)`` above both unflagged
  neighbours (the last checkpoint is compared with the one before it; the first is never
  flagged this way, since early checkpoints are expected to be worse).

These are the defects known in the public BLOOM series (a byte copy of step 10k at 500k,
a corrupted 600k). Later stages take :func:`usable` steps: flagged ones are left out
unless ``include_flagged``, and it says so.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from babelscope.checkpoints.series import (
    CheckpointSeries,
    CheckpointUnreadable,
    LoadedCheckpoint,
    load_checkpoint,
    resolve_series,
)
from babelscope.errors import BabelscopeError
from babelscope.executor.base import serial_or
from babelscope.progress import info, make_progress

#: A fixed held-out text per language, used when the user gives no data.
DEFAULT_TEXTS: dict[str, list[str]] = {
    "eng": ["The river runs quietly through the old town.", "Every morning she reads the newspaper at the window.",
            "The children were playing in the garden until it got dark."],
    "spa": ["El río pasa tranquilo por el pueblo viejo.", "Cada mañana lee el periódico junto a la ventana.",
            "Los niños jugaron en el jardín hasta que oscureció."],
    "fra": ["La rivière traverse tranquillement la vieille ville.", "Chaque matin, elle lit le journal à la fenêtre.",
            "Les enfants ont joué dans le jardin jusqu'à la nuit."],
    "deu": ["Der Fluss fließt ruhig durch die alte Stadt.", "Jeden Morgen liest sie die Zeitung am Fenster.",
            "Die Kinder spielten im Garten, bis es dunkel wurde."],
    "rus": ["Река спокойно течёт через старый город.", "Каждое утро она читает газету у окна.",
            "Дети играли в саду, пока не стемнело."],
    "zho": ["河水静静地流过古老的小镇。", "她每天早上在窗边看报纸。", "孩子们在花园里玩到天黑。"],
    "ara": ["يجري النهر بهدوء عبر المدينة القديمة.", "كل صباح تقرأ الجريدة بجانب النافذة.",
            "لعب الأطفال في الحديقة حتى حلول الظلام."],
    "hin": ["नदी पुराने शहर से शांति से बहती है।", "वह हर सुबह खिड़की के पास अख़बार पढ़ती है।",
            "बच्चे अंधेरा होने तक बगीचे में खेलते रहे।"],
}  # fmt: skip


def _batches(n: int, size: int) -> list[range]:
    return [range(i, min(i + size, n)) for i in range(0, n, size)]


#: Float32 logits held at once while the loss is computed: a chunk of positions times the
#: vocabulary (a 262k vocabulary gives chunks of 256 positions), never a whole padded batch.
LOGIT_CHUNK_BYTES = 256 << 20


def _pad_batch(seqs: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    t = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), t), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for j, s in enumerate(seqs):
        ids[j, : len(s)], mask[j, : len(s)] = torch.tensor(s), 1
    return ids, mask


def _encode_batches(tok: Any, texts: Sequence[str], batch_size: int) -> list[list[list[int]]]:
    enc = tok(list(texts), add_special_tokens=True, truncation=True, max_length=256)["input_ids"]
    return [[enc[i] for i in rows] for rows in _batches(len(enc), batch_size)]


def _chunked_nll(head: Any, hidden: torch.Tensor, target: torch.Tensor, chunk: int) -> float:
    """Summed cross-entropy of ``target`` (N,) under the logits of ``hidden`` (N, d), computed
    ``chunk`` positions at a time through the output head (float32 logits per chunk)."""
    total = 0.0
    for i in range(0, len(target), chunk):
        logits = head.logits(hidden[i : i + chunk], final=True).float()
        total += float(F.cross_entropy(logits, target[i : i + chunk], reduction="sum"))
    return total


@torch.inference_mode()
def _nll_batches(
    loaded: LoadedCheckpoint, batches: Sequence[list[list[int]]], on_batch: Any = None
) -> tuple[float, int]:
    """Sum of next-token negative log-likelihoods over ``batches`` of token ids, and the
    number of predicted tokens. The base model gives the final hidden states; only the
    real (non-padding) positions go through the output head, in chunks."""
    from babelscope.activations.families import get_module, output_head

    model, tok = loaded.model, loaded.tokenizer
    dev = next(model.parameters()).device
    base = get_module(model, loaded.family.base)
    head = output_head(model)
    vocab = int(getattr(head.head, "out_features", 0) or head.head.weight.shape[0])
    chunk = max(16, LOGIT_CHUNK_BYTES // (4 * vocab))
    pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    total, count = 0.0, 0
    for seqs in batches:
        ids, mask = _pad_batch(seqs, pad)
        ids, mask = ids.to(dev), mask.to(dev)
        hidden = base(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
        keep = mask[:, 1:].bool()
        total += _chunked_nll(head, hidden[:, :-1][keep], ids[:, 1:][keep], chunk)
        count += int(keep.sum())
        if on_batch is not None:
            on_batch()
    return total, count


def _nll(loaded: LoadedCheckpoint, texts: Sequence[str], batch_size: int = 16) -> tuple[float, int]:
    """Sum of next-token negative log-likelihoods and the number of predicted tokens."""
    return _nll_batches(loaded, _encode_batches(loaded.tokenizer, texts, batch_size))


def perplexity_row(
    loaded: LoadedCheckpoint, texts_by_lang: Mapping[str, Sequence[str]], batch_size: int = 16
) -> dict[str, Any]:
    """``ppl_<lang>``, ``ppl`` (geometric mean over languages), ``_logppl``, and the timing:
    ``tokens`` (forwarded, padding excluded), ``seconds``, ``tokens_per_s``. A progress bar
    runs over the checkpoint's batches."""
    batches = {
        lang: _encode_batches(loaded.tokenizer, texts, batch_size)
        for lang, texts in texts_by_lang.items()
    }
    n_batches = sum(len(b) for b in batches.values())
    row: dict[str, Any] = {}
    logs, tokens = [], 0
    t0 = time.perf_counter()
    with make_progress(transient=True) as prog:
        task = prog.add_task(f"step {loaded.step}: perplexity", total=n_batches)
        for lang, lang_batches in batches.items():
            nll, n = _nll_batches(loaded, lang_batches, lambda: prog.advance(task))
            tokens += sum(len(s) for b in lang_batches for s in b)
            lp = nll / max(n, 1)
            row[f"ppl_{lang}"] = math.exp(lp) if math.isfinite(lp) and lp < 700 else math.inf
            logs.append(lp if math.isfinite(lp) else math.inf)
    seconds = time.perf_counter() - t0
    info(f"[dim]step {loaded.step}: {tokens:,} tokens in {seconds:.1f} s "
         f"({tokens / max(seconds, 1e-9):,.0f} tokens/s)[/dim]")  # fmt: skip
    row["ppl"] = (
        math.exp(float(np.mean(logs)))
        if all(math.isfinite(x) and x < 700 for x in logs)
        else math.inf
    )
    row["_logppl"] = float(np.mean(logs))
    row.update(tokens=tokens, seconds=round(seconds, 3),
               tokens_per_s=round(tokens / seconds, 1) if seconds > 0 else math.inf)  # fmt: skip
    return row


@torch.inference_mode()
def _probe_hash(loaded: LoadedCheckpoint, texts: Sequence[str]) -> str:
    """Hash of the logits on a small probe batch (one text at a time: no padding involved)."""
    h = hashlib.blake2b(digest_size=12)
    dev = next(loaded.model.parameters()).device
    for text in texts:
        ids = loaded.tokenizer(text, return_tensors="pt")["input_ids"].to(dev)
        logits = loaded.model(input_ids=ids).logits.float().cpu().numpy()
        h.update(logits.tobytes())
    return h.hexdigest()


def _nonfinite(model: torch.nn.Module) -> bool:
    return any(
        not bool(torch.isfinite(p).all()) for p in model.parameters() if p.is_floating_point()
    )


def inspect_checkpoint(
    ckpt: Any, job: tuple[dict[str, Any], list[str], str, str]
) -> dict[str, Any]:
    """One checkpoint's row (before flags): fingerprint, perplexities, the probe batch's
    logits hash; an unreadable checkpoint gives a row flagged later, not a crash. ``job``
    is ``(texts_by_lang, probe texts, device, dtype)``. The executor's unit of work."""
    texts_by_lang, probe, device, dtype = job
    try:
        loaded = load_checkpoint(ckpt, dtype=dtype, device=device)
    except CheckpointUnreadable as e:
        # A flag, not a crash: the caller reports flagged steps (and why, in "error").
        return _unreadable_row(ckpt.step, list(texts_by_lang)) | {"error": str(e)}
    row: dict[str, Any] = {
        "step": ckpt.step,
        "params": loaded.params,
        "fingerprint": loaded.fingerprint,
    }
    row.update(perplexity_row(loaded, texts_by_lang))
    row["_nonfinite"] = _nonfinite(loaded.model)
    row["_probe"] = _probe_hash(loaded, probe)
    return row


def inspect_series(
    series: CheckpointSeries | Any,
    texts_by_lang: Mapping[str, Sequence[str]] | None = None,
    *,
    device: str = "cpu",
    dtype: str = "fp32",
    ratio: float = 10.0,
    executor: Any = None,
) -> pd.DataFrame:
    """One row per checkpoint: step, params, fingerprint, ``ppl_<lang>``, ``ppl``, flags.

    Checkpoints are loaded one at a time, or as tasks of ``executor``
    (:mod:`babelscope.executor`). ``ppl`` is the geometric mean over languages.
    """
    if not isinstance(series, CheckpointSeries):
        series = resolve_series(series)
    texts_by_lang = dict(texts_by_lang or DEFAULT_TEXTS)
    empty = [lang for lang, t in texts_by_lang.items() if not t]
    if not texts_by_lang or empty:
        raise BabelscopeError(
            f"no held-out text for language(s) {empty}: give at least one sentence per language"
        )
    probe = [t[0] for t in texts_by_lang.values()][:4]
    # One unit per checkpoint (inspect_checkpoint), run by the executor (serial by default).
    rows = serial_or(executor).map(
        inspect_checkpoint, series.checkpoints, (texts_by_lang, probe, device, dtype),
        desc=f"inspecting {series.name}",
    )  # fmt: skip
    df = pd.DataFrame(rows)
    df["flags"] = _flags(df, ratio)
    extra = [c for c in ("_logppl", "_probe", "_nonfinite", "_unreadable") if c in df]
    return df.drop(columns=extra).reset_index(drop=True)


def _unreadable_row(step: int, langs: list[str]) -> dict[str, Any]:
    """The row of a checkpoint whose weights cannot be loaded (flagged broken:unreadable)."""
    return {"step": step, "params": 0, "fingerprint": f"unreadable:{step}",
            **{f"ppl_{lang}": math.inf for lang in langs}, "ppl": math.inf,
            "_logppl": math.inf, "_nonfinite": False, "_probe": f"unreadable:{step}",
            "_unreadable": True}  # fmt: skip


def _flags(df: pd.DataFrame, ratio: float) -> list[str]:
    flags: list[list[str]] = [[] for _ in range(len(df))]
    first_fp: dict[str, int] = {}
    first_probe: dict[str, int] = {}
    for i, r in df.iterrows():
        gone = r.get("_unreadable")  # True, or NaN for the rows of loaded checkpoints
        if isinstance(gone, bool | np.bool_) and gone:
            flags[i].append("broken:unreadable")
            continue
        if r["_nonfinite"]:
            flags[i].append("broken:nonfinite")
        dup = first_fp.get(r["fingerprint"], first_probe.get(r["_probe"]))
        if dup is not None:
            flags[i].append(f"duplicate_of:{dup}")
        first_fp.setdefault(r["fingerprint"], int(r["step"]))
        first_probe.setdefault(r["_probe"], int(r["step"]))
    # Perplexity outliers, against neighbours that are themselves fine so far.
    ok = [i for i in range(len(df)) if not flags[i]]
    margin = math.log(ratio)
    for k, i in enumerate(ok):
        lp = df.loc[i, "_logppl"]
        prev = df.loc[ok[k - 1], "_logppl"] if k > 0 else None
        nxt = df.loc[ok[k + 1], "_logppl"] if k + 1 < len(ok) else None
        if prev is None:
            continue  # the first checkpoint may be much worse: that is training
        if lp - prev > margin and (nxt is None or lp - nxt > margin):
            flags[i].append("broken:perplexity")
    return [";".join(f) for f in flags]


def usable(df: pd.DataFrame, include_flagged: bool = False) -> list[int]:
    """The steps later stages should use; flagged steps are left out (and reported) unless asked."""
    flagged = df[df["flags"].astype(str) != ""]
    if include_flagged:
        # Duplicates and perplexity outliers can be analysed; NaN or unreadable weights
        # cannot (every statistic would be NaN or the load would fail): say so, not crash.
        hopeless = flagged[
            flagged["flags"].astype(str).str.contains("broken:nonfinite|broken:unreadable")
        ]
        if len(hopeless):
            raise BabelscopeError(
                f"include_flagged keeps {_describe(hopeless)}, which cannot be analysed: "
                "remove it from the series or set include_flagged = false"
            )
        if len(flagged):
            info(f"including flagged checkpoints as asked: {_describe(flagged)}")
        return [int(s) for s in df["step"]]
    if len(flagged):
        info(
            f"skipping flagged checkpoints (use include_flagged to keep them): {_describe(flagged)}"
        )
    return [int(s) for s in df.loc[df["flags"].astype(str) == "", "step"]]


def _describe(flagged: pd.DataFrame) -> str:
    return ", ".join(f"step {int(r.step)} ({r.flags})" for r in flagged.itertuples())


def apply_inspection(series: Any, run_dir: str | Path, include_flagged: bool = False) -> Any:
    """Leave out the checkpoints ``<run_dir>/checkpoints.json`` flags (duplicate, broken).

    That file is written by ``babelscope run`` and by ``babelscope checkpoints inspect
    SERIES --out RUN/checkpoints.json``. Without it the series is returned as it is, with
    a hint: the standalone analysis commands then cannot know which steps are defective.
    """
    import json

    from babelscope.checkpoints.series import CheckpointSeries

    path = Path(run_dir) / "checkpoints.json"
    if not path.exists():
        info(
            f"no {path}: flagged checkpoints cannot be skipped; run `babelscope checkpoints "
            f"inspect SERIES --out {path}` first to flag duplicates and broken steps"
        )
        return series
    rows = json.loads(path.read_text()).get("checkpoints", [])
    df = pd.DataFrame(rows)
    if df.empty or "step" not in df:
        return series
    df["flags"] = df.get("flags", "").apply(
        lambda f: ";".join(f) if isinstance(f, list) else (f or "")
    )
    df = df[df["step"].isin(series.steps)]
    keep = set(usable(df, include_flagged=include_flagged)) | (set(series.steps) - set(df["step"]))
    return CheckpointSeries(series.name, [c for c in series.checkpoints if c.step in keep])
