"""The LID probe over a checkpoint series: one forward pass per checkpoint, the per-layer
probes of :mod:`babelscope.analysis.probe` in parallel, resumable per step, with provenance.

Writes ``results/probe.parquet`` (one row per step x layer x seed) and
``results/probe_confusion.parquet`` (confusion counts per step and layer).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from babelscope.errors import BabelscopeError
from babelscope.executor.base import Executor, StepDone, report_steps, serial_or

# babelscope.analysis.probe re-exports this module's names, so its own names are imported
# where they are used: a Ray worker that unpickles probe_step imports this module first.
if TYPE_CHECKING:
    from babelscope.analysis.probe import ProbeSettings
    from babelscope.checkpoints.series import CheckpointSeries

PROBE_FILE = "probe.parquet"
PARTIAL_DIR = ".probe"  # per-step results of an unfinished run, under results/
CONFUSION_FILE = "probe_confusion.parquet"


def select_sentences(
    corpus: pd.DataFrame, languages: Sequence[str], per_language: int, *, seed: int = 0
) -> pd.DataFrame:
    """Draw ``per_language`` sentences of every language, deterministically.

    Held-out sentences come first (text the model did not train on), then training ones;
    within each the order is a seeded shuffle of the ids, so the draw does not depend on
    the row order of the corpus file. A language with too few sentences is an error.
    """
    if len(languages) < 2:
        found = ", ".join(languages) or "none"
        raise BabelscopeError(
            f"a language probe needs at least two languages (found: {found}); add languages"
        )
    picked = []
    for lang in languages:
        g = corpus[corpus["lang"] == lang].sort_values("id")
        if len(g) < per_language:
            raise BabelscopeError(
                f"language {lang} has {len(g)} sentences; the probe asks for {per_language} per language: "
                "lower sentences_per_language (--sentences-per-language) or add text"
            )
        rng = np.random.default_rng([seed, int.from_bytes(lang.encode()[:8], "little")])
        order = rng.permutation(len(g))
        g = g.iloc[order]
        g = pd.concat([g[g["split"] == "heldout"], g[g["split"] != "heldout"]])
        picked.append(g.head(per_language))
    return pd.concat(picked, ignore_index=True)


def _tokens_per_sentence(settings: ProbeSettings) -> int | None:
    """How many tokens to keep per sentence at extraction.

    Enough that the train and test sides can each fill their share of tokens_per_language
    (with slack for short sentences); sampling all tokens would only cost memory.
    """
    if settings.tokens_per_sentence is not None:
        return settings.tokens_per_sentence
    if settings.tokens_per_language is None:
        return None
    return max(4, math.ceil(2 * settings.tokens_per_language / settings.sentences_per_language))


def _activations(
    model: Any, tokenizer: Any, texts: list[str], text_lang: np.ndarray, layers: list[int], settings: ProbeSettings,
) -> tuple[dict[int, np.ndarray], np.ndarray, np.ndarray, list[Any]]:  # fmt: skip
    """One forward pass over ``texts``: per layer the rows to probe, their language, sentence
    and token type(s) (the control task and the lexical baseline need them)."""
    from babelscope.activations.extract import context_length, extract_pooled, extract_token_samples

    # Never past the model's context: positions it was not trained on would be noise.
    limits = [n for n in (settings.max_length, context_length(model, tokenizer)) if n]
    max_length = min(limits) if limits else None
    common = dict(kind="residual", layers=layers, batch_size=settings.batch_size, max_length=max_length)  # fmt: skip
    if settings.level == "sentence":
        pooled = extract_pooled(model, tokenizer, texts, pooling="mean", **common)
        arrays = {layer: pooled.get(layer) for layer in layers}
        bags = [tokenizer(t, add_special_tokens=False)["input_ids"][:max_length] for t in texts]
        return arrays, text_lang, np.arange(len(texts)), bags
    samples = extract_token_samples(
        model, tokenizer, texts, tokens_per_text=_tokens_per_sentence(settings), seed=0, **common
    )
    sid = np.asarray(samples.sentence_index)
    arrays = {layer: samples.get(layer) for layer in layers}
    return arrays, text_lang[sid], sid, list(np.asarray(samples.token_id))


def _read_partial(
    path: Path, key: str, identity: dict[str, Any]
) -> tuple[pd.DataFrame, str] | None:
    """A finished checkpoint's rows if they were made by the same settings, data and checkpoint."""
    from babelscope.io import read_parquet_metadata

    if not path.exists():
        return None
    try:
        meta = read_parquet_metadata(path)
    except Exception:  # noqa: BLE001 - an unreadable partial is simply redone
        return None
    if meta.get("key") != key or meta.get("checkpoint") != identity:
        return None
    return pd.read_parquet(path), str(meta.get("fingerprint"))


