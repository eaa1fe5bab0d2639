"""The representations stage: retrieval, CKA, margin and the logit lens per layer x checkpoint.

:func:`run_similarity` drives the per-layer measures of this package over a checkpoint
series. Per checkpoint one forward pass over the parallel items of every language
(:func:`babelscope.activations.extract.extract_token_samples`, residual stream, every
content token) gives both the mean-pooled sentence vectors (retrieval, CKA, margin) and
the token states the logit lens decodes. Each finished checkpoint is saved under
``results/.similarity/`` at once (resume); the combined tables are

- ``results/similarity.parquet``: ``step, layer, measure, value, chance, null_mean,
  null_p95, n_null, p_value, ci_low, ci_high, n_items, n_pairs`` with measures
  ``retrieval``, ``retrieval_centred``, ``cka``, ``margin``, ``margin_centred``,
  ``lens_own``, ``lens_pivot``, ``lens_other``, ``lens_shared``, ``lens_unseen``, and
  for a control language (``eng~x``, a cipher of English) ``retrieval_control`` and
  ``retrieval_centred_control``: retrieval between it and its original alone;
- ``results/similarity_lens.parquet``: ``step, layer, input_lang, target, mass, n``, the
  mean next-token mass of every input language on every token class;

both with provenance in their Parquet metadata.

**Parallel items**: ``align_id`` values present in every analysed language whose texts
are pairwise different (an untranslated string would be "retrieved" by its identical
copy), ``items`` of them drawn with a seed.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from babelscope.errors import BabelscopeError
from babelscope.executor.base import Executor, StepDone, report_steps, serial_or

if TYPE_CHECKING:
    from babelscope.checkpoints.series import CheckpointSeries

RESULT_COLUMNS = [
    "step", "layer", "measure", "value", "chance", "null_mean", "null_p95", "n_null", "p_value",
    "ci_low", "ci_high", "n_items", "n_pairs",
]  # fmt: skip
LENS_COLUMNS = ["step", "layer", "input_lang", "target", "mass", "n"]
SIMILARITY_FILE = "similarity.parquet"
LENS_FILE = "similarity_lens.parquet"
PARTIAL_DIR = ".similarity"


class SimilaritySettings(BaseModel):
    """Settings of the representations stage; the keys of the ``[similarity]`` config section."""

    model_config = ConfigDict(extra="forbid")

    languages: list[str] | None = Field(None, description="Languages (default: all in the corpus)")
    items: int = Field(
        48,
        ge=4,
        description="Parallel items (sentences per language) drawn from those in every language",
    )
    layers: list[int] | None = Field(None, description="Residual layers (default: all, 0..L)")
    pivot: str = Field("eng", description="The pivot language of the logit lens")
    lens: bool = Field(True, description="Run the logit lens (latent language per layer)")
    lens_tokens_per_sentence: int | None = Field(
        2, ge=1, description="Token positions decoded per sentence (None: all)"
    )
    token_min_count: int = Field(
        3, ge=1, description="Occurrences a token needs to belong to a language (or be shared)"
    )
    token_dominance: float = Field(
        0.8,
        gt=0.5,
        le=1.0,
        description="Share of a token's normalised frequency one language must hold",
    )
    token_text_chars: int = Field(
        200_000,
        ge=1000,
        description="Characters of training text per language that class the tokens",
    )
    n_permutations: int = Field(
        50, ge=1, description="Draws of every permutation null (smallest p: 1 / (draws + 1))"
    )
    n_boot: int = Field(1000, ge=100, description="Bootstrap resamples of every interval")
    batch_size: int = Field(32, ge=1)
    max_length: int | None = Field(128, ge=2, description="Tokens per sentence at most")
    seed: int = 0


def parallel_items(
    corpus: pd.DataFrame, languages: list[str], n_items: int, *, seed: int = 0
) -> pd.DataFrame:
    """The parallel texts, one column per language, one row per ``align_id`` (seeded draw).

    Only ``align_id`` values with a text in every language, all of them different, qualify.
    """
    par = corpus[corpus["align_id"].notna() & corpus["lang"].isin(languages)]
    par = par.sort_values("id").drop_duplicates(["align_id", "lang"])
    wide = par.pivot(index="align_id", columns="lang", values="text")
    missing = [lang for lang in languages if lang not in wide.columns]
    wide = wide.reindex(columns=languages).dropna()
    distinct = wide.nunique(axis=1) == len(languages)
    wide = wide[distinct].sort_index()
    if missing or len(wide) < 4:
        why = f"no parallel text in {', '.join(missing)}" if missing else f"{len(wide)} items"
        raise BabelscopeError(
            f"representations need parallel text (align_id) in every language: {why}; "
            "add parallel data (UDHR, Django strings, a parallel TSV) or drop those languages"
        )
    if len(wide) < n_items:
        from babelscope.progress import warn

        warn(f"similarity: only {len(wide)} parallel items in all languages (asked for {n_items})")
    rng = np.random.default_rng(seed)
    take = np.sort(rng.permutation(len(wide))[: min(n_items, len(wide))])
    return wide.iloc[take]


def _token_texts(corpus: pd.DataFrame, languages: list[str], chars: int) -> dict[str, list[str]]:
    """Per language, training sentences (in id order) up to ``chars`` characters."""
    out: dict[str, list[str]] = {}
    for lang in languages:
        g = corpus[(corpus["lang"] == lang) & (corpus["split"] != "heldout")].sort_values("id")
        texts = g["text"].tolist()
        cut = int(np.searchsorted(np.cumsum([len(t) for t in texts]), chars)) + 1
        out[lang] = texts[:cut]
    return out


def measure_checkpoint(
    model: Any, tokenizer: Any, items: pd.DataFrame, settings: SimilaritySettings,
    classes: Any, pairings: np.ndarray, step: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """Every measure of one checkpoint: (result rows, lens matrix rows)."""
    from babelscope.activations.extract import context_length, extract_token_samples
    from babelscope.activations.families import family_of, output_head
    from babelscope.analysis.representations.logit_lens import (
        lens_mass,
        lens_matrix,
        lens_positions,
        lens_summary,
        sentence_means,
    )  # fmt: skip
    from babelscope.analysis.representations.retrieval import pair_cosines, retrieval
    from babelscope.analysis.representations.similarity import cka, margin
    from babelscope.progress import track

    languages = list(items.columns)
    n_lang, n = len(languages), len(items)
    texts = [t for lang in languages for t in items[lang].tolist()]  # language-major
    limits = [x for x in (settings.max_length, context_length(model, tokenizer)) if x]
    samples = extract_token_samples(
        model, tokenizer, texts, kind="residual", tokens_per_text=None, layers=settings.layers,
        batch_size=settings.batch_size, max_length=min(limits) if limits else None,
    )  # fmt: skip
    sid = samples.sentence_index
    lang_index = np.repeat(np.arange(n_lang), n)
    final = family_of(model).num_layers(model.config)
    if settings.lens:
        head = output_head(model)
        picked = lens_positions(sid, settings.lens_tokens_per_sentence, settings.seed)
    common = dict(n_boot=settings.n_boot, seed=settings.seed)
    rows, lens_rows = [], []
    for layer in track(samples.layers, f"similarity: step {step}, layers", transient=True):
        x = samples.get(layer)
        pooled = sentence_means(x, sid, len(texts)).reshape(n_lang, n, -1)
        raw, cen = pair_cosines(pooled), pair_cosines(pooled, centred=True)
        found = {
            "retrieval": retrieval(pooled, pairings=pairings, cos=raw, **common),
            "retrieval_centred": retrieval(pooled, pairings=pairings, cos=cen, **common),
            "cka": cka(pooled, n_permutations=settings.n_permutations, **common),
            "margin": margin(pooled, pairings=pairings, cos=raw, **common),
            "margin_centred": margin(pooled, pairings=pairings, cos=cen, **common),
        }
        rows += [{"layer": layer, "measure": k, **v.row()} for k, v in found.items()]
        for ctrl, orig in _controls(languages):  # a language and its cipher: a known answer
            for k in ("retrieval", "retrieval_centred"):
                sub = found[k].subset_row(orig, ctrl, pairings, **common)
                rows.append({"layer": layer, "measure": f"{k}_control", **sub})
        if settings.lens:
            mass = lens_mass(head, {layer: x[picked]}, final, classes)[layer]
            per_sentence = sentence_means(mass, sid[picked], len(texts))
            for r in lens_summary(
                per_sentence, lang_index, classes, settings.pivot,
                n_permutations=settings.n_permutations, **common,
            ):  # fmt: skip
                rows.append({"layer": layer, **r})
            lens_rows += [
                {"layer": layer, **r} for r in lens_matrix(per_sentence, lang_index, classes)
            ]
    df = pd.DataFrame(rows)
    df.insert(0, "step", int(step))
    lens = pd.DataFrame(lens_rows, columns=LENS_COLUMNS[1:])
    lens.insert(0, "step", int(step))
    return df[RESULT_COLUMNS], lens[LENS_COLUMNS]


def _controls(languages: list[str]) -> list[tuple[int, int]]:
    """(control, original) indices of every control language whose original is analysed."""
    from babelscope.languages import control_original, is_control

    out = []
    for i, lang in enumerate(languages):
        orig = control_original(lang) if is_control(lang) else None
        if orig in languages:
            out.append((i, languages.index(orig)))
    return out


def _read_partial(paths: tuple[Path, Path], key: str, identity: dict[str, Any]):
    from babelscope.io import read_parquet_metadata

    if not all(p.exists() for p in paths):
        return None
    try:
        metas = [read_parquet_metadata(p) for p in paths]
    except Exception:  # noqa: BLE001 - an unreadable partial is simply redone
        return None
    if any(m.get("key") != key or m.get("checkpoint") != identity for m in metas):
        return None
    return pd.read_parquet(paths[0]), pd.read_parquet(paths[1]), str(metas[0].get("fingerprint"))


@dataclass
class SimilarityJob:
    """What every checkpoint's measures need: sent to a worker once."""

    partial: Path  # results/.similarity of the run
    items: pd.DataFrame
    settings: SimilaritySettings
    pairings: np.ndarray
    token_texts: dict[str, list[str]] | None  # the text that classes tokens (lens only)
    key: str
    device: str
    dtype: str


