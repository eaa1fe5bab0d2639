"""Concept expert neurons: AP of every unit per checkpoint x concept x language.

For one language every concept is labelled over the same pool of sentences, so each
checkpoint needs one extraction per language; the AP of every unit for every concept
then comes from one ranking per unit (:func:`babelscope.analysis.average_precision.score_units`),
one layer at a time.

Outputs under ``<out>/results/``:

``ap/step-<N>/<lang>.npz``
    The full arrays of one (checkpoint, language), all its concepts: ``concepts`` (C,),
    ``layers``, ``widths``, ``ap``/``on_p50``/``on_p90``/``off_mean`` (C, total units) in
    ``store_dtype``, ``n_pos``/``n_neg`` (C,), and the ``key`` that produced it.
    ``ap/step-<N>/complete.json`` marks a finished checkpoint: it is not recomputed.
``experts.parquet``
    The top ``top_k_store`` units (over the whole model) per (step, concept, lang):
    step, concept, lang, layer, unit, rank, ap, on_p50, on_p90, off_mean, n_pos, n_neg.
``experts_skipped.parquet``
    (concept, lang) pairs left out, with their counts and the reason.

A unit's model-wide flat index is ``offsets[i] + unit`` for the i-th layer of ``layers``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from babelscope.analysis.pools import SKIPPED_FILE, Pool, prepare_pools
from babelscope.errors import BabelscopeError

if TYPE_CHECKING:
    from babelscope.checkpoints.series import CheckpointSeries

EXPERTS_FILE = "experts.parquet"
AP_DIR = "ap"
COMPLETE = "complete.json"
STAT_NAMES = ("ap", "on_p50", "on_p90", "off_mean")
EXPERT_COLUMNS = ["step", "concept", "lang", "layer", "unit", "rank", "ap", "ap_half0", "ap_half1",
                  "on_p50", "on_p90", "off_mean", "n_pos", "n_neg"]  # fmt: skip
HALF_NAMES = ("ap_half0", "ap_half1")


class ExpertSettings(BaseModel):
    """Settings of the experts stage (``[experts]`` in the run config)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["mlp", "mlp_pre", "residual", "linear_all"] = Field(
        "mlp", description="Which units: see babelscope.activations.neurons"
    )
    pooling: Literal["mean", "max", "last"] = Field("mean", description="Pooling over tokens")
    top_k_store: int = Field(
        500, ge=1, description="Experts kept per (step, concept, lang) in experts.parquet"
    )
    languages: list[str] | None = Field(None, description="Languages to score (None: all labelled)")
    concepts: list[str] | None = Field(
        None, description="Concepts to score (None: all in concepts.parquet)"
    )
    min_positives: int = Field(3, ge=1, description="Skip a (concept, lang) with fewer positives")
    min_negatives: int = Field(1, ge=1, description="Skip a (concept, lang) with fewer negatives")
    batch_size: int = Field(32, ge=1)
    max_length: int | None = Field(
        None, ge=1, description="Truncate texts (default: model context)"
    )
    store_dtype: Literal["float32", "float16"] = Field(
        "float32", description="dtype of the full per-unit arrays in the shards"
    )
    cache: bool = Field(
        True,
        description="Keep pooled activations in the on-disk activation cache (resumes inside "
        "a checkpoint); false: extract each pool in memory, score it, write nothing",
    )
    cache_max_gb: float | None = Field(
        None,
        gt=0,
        description="Cache a pool only while the activation cache stays under this size (GB); "
        "pools that do not fit are scored from memory",
    )
    cache_dtype: Literal["float32", "float16", "bfloat16"] = Field(
        "float32",
        description="Precision activations are kept in, cached or in memory (half the disk and "
        "memory; AP differences measured in docs/plan.md)",
    )
    keep_cache: bool = Field(
        True,
        description="Keep a checkpoint's cache entries once it is scored (false: remove them, "
        "so the cache holds one checkpoint at most)",
    )
    threads: int | None = Field(
        None, ge=1, description="Threads for AP (default: usable cores, at most 8)"
    )
    split_seed: int = Field(
        0, description="Seed of the split of every pool into the two halves (select / score)"
    )
    pools: Literal["matched", "unmatched"] = Field(
        "matched",
        description="Score each concept on its matched pool (negatives matched to the positives' "
        "source and length) or on the language's whole unmatched pool",
    )
    compare_unmatched: bool = Field(
        True,
        description="At the last checkpoint, also score the unmatched pools (with their null) "
        "to show what matching changes",
    )


