"""Pre-train a small XGLM from scratch on the corpus, saving a checkpoint series.

``pretrain()`` is the whole stage: tokenizer, model, language-balanced batches, AdamW
with warm-up and cosine decay, held-out loss per language, checkpoints at step 0,
powers of two, every ``save_every`` steps and the last step, a Parquet training log
and a loss-curve figure. A run is named by the hash of its configuration and data;
an interrupted run continues with ``resume=True`` and ends with the same weights as
an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from babelscope.corpora.corpus import corpus_hash, load_corpus
from babelscope.errors import BabelscopeError
from babelscope.io import (
    provenance,
    read_parquet_metadata,
    settings_hash,
    write_json_atomic,
    write_parquet_atomic,
)
from babelscope.pretrain import checkpoint as ck
from babelscope.pretrain.config import PretrainConfig
from babelscope.pretrain.data import (
    LanguageSampler,
    check_training_text,
    encode_sentences,
    eval_batches,
    texts_by_language,
)
from babelscope.pretrain.tokenizer import BOS_ID, EOS_ID, PAD_ID, load_tokenizer, train_tokenizer
from babelscope.progress import console, info, quiet, warn

RUN_FILE = "run.json"
LOG_FILE = "train_log.parquet"
FIGURE_STEM = "figures/training_loss"
EVAL_BATCH = 16  # small: sentences are batched by length, so little padding


def heldout_column(lang: str) -> str:
    """Name of the log column holding the held-out loss of ``lang``."""
    return f"heldout_loss_{lang}"


def _lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warm-up to 1, then cosine decay to ``min_ratio`` at ``total``."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def build_model(config: PretrainConfig, vocab_size: int):
    """A randomly initialised ``XGLMForCausalLM`` of the configured size (seeded by the caller)."""
    from transformers import GenerationConfig, XGLMConfig, XGLMForCausalLM

    m = config.model
    hf_config = XGLMConfig(
        vocab_size=vocab_size,
        max_position_embeddings=config.data.seq_len,
        d_model=m.d_model,
        ffn_dim=m.ffn_dim,
        num_layers=m.num_layers,
        attention_heads=m.attention_heads,
        activation_function=m.activation_function,
        dropout=m.dropout,
        attention_dropout=m.attention_dropout,
        activation_dropout=0.0,
        init_std=m.init_std,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
        decoder_start_token_id=EOS_ID,
    )
    model = XGLMForCausalLM(hf_config)
    model.generation_config = GenerationConfig(
        bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID, decoder_start_token_id=EOS_ID
    )
    return model


def _load_model(path: Path):
    from transformers import XGLMForCausalLM

    with ck.quiet_hf_progress():
        return XGLMForCausalLM.from_pretrained(str(path), dtype=torch.float32)


@torch.no_grad()
def heldout_losses(
    model: Any, batches: dict[str, list[tuple[torch.Tensor, torch.Tensor]]]
) -> dict[str, float]:
    """Mean next-token loss (nats per token) on each language's held-out sentences."""
    was_training = model.training
    model.eval()
    out = {}
    for lang, lang_batches in batches.items():
        total, count = 0.0, 0
        for ids, mask in lang_batches:
            logits = (
                model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1].float()
            )
            target = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
            nll = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]),
                target.reshape(-1),
                ignore_index=-100,
                reduction="sum",
            )
            total += float(nll)
            count += int((target != -100).sum())
        out[lang] = total / max(1, count)
    model.train(was_training)
    return out


def _run_identity(config: PretrainConfig, dhash: str) -> str:
    return settings_hash({"config": config.model_dump(), "data_hash": dhash})


def _clear_run(out_dir: Path) -> None:
    """Remove what a pre-training run wrote: only our own names, never the whole directory.

    In ``checkpoints/`` only ``step-N`` entries go, so a user's other files there survive.
    """
    ck.clean_staging(out_dir)
    root = out_dir / ck.CHECKPOINTS_DIR
    if root.is_dir():
        for p in root.iterdir():
            if ck.STEP_RE.match(p.name):
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        with contextlib.suppress(OSError):
            root.rmdir()  # only if now empty
    for name in (RUN_FILE, LOG_FILE, FIGURE_STEM + ".png", FIGURE_STEM + ".svg"):
        (out_dir / name).unlink(missing_ok=True)