# Token classes per (settings key, tokenizer, vocabulary): a series has one tokenizer, so a
# process computes them once, not once per checkpoint.
_CLASSES: dict[tuple[str, str, int], Any] = {}


def _token_classes(loaded: Any, job: SimilarityJob) -> Any:
    from babelscope.analysis.representations.logit_lens import token_languages
    from babelscope.io import sha256_bytes

    tok = loaded.tokenizer
    backend = getattr(tok, "backend_tokenizer", None)  # fast tokenizers: vocabulary and merges
    spec = backend.to_str() if backend is not None else json.dumps(sorted(tok.get_vocab().items()))
    vocab = int(loaded.model.get_output_embeddings().weight.shape[0])
    cache = (job.key, sha256_bytes(spec.encode()), vocab)
    if cache not in _CLASSES:
        s = job.settings
        _CLASSES[cache] = token_languages(
            tok, job.token_texts, vocab, min_count=s.token_min_count, dominance=s.token_dominance
        )
    return _CLASSES[cache]


def _paths(job: SimilarityJob, step: int) -> tuple[Path, Path]:
    return job.partial / f"step-{step}.parquet", job.partial / f"step-{step}.lens.parquet"


def _identity(ckpt: Any, dtype: str) -> dict[str, Any]:
    from babelscope.checkpoints.series import checkpoint_signature

    return json.loads(json.dumps({**checkpoint_signature(ckpt), "dtype": dtype}))