# -- unit scores -------------------------------------------------------------------------


def top_indices(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest ``values`` in descending order, ties by index; NaN last."""
    v = np.where(np.isnan(values), -np.inf, np.asarray(values, dtype=np.float64))
    k = int(min(max(k, 0), len(v)))
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    if k < len(v):
        # Threshold by partition, then keep ties in index order: stable and O(n).
        kth = np.partition(v, len(v) - k)[len(v) - k]
        cand = np.flatnonzero(v >= kth)
    else:
        cand = np.arange(len(v))
    order = np.lexsort((cand, -v[cand]))
    return cand[order][:k].astype(np.int64)


@dataclass
class UnitScores:
    """AP and activation statistics of every unit for one (step, concept, lang).

    Arrays are ``(total_units,)`` over the flat unit index (layers in ``layers`` order).
    """

    step: int
    concept: str
    lang: str
    layers: list[int]
    widths: list[int]
    ap: np.ndarray
    on_p50: np.ndarray
    on_p90: np.ndarray
    off_mean: np.ndarray

    @property
    def offsets(self) -> np.ndarray:
        """``offsets[i]`` = flat index of unit 0 of the i-th layer; last entry = total units."""
        return np.concatenate([[0], np.cumsum(self.widths)]).astype(np.int64)

    def _layer_pos(self, layer: int) -> int:
        if layer not in self.layers:
            raise BabelscopeError(
                f"no layer {layer} in the expert scores: layers are {self.layers}"
            )
        return self.layers.index(layer)

    def flat(self, layer: int, unit: int) -> int:
        """The model-wide flat index of ``(layer, unit)``."""
        i = self._layer_pos(layer)
        if not 0 <= unit < self.widths[i]:
            raise BabelscopeError(
                f"unit {unit} out of range for layer {layer} (width {self.widths[i]})"
            )
        return int(self.offsets[i] + unit)

    def unit_of(self, flat: int) -> tuple[int, int]:
        """``(layer, unit)`` of a flat index."""
        off = self.offsets
        i = int(np.searchsorted(off, flat, side="right") - 1)
        return int(self.layers[i]), int(flat - off[i])

    def top(self, k: int, layer: int | None = None) -> list[tuple[int, int]]:
        """``(layer, unit)`` of the ``k`` highest-AP units (whole model or one layer); ties by unit order."""
        if layer is None:
            return [self.unit_of(int(f)) for f in top_indices(self.ap, k)]
        i = self._layer_pos(layer)
        off = self.offsets
        idx = top_indices(self.ap[off[i] : off[i + 1]], k)
        return [(int(layer), int(u)) for u in idx]


def step_dir(out_dir: Path, step: int, variant: str = "main") -> Path:
    """Where a checkpoint's shards and null are: the study's scoring (``main``, whatever its
    pools) in the step's folder, the unmatched comparison in a subfolder."""
    d = Path(out_dir) / "results" / AP_DIR / f"step-{int(step)}"
    return d if variant in ("main", "matched") else d / variant


def shard_path(out_dir: Path, step: int, lang: str, variant: str = "main") -> Path:
    return step_dir(out_dir, step, variant) / f"{lang}.npz"


def read_shard(path: Path) -> dict[str, Any]:
    """A (step, lang) shard as a dict of arrays (``concepts`` as a list of str)."""
    with np.load(path, allow_pickle=False) as z:
        d = {k: z[k] for k in z.files}
    d["concepts"] = [str(c) for c in d["concepts"]]
    d["layers"] = [int(x) for x in d["layers"]]
    d["widths"] = [int(x) for x in d["widths"]]
    d["key"] = str(d["key"])
    return d


def load_unit_scores(out_dir: str | Path, step: int, concept: str, lang: str) -> UnitScores:
    """The full per-unit scores of (step, concept, lang) from the experts shards."""
    path = shard_path(Path(out_dir), step, lang)
    if not path.exists():
        have = sorted(p.name for p in (Path(out_dir) / "results" / AP_DIR).glob("step-*"))
        raise BabelscopeError(
            f"no expert scores for step {step}, language {lang} under {Path(out_dir)} "
            f"(found: {', '.join(have) or 'none'}): run `babelscope experts` first"
        )
    d = read_shard(path)
    if concept not in d["concepts"]:
        raise BabelscopeError(
            f"concept '{concept}' has no expert scores in {lang} at step {step} "
            f"(skipped or not labelled; see {SKIPPED_FILE}): choose one of {', '.join(d['concepts'][:20])}"
        )
    c = d["concepts"].index(concept)
    return UnitScores(
        step=int(step), concept=concept, lang=lang, layers=d["layers"], widths=d["widths"],
        **{k: d[k][c].astype(np.float32) for k in STAT_NAMES},
    )  # fmt: skip


# -- scoring one pool ----------------------------------------------------------------------


def score_pool(
    get_layer: Any, layers: list[int], labels: np.ndarray, *, threads: int | None = None
) -> tuple[dict[str, np.ndarray], list[int]]:
    """AP and statistics of every unit of every layer for the label columns of ``labels``.

    ``get_layer(layer)`` returns ``(n_sentences, width)``; layers are read one at a time.
    Returns ``{stat: (C, total units) float64}`` and the widths.
    """
    from babelscope.analysis.member_scores import score_members

    y = np.asarray(labels, dtype=bool)
    return score_members(get_layer, layers, y, np.ones_like(y), threads=threads)


def _pooled(
    loaded: Any, pool: Pool, settings: ExpertSettings, cache_dir: Path | None, device: str
) -> Any:
    """Pooled activations of a pool: from the activation cache when there is one and
    ``settings.cache`` (within ``cache_max_gb``), else extracted in memory with nothing
    written; held in ``cache_dtype`` precision either way, so a result does not depend on
    which pools fit the budget. AP is then computed layer by layer (:func:`score_pool`)."""
    common = dict(kind=settings.kind, pooling=settings.pooling, batch_size=settings.batch_size,
                  max_length=settings.max_length, store_dtype=settings.cache_dtype)  # fmt: skip
    if cache_dir is not None and settings.cache:
        from babelscope.activations.cache import cached_pooled

        budget = None if settings.cache_max_gb is None else int(settings.cache_max_gb * 1e9)
        return cached_pooled(loaded, pool.texts, data_key=pool.data_key, cache_dir=cache_dir,
                             max_cache_bytes=budget, **common)  # fmt: skip
    from babelscope.activations.extract import extract_pooled

    return extract_pooled(loaded.model, loaded.tokenizer, pool.texts, device=device, **common)


def save_shard(
    out_dir: Path,
    step: int,
    lang: str,
    stats: dict[str, np.ndarray],
    *,
    concepts: list[str],
    layers: list[int],
    widths: list[int],
    n_pos: np.ndarray,
    n_neg: np.ndarray,
    key: str = "",
    fingerprint: str = "",
    store_dtype: str = "float32",
    extra: dict[str, Any] | None = None,
    variant: str = "matched",
) -> Path:
    """Write the (step, lang) shard atomically: ``stats`` are ``(C, total units)`` arrays."""
    from babelscope.io import atomic_path

    if int(sum(widths)) != stats["ap"].shape[1] or len(concepts) != stats["ap"].shape[0]:
        raise ValueError("save_shard: arrays do not match concepts x units")
    path = shard_path(out_dir, step, lang, variant)
    arrays = {k: np.asarray(stats[k]).astype(store_dtype) for k in STAT_NAMES}
    meta = dict(concepts=np.array(concepts, dtype=str), layers=np.array(layers, dtype=np.int64),
                widths=np.array(widths, dtype=np.int64), n_pos=np.asarray(n_pos, dtype=np.int64),
                n_neg=np.asarray(n_neg, dtype=np.int64), key=np.array(key), fingerprint=np.array(fingerprint),
                **{k: np.asarray(v) for k, v in (extra or {}).items()})  # fmt: skip
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays, **meta)
    return path