@dataclass
class ProbeJob:
    """What every checkpoint's probe needs: sent to a worker once, not per checkpoint."""

    partial: Path  # results/.probe of the run
    texts: list[str]
    text_lang: np.ndarray
    settings: ProbeSettings
    key: str
    device: str
    dtype: str


def _identity(ckpt: Any, dtype: str) -> dict[str, Any]:
    """The weights' files and the dtype: new weights at the same path are new results
    (through JSON, as it is stored: tuples come back as lists)."""
    from babelscope.checkpoints.series import checkpoint_signature

    return json.loads(json.dumps({**checkpoint_signature(ckpt), "dtype": dtype}))


def probe_step(ckpt: Any, job: ProbeJob) -> StepDone:
    """Probe one checkpoint: ``results/.probe/step-N.parquet`` and its confusion counts,
    written atomically (a step already there for the same settings, data and weights is
    kept). The executor's unit of work; runs wherever the executor sends it."""
    from babelscope.analysis.probe import RESULT_COLUMNS, check_layers, probe_layers
    from babelscope.checkpoints.series import load_checkpoint
    from babelscope.io import write_parquet_atomic

    identity = _identity(ckpt, job.dtype)
    path = job.partial / f"step-{ckpt.step}.parquet"
    if _read_partial(path, job.key, identity) is not None:
        return StepDone(path)
    t0 = time.perf_counter()
    settings = job.settings
    loaded = load_checkpoint(ckpt, dtype=job.dtype, device=job.device)
    layers = check_layers(settings.layers, _n_residual_layers(loaded.model))
    arrays, row_lang, row_sid, types = _activations(
        loaded.model, loaded.tokenizer, job.texts, job.text_lang, layers, settings
    )
    del loaded.model  # free the weights before the probes fork their workers
    df = probe_layers(arrays, row_lang, row_sid, settings, token_types=types)
    df.insert(0, "step", int(ckpt.step))
    conf_rows = _confusion_rows(df, sorted(set(row_lang)))
    meta = {"key": job.key, "checkpoint": identity}
    write_parquet_atomic(
        conf_rows, job.partial / f"step-{ckpt.step}.confusion.parquet", metadata=meta
    )
    # The step's table last: its presence marks the step done.
    write_parquet_atomic(
        df[RESULT_COLUMNS], path, metadata={**meta, "fingerprint": loaded.fingerprint}
    )
    return StepDone(path, time.perf_counter() - t0)