def _prepare_out_dir(out_dir: Path, run_id: str, resume: bool, force: bool, last_step: int) -> str:
    """Decide what to do with ``out_dir``: ``"fresh"``, ``"resume"`` or ``"done"``."""
    ck.clean_staging(out_dir)
    run_file = out_dir / RUN_FILE
    existing = ck.list_checkpoints(out_dir)
    if not existing:
        # No complete checkpoint (at most a run.json of a run killed before step 0): nothing to keep.
        if resume:
            info(f"nothing to resume in {out_dir}: starting a fresh run")
        _clear_run(out_dir)
        return "fresh"
    if force:
        info(f"--force: removing the previous run in {out_dir}")
        _clear_run(out_dir)
        return "fresh"
    try:
        old_id = _read_json(run_file).get("run_id") if run_file.exists() else None
    except ValueError:
        old_id = None
    if old_id != run_id:
        raise BabelscopeError(
            f"{out_dir} holds a different pre-training run (its configuration or data differ)"
            f"{'; --resume continues only the same run' if resume else ''}: "
            "choose another --out, or pass --force to replace it"
        )
    steps = [s for s, _ in existing]
    if last_step in steps:
        return "done"
    if resume:
        return "resume"
    raise BabelscopeError(
        f"{out_dir} holds an unfinished run of this configuration (last checkpoint step-{steps[-1]}): "
        "pass --resume to continue it or --force to start over"
    )


def _read_json(path: Path) -> dict[str, Any]:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(str(e)) from e