def mark_complete(
    out_dir: Path, step: int, languages: list[str], *, key: str = "", fingerprint: str = ""
) -> Path:
    """Mark checkpoint ``step`` as finished (its shards for ``languages`` are written)."""
    from babelscope.io import write_json_atomic

    marker = Path(out_dir) / "results" / AP_DIR / f"step-{int(step)}" / COMPLETE
    return write_json_atomic(
        marker,
        {"key": key, "fingerprint": fingerprint, "step": int(step), "languages": list(languages)},
    )


def _shard_ok(path: Path, key: str) -> bool:
    if not path.exists():
        return False
    try:
        with np.load(path, allow_pickle=False) as z:
            return str(z["key"]) == key
    except Exception:  # noqa: BLE001 - an unreadable shard is recomputed
        return False


def _step_key(
    ckpt: Any, pools: list[Pool], settings: ExpertSettings, dtype: str, null: dict[str, Any]
) -> str:
    from babelscope.checkpoints.series import checkpoint_signature
    from babelscope.io import settings_hash

    # Where activations are kept changes no number (their precision, cache_dtype, does).
    s = settings.model_dump(exclude={"top_k_store", "threads", "batch_size", "cache",
                                     "cache_max_gb", "keep_cache"})  # fmt: skip
    ident = checkpoint_signature(ckpt)  # new weights at the same path: recompute
    return settings_hash({"ckpt": ident, "pools": [(p.data_key, p.label_key, p.concepts) for p in pools],
                          "settings": s, "dtype": dtype, "null": null})  # fmt: skip