def run_probe(
    series: CheckpointSeries,
    data_dir: str | Path,
    out_dir: str | Path,
    settings: ProbeSettings | None = None,
    *,
    device: str = "cpu",
    dtype: str = "fp32",
    executor: Executor | None = None,
) -> pd.DataFrame:
    """LID probes for every checkpoint of ``series``; writes ``out_dir/results/probe.parquet``.

    Per checkpoint (:func:`probe_step`, run by ``executor``, serial by default) one forward
    pass gives every requested residual layer; the per-layer probes run in parallel
    (``settings.n_jobs``, default all cores). Each finished checkpoint is saved under
    ``results/.probe/`` at once, so an interrupted run resumes where it stopped (a saved
    step is reused only for the same settings, data and checkpoint). Returns the combined
    frame (``RESULT_COLUMNS``), which carries provenance in its Parquet metadata.
    """
    from babelscope.analysis.probe import ProbeSettings
    from babelscope.corpora.corpus import data_hash, load_corpus
    from babelscope.io import provenance, settings_hash, write_parquet_atomic
    from babelscope.progress import warn

    settings = settings or ProbeSettings()
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if not series.checkpoints:
        raise BabelscopeError(f"series {series.name} has no checkpoints to probe")
    corpus = load_corpus(data_dir, languages=settings.languages)
    languages = list(settings.languages) if settings.languages else sorted(corpus["lang"].unique())
    chosen = select_sentences(corpus, languages, settings.sentences_per_language)
    dhash = data_hash(data_dir)
    key = settings_hash(
        {"settings": settings.result_key(), "data_hash": dhash, "ids": chosen["id"].tolist()}
    )
    results = out_dir / "results"
    partial = results / PARTIAL_DIR
    job = ProbeJob(partial, chosen["text"].tolist(), chosen["lang"].to_numpy(), settings, key,
                   device, dtype)  # fmt: skip
    ckpts = series.checkpoints
    done = serial_or(executor).map(probe_step, ckpts, job, desc=f"probe: {len(ckpts)} checkpoints")
    report_steps("probe", ckpts, done)
    frames: list[pd.DataFrame] = []
    fingerprints: dict[int, str] = {}
    for ckpt, d in zip(ckpts, done, strict=True):
        hit = _read_partial(d.path, key, _identity(ckpt, dtype))
        if hit is None:
            raise BabelscopeError(
                f"probe: the results of step {ckpt.step} at {d.path} are gone or changed while "
                "the stage ran (another process writing this run?): run again"
            )
        frames.append(hit[0])
        fingerprints[ckpt.step] = hit[1]

    combined = pd.concat(frames, ignore_index=True).sort_values(
        ["step", "layer", "seed"], ignore_index=True
    )
    if settings.level == "token" and settings.tokens_per_language is not None:
        test_share = 1.0 / settings.folds if settings.folds else settings.test_fraction
        want = settings.tokens_per_language - max(
            1, round(settings.tokens_per_language * test_share)
        )
        short = combined["n_train"] < want * len(languages)
        if short.any():
            warn(
                f"probe: fewer tokens than tokens_per_language={settings.tokens_per_language} for some "
                f"checkpoints/layers (smallest train set {int(combined['n_train'].min())}); sentences are short: "
                "raise sentences_per_language or tokens_per_sentence"
            )
    if not combined["converged"].all():
        warn(
            f"probe: {int((~combined['converged']).sum())} probe(s) hit max_iter={settings.max_iter}; raise max_iter"
        )
    meta = provenance(
        "probe", series=series.name, fingerprints=fingerprints, data_hash=dhash, settings=settings.model_dump(),
        languages=languages, sentences=len(chosen), key=key,
        control="type-level control task (Hewitt & Liang): a fixed random language per token type",
        lexical="the same probe on token identity (one-hot type; bag of types for sentence vectors)",
        interval="95% bootstrap over test sentences of the mean over seeds",
    )  # fmt: skip
    conf = [
        pd.read_parquet(partial / f"step-{c.step}.confusion.parquet")
        for c in ckpts
        if (partial / f"step-{c.step}.confusion.parquet").exists()
    ]
    if conf:
        write_parquet_atomic(
            pd.concat(conf, ignore_index=True), results / CONFUSION_FILE, metadata=meta
        )
    write_parquet_atomic(combined, results / PROBE_FILE, metadata=meta)
    return combined


def _confusion_rows(df: pd.DataFrame, langs: list[str]) -> pd.DataFrame:
    """Long-form confusion counts (step, layer, true, predicted, count), summed over seeds."""
    rows = []
    for (step, layer), g in df.groupby(["step", "layer"]):
        total = np.sum([np.asarray(c) for c in g["confusion"]], axis=0)
        for i, a in enumerate(langs):
            for j, b in enumerate(langs):
                rows.append(
                    dict(
                        step=int(step),
                        layer=int(layer),
                        true=a,
                        predicted=b,
                        count=int(total[i, j]),
                    )
                )
    return pd.DataFrame(rows)


def _n_residual_layers(model: Any) -> int:
    """Residual layers of ``model``: 0 (embedding output) .. L, so L + 1 of them."""
    from babelscope.activations.neurons import hook_points, layers_of

    return len(layers_of(hook_points(model, "residual")))