def similarity_step(ckpt: Any, job: SimilarityJob) -> StepDone:
    """Every measure of one checkpoint, written atomically under ``results/.similarity/``
    (a step already there for the same settings, data and weights is kept). The
    executor's unit of work; runs wherever the executor sends it."""
    from babelscope.checkpoints.series import load_checkpoint
    from babelscope.io import write_parquet_atomic

    identity = _identity(ckpt, job.dtype)
    paths = _paths(job, ckpt.step)
    if _read_partial(paths, job.key, identity) is not None:
        return StepDone(paths[0])
    t0 = time.perf_counter()
    loaded = load_checkpoint(ckpt, dtype=job.dtype, device=job.device)
    classes = _token_classes(loaded, job) if job.settings.lens else None
    df, lens = measure_checkpoint(
        loaded.model, loaded.tokenizer, job.items, job.settings, classes, job.pairings, ckpt.step
    )
    meta = {"key": job.key, "checkpoint": identity, "fingerprint": loaded.fingerprint,
            "tokens_per_class": _tokens_per_class(classes)}  # fmt: skip
    write_parquet_atomic(lens, paths[1], metadata=meta)
    write_parquet_atomic(df, paths[0], metadata=meta)  # last: its presence marks the step done
    return StepDone(paths[0], time.perf_counter() - t0)


def _tokens_per_class(classes: Any) -> dict[str, int] | None:
    if classes is None:
        return None
    return {lang: int((classes.label == i).sum()) for i, lang in enumerate(classes.classes)}