def _drop_stale_comparisons(out_dir: Path, keep_step: int | None) -> None:
    """Remove unmatched comparisons other than the one this run makes (at ``keep_step``):
    the align stage must never show a comparison left by another run."""
    import shutil

    for d in (Path(out_dir) / "results" / AP_DIR).glob("step-*/unmatched"):
        if keep_step is None or d.parent.name != f"step-{keep_step}":
            shutil.rmtree(d, ignore_errors=True)


def top_table(step: int, lang: str, shard: dict[str, Any], top_k: int) -> pd.DataFrame:
    """The top ``top_k`` units per concept of one shard, as rows of experts.parquet."""
    offsets = np.concatenate([[0], np.cumsum(shard["widths"])])
    layers = np.asarray(shard["layers"])
    frames = []
    for c, concept in enumerate(shard["concepts"]):
        idx = top_indices(shard["ap"][c], top_k)
        li = np.searchsorted(offsets, idx, side="right") - 1
        frames.append(pd.DataFrame({
            "step": int(step), "concept": concept, "lang": lang, "layer": layers[li].astype(np.int64),
            "unit": (idx - offsets[li]).astype(np.int64), "rank": np.arange(1, len(idx) + 1, dtype=np.int64),
            **{k: shard[k][c][idx].astype(np.float64) for k in STAT_NAMES},
            **{k: (shard[k][c][idx].astype(np.float64) if k in shard else np.nan) for k in HALF_NAMES},
            "n_pos": int(shard["n_pos"][c]), "n_neg": int(shard["n_neg"][c]),
        }))  # fmt: skip
    if not frames:
        return pd.DataFrame(columns=EXPERT_COLUMNS)
    return pd.concat(frames, ignore_index=True)[EXPERT_COLUMNS]