def native_bf16() -> bool:
    """Whether the CPU computes bf16 natively (AVX512-BF16 or AMX); read from /proc/cpuinfo."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


def _use_bf16(setting: bool | str) -> bool:
    return native_bf16() if setting == "auto" else bool(setting)


class _Progress:
    """A rich progress bar with the running loss and time left (quiet off a terminal)."""

    def __init__(self, total: int, start: int) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.enabled = not quiet() and console.is_terminal
        self.progress = Progress(
            TextColumn("pretrain"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            console=console,
            disable=not self.enabled,
        )
        self.task = self.progress.add_task("pretrain", total=total, completed=start, loss="-")

    def __enter__(self) -> _Progress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def update(self, step: int, loss: float) -> None:
        self.progress.update(self.task, completed=step, loss=f"{loss:.3f}")


def pretrain(
    config: PretrainConfig,
    data_dir: Path,
    out_dir: Path,
    *,
    resume: bool = False,
    force: bool = False,
    _on_step: Callable[[int], None] | None = None,
) -> list[Path]:
    """Train the model series; return the checkpoint directories ascending by step.

    ``resume`` continues an interrupted run of the same configuration and data from its
    latest complete checkpoint; ``force`` replaces whatever run ``out_dir`` holds. A
    finished run of the same configuration is not trained again. ``_on_step`` is a test
    hook called after every optimisation step (raise in it to simulate a crash).
    """
    previous = torch.get_num_threads()
    try:
        if config.train.threads > 0:
            torch.set_num_threads(config.train.threads)
        return _pretrain(
            config, Path(data_dir), Path(out_dir), resume=resume, force=force, _on_step=_on_step
        )
    finally:
        # The thread count is process-wide: later stages get theirs back.
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


def _pretrain(
    config: PretrainConfig,
    data_dir: Path,
    out_dir: Path,
    *,
    resume: bool,
    force: bool,
    _on_step: Callable[[int], None] | None,
) -> list[Path]:
    """:func:`pretrain` with torch's thread count already set."""
    corpus = load_corpus(data_dir, config.languages)
    languages = list(config.languages) if config.languages else sorted(corpus["lang"].unique())
    train_texts = texts_by_language(corpus, "train", languages)
    check_training_text(train_texts, where=str(data_dir))
    heldout_texts = texts_by_language(corpus, "heldout", languages)
    no_heldout = [lang for lang, t in heldout_texts.items() if not t]
    if no_heldout:
        warn(f"no held-out text in {', '.join(no_heldout)}: no held-out loss for it in the log")
    dhash = corpus_hash(corpus)
    run_id = _run_identity(config, dhash)
    total = config.train.steps
    save_steps = config.checkpoint_steps()

    mode = _prepare_out_dir(out_dir, run_id, resume, force, total)
    if mode == "done":
        info(f"{out_dir} already holds the finished run {run_id}: nothing to train")
        _finish(out_dir, languages)
        return [p for _, p in ck.list_checkpoints(out_dir)]

    seq_len = config.data.seq_len
    base_prov = provenance("pretrain", run_id=run_id, data_dir=str(data_dir), data_hash=dhash,
                           languages=languages, config=config.model_dump())  # fmt: skip
    if mode == "fresh":
        write_json_atomic(out_dir / RUN_FILE, base_prov)
        info(f"training a byte-level BPE tokenizer ({config.tokenizer.vocab_size} tokens)")
        tokenizer = train_tokenizer(train_texts, config.tokenizer, model_max_length=seq_len)
        torch.manual_seed(config.seed)
        model = build_model(config, vocab_size=len(tokenizer))
        start, resume_from = 0, None
    else:
        resumable = [(s, p) for s, p in ck.list_checkpoints(out_dir) if ck.has_training_state(p)]
        if not resumable:
            raise BabelscopeError(
                f"{out_dir}: no checkpoint with training state to resume from; pass --force to start over"
            )
        start, resume_from = resumable[-1]
        info(f"resuming {run_id} from step {start}")
        tokenizer = load_tokenizer(resume_from)
        model = _load_model(resume_from)

    encode = partial(encode_sentences, tokenizer, max_len=seq_len)
    sampler = LanguageSampler(
        {lang: encode(t) for lang, t in train_texts.items()}, config.data.alpha, config.seed
    )
    evals = eval_batches(
        {lang: encode(t) for lang, t in heldout_texts.items() if t},
        config.data.eval_sentences,
        EVAL_BATCH,
    )

    t = config.train
    use_bf16 = _use_bf16(t.bf16)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        # No weight decay on biases, norms and embeddings (the usual GPT recipe).
        (no_decay if p.ndim < 2 or "embed" in name else decay).append(p)
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": t.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=t.lr,
        betas=(t.beta1, t.beta2),
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, partial(_lr_factor, warmup=t.warmup_steps, total=total, min_ratio=t.min_lr_ratio)
    )
    tokens_seen, elapsed_before = 0, 0.0
    log_rows: list[dict[str, Any]] = []
    if resume_from is not None:
        torch_state, json_state, log = ck.load_training_state(resume_from)
        optimizer.load_state_dict(torch_state["optimizer"])
        scheduler.load_state_dict(torch_state["scheduler"])
        torch.set_rng_state(torch_state["torch_rng"])
        sampler.set_state(json_state["sampler"])
        tokens_seen = int(json_state["tokens_seen"])
        elapsed_before = float(json_state.get("elapsed_s", 0.0))
        log_rows = log.to_dict("records")

    # One provenance record for the run; each checkpoint adds its step and losses.
    run_prov = {
        **base_prov,
        "language_probabilities": sampler.probs,
        "train_tokens": sampler.token_counts,
        "checkpoint_steps": save_steps,
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "bf16": use_bf16,
        "threads": torch.get_num_threads(),
    }

    def log_frame() -> pd.DataFrame:
        cols = ["step", "loss", "lr", "tokens_seen", "grad_norm", "elapsed_s"] + [
            heldout_column(lang) for lang in languages
        ]
        return (
            pd.DataFrame(log_rows)
            .reindex(columns=cols)
            .astype({"step": "int64", "tokens_seen": "int64"})
        )

    def save(step: int, heldout: dict[str, float]) -> None:
        prev = [p for s, p in ck.list_checkpoints(out_dir) if s < step and ck.has_training_state(p)]
        ck.save_checkpoint(
            out_dir, step, model, tokenizer,
            provenance={**run_prov, "step": step, "tokens_seen": tokens_seen, "heldout_loss": heldout},
            torch_state={"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                         "torch_rng": torch.get_rng_state()},
            json_state={"step": step, "tokens_seen": tokens_seen, "sampler": sampler.state(), "run_id": run_id,
                        "elapsed_s": elapsed()},
            log=log_frame(),
        )  # fmt: skip
        if config.checkpoints.keep_training_state == "last":
            for p in prev:
                ck.drop_training_state(p)

    def evaluate_row(step: int, row: dict[str, Any]) -> dict[str, float]:
        heldout = heldout_losses(model, evals)
        row.update({heldout_column(lang): v for lang, v in heldout.items()})
        return heldout

    t0 = time.monotonic()

    def elapsed() -> float:
        """Training seconds so far, across resumes (a log column: measured speed)."""
        return elapsed_before + time.monotonic() - t0

    if start == 0:
        row: dict[str, Any] = {"step": 0, "loss": np.nan, "lr": np.nan, "tokens_seen": 0, "grad_norm": np.nan,
                               "elapsed_s": 0.0}  # fmt: skip
        heldout = evaluate_row(0, row)
        log_rows.append(row)
        save(0, heldout)

    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16)
    model.train()
    t_loop, last_info = time.monotonic(), time.monotonic()
    with _Progress(total, start) as bar:
        for step in range(start + 1, total + 1):
            ids, _ = sampler.batch(config.data.batch_size, seq_len)
            lr = scheduler.get_last_lr()[0]
            with autocast:
                logits = model(input_ids=ids, use_cache=False).logits[:, :-1]
            loss = torch.nn.functional.cross_entropy(
                logits.float().reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1)
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
            optimizer.step()
            scheduler.step()
            tokens_seen += ids.numel()
            loss_value = loss.item()
            row = {"step": step, "loss": loss_value, "lr": lr, "tokens_seen": tokens_seen,
                   "grad_norm": float(grad_norm), "elapsed_s": elapsed()}  # fmt: skip
            heldout = None
            if step % config.checkpoints.eval_every == 0 or step in save_steps:
                heldout = evaluate_row(step, row)
            log_rows.append(row)
            if step in save_steps:
                save(step, heldout or {})
            bar.update(step, loss_value)
            if (
                not bar.enabled
                and not quiet()
                and (time.monotonic() - last_info > 30 or step == total)
            ):
                last_info = time.monotonic()
                rate = (step - start) / max(1e-9, last_info - t_loop)
                info(f"pretrain step {step}/{total} loss {loss_value:.3f} ({rate:.2f} steps/s)")
            if _on_step is not None:
                _on_step(step)

    _finish(out_dir, languages, run_prov)
    return [p for _, p in ck.list_checkpoints(out_dir)]


def _finish(out_dir: Path, languages: list[str], run_prov: dict[str, Any] | None = None) -> None:
    """Write the training log and loss-curve figure from the last checkpoint's state.

    Idempotent: a finished run whose log or figure went missing gets them back.
    """
    from babelscope.report.figures.training import plot_training_loss

    ck.clean_staging(out_dir)
    final = ck.list_checkpoints(out_dir)[-1][1]
    log_path = out_dir / LOG_FILE
    if run_prov is not None or not log_path.exists():
        if not ck.has_training_state(final):
            return
        _, _, log = ck.load_training_state(final)
        if run_prov is None:
            run_prov = _read_json(final / "provenance.json")
            for key in ("step", "tokens_seen", "heldout_loss"):
                run_prov.pop(key, None)
        write_parquet_atomic(log, log_path, metadata=run_prov)
    png = out_dir / (FIGURE_STEM + ".png")
    if not png.exists() or run_prov is not None:
        log = pd.read_parquet(log_path)
        plot_training_loss(log, out_dir / FIGURE_STEM, languages=languages,
                           title=f"pre-training ({read_parquet_metadata(log_path).get('run_id', '')})")  # fmt: skip