def run_similarity(
    series: CheckpointSeries,
    data_dir: str | Path,
    out_dir: str | Path,
    settings: SimilaritySettings | None = None,
    *,
    device: str = "cpu",
    dtype: str = "fp32",
    executor: Executor | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All representation measures for every checkpoint; writes ``out_dir/results/similarity*.parquet``.

    One :func:`similarity_step` per checkpoint, run by ``executor`` (serial by default).
    Resumable per checkpoint (a saved step is reused for the same settings, data and
    weights). Returns the result table and the lens matrix.
    """
    from babelscope.analysis.representations.retrieval import random_pairings
    from babelscope.corpora.corpus import data_hash, load_corpus
    from babelscope.io import provenance, read_parquet_metadata, settings_hash, write_parquet_atomic

    settings = settings or SimilaritySettings()
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if not series.checkpoints:
        raise BabelscopeError(f"series {series.name} has no checkpoints to analyse")
    corpus = load_corpus(data_dir, languages=settings.languages)
    languages = list(settings.languages) if settings.languages else sorted(corpus["lang"].unique())
    if settings.lens and settings.pivot not in languages:
        raise BabelscopeError(
            f"the logit lens pivot {settings.pivot} is not among the languages ({', '.join(languages)}): "
            "set similarity.pivot to one of them, or lens = false"
        )
    items = parallel_items(corpus, languages, settings.items, seed=settings.seed)
    dhash = data_hash(data_dir)
    key = settings_hash(
        {
            "settings": settings.model_dump(mode="json"),
            "data_hash": dhash,
            "items": list(items.index),
        }
    )
    n_pairs = len(languages) * (len(languages) - 1)
    pairings = random_pairings(settings.n_permutations, n_pairs, len(items), settings.seed)
    token_texts = (
        _token_texts(corpus, languages, settings.token_text_chars) if settings.lens else None
    )
    job = SimilarityJob(out_dir / "results" / PARTIAL_DIR, items, settings, pairings, token_texts,
                        key, device, dtype)  # fmt: skip
    ckpts = series.checkpoints
    done = serial_or(executor).map(
        similarity_step, ckpts, job, desc=f"similarity: {len(ckpts)} checkpoints"
    )
    report_steps("similarity", ckpts, done)
    frames, lens_frames, fingerprints = [], [], {}
    for ckpt in ckpts:
        hit = _read_partial(_paths(job, ckpt.step), key, _identity(ckpt, dtype))
        if hit is None:
            raise BabelscopeError(
                f"similarity: the results of step {ckpt.step} are gone or changed while the "
                "stage ran (another process writing this run?): run again"
            )
        frames.append(hit[0]), lens_frames.append(hit[1])
        fingerprints[ckpt.step] = hit[2]
    combined = pd.concat(frames, ignore_index=True).sort_values(["step", "layer", "measure"], ignore_index=True)  # fmt: skip
    lens_all = pd.concat(lens_frames, ignore_index=True)
    token_info = read_parquet_metadata(_paths(job, ckpts[0].step)[0]).get("tokens_per_class")
    meta = provenance(
        "similarity", series=series.name, fingerprints=fingerprints, data_hash=dhash,
        settings=settings.model_dump(mode="json"), languages=languages, items=list(items.index),
        tokens_per_class=token_info, key=key,
    )  # fmt: skip
    results = out_dir / "results"
    write_parquet_atomic(combined, results / SIMILARITY_FILE, metadata=meta)
    write_parquet_atomic(lens_all, results / LENS_FILE, metadata=meta)
    return combined, lens_all


def summary(df: pd.DataFrame, steps: list[int] | None = None) -> pd.DataFrame:
    """Per measure and layer, ``value [ci_low, ci_high]`` at some checkpoints (default: the
    first and the last) beside the last one's chance and null 95th percentile."""
    if steps is None:
        steps = sorted({int(df["step"].min()), int(df["step"].max())})
    rows = []
    for (measure, layer), g in df.groupby(["measure", "layer"], sort=True):
        g = g.set_index("step")
        row: dict[str, Any] = {"measure": measure, "layer": int(layer)}
        for s in steps:
            if s in g.index:
                r = g.loc[s]
                row[f"step {s}"] = f"{r['value']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
        last = g.loc[max(s for s in steps if s in g.index)]
        row["chance"] = round(float(last["chance"]), 4)
        row["null p95"] = round(float(last["null_p95"]), 4)
        row["p"] = round(float(last["p_value"]), 4)
        rows.append(row)
    return pd.DataFrame(rows)