def run_experts(
    series: CheckpointSeries,
    data_dir: str | Path,
    out_dir: str | Path,
    settings: ExpertSettings | None = None,
    *,
    align: Any = None,
    cache_dir: str | Path | None = None,
    device: str = "cpu",
    dtype: str = "fp32",
    executor: Any = None,
) -> pd.DataFrame:
    """AP and statistics of every unit for every checkpoint x concept x language.

    Besides the in-sample AP on the whole pool, every shard holds the AP on each half of
    the pool (``ap_half0``/``ap_half1``, :mod:`babelscope.analysis.halves`), and every
    checkpoint gets the permutation null of the alignment measures (``null.npz``,
    :mod:`babelscope.analysis.alignment_null`) for the alignment settings ``align``
    (:class:`babelscope.analysis.alignment.AlignSettings`, default when None).
    Writes the shards, ``experts.parquet`` and ``experts_skipped.parquet`` (see the module
    doc) and returns the experts table. A checkpoint whose shards are complete (same
    checkpoint, data and settings) is not recomputed. Checkpoints are scored by
    ``executor`` (:mod:`babelscope.executor`; serial when None).
    """
    from babelscope.analysis.alignment import AlignSettings
    from babelscope.analysis.experts_step import ExpertsJob, experts_step
    from babelscope.executor.base import report_steps, serial_or
    from babelscope.io import provenance, write_parquet_atomic

    settings = settings or ExpertSettings()
    align = align or AlignSettings()
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    cache = Path(cache_dir) if cache_dir is not None else None
    if not series.checkpoints:
        raise BabelscopeError(f"series '{series.name}' has no checkpoints to score")
    pools, skipped, dhash = prepare_pools(data_dir, settings)
    scored = [p for p in pools if p.concepts]
    if not scored:
        raise BabelscopeError(
            "no (concept, language) pair has enough positives and negatives to score: "
            f"see the warning above; lower min_positives (now {settings.min_positives}) or add labelled text"
        )
    from babelscope.analysis.expert_scoring import _lexical, _scoring, same_items, split_for

    main = _scoring(scored, settings, align, "main")
    lexical = _lexical(series, data_dir, main.plan, out_dir)
    compare = None
    if settings.compare_unmatched and settings.pools == "matched":
        other, _, _ = prepare_pools(data_dir, settings, "unmatched", quiet=True)
        # the same languages and (concept, language) pairs as the matched scoring: the
        # comparison then differs by the matching alone
        compare = _scoring(same_items(other, scored), settings, align, "unmatched")
        compare.plan.split = split_for(lexical, compare.plan)
        compare.plan.settings = main.plan.settings
    halves, plan, null_pools = main.halves, main.plan, main.null_pools
    _drop_stale_comparisons(out_dir, int(series.checkpoints[-1].step) if compare else None)
    results = out_dir / "results"
    # One unit per checkpoint (experts_step), run by the executor (serial by default);
    # each writes its shards, null and marker, and keeps what an earlier run finished.
    job = ExpertsJob(out_dir, scored, halves, plan, null_pools, settings, align, cache,
                     device, dtype, compare=compare, last_step=int(series.checkpoints[-1].step))  # fmt: skip
    ckpts = series.checkpoints
    done = serial_or(executor).map(
        experts_step, ckpts, job, desc=f"experts: {len(ckpts)} checkpoints"
    )
    report_steps("experts", ckpts, done)
    fingerprints = {
        int(c.step): json.loads(d.path.read_text()).get("fingerprint", "")
        for c, d in zip(ckpts, done, strict=True)
    }

    frames = [
        top_table(
            ckpt.step,
            p.lang,
            read_shard(shard_path(out_dir, ckpt.step, p.lang)),
            settings.top_k_store,
        )
        for ckpt in series.checkpoints
        for p in scored
    ]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=EXPERT_COLUMNS)
    df = df.sort_values(["step", "concept", "lang", "rank"], ignore_index=True)
    meta = provenance(
        "experts", series=series.name, fingerprints=fingerprints, data_hash=dhash,
        settings=settings.model_dump(), languages=[p.lang for p in pools],
        steps=[int(c.step) for c in series.checkpoints],
        skipped=skipped.to_dict(orient="records"), null=plan.settings,
        halves="pools split in two by translation group, stratified by label (analysis/halves.py)",
    )  # fmt: skip
    write_parquet_atomic(skipped, results / SKIPPED_FILE, metadata=meta)
    write_parquet_atomic(df, results / EXPERTS_FILE, metadata=meta)
    return df
