"""Cross-lingual alignment of concept experts, per checkpoint x layer (and whole model).

E_K(c, l) is the set of the K units of highest AP for concept c in language l (ties by
unit order). Per checkpoint and scope (each layer, and ``all`` = the whole model), over
every concept labelled in at least two languages:

``overlap``      |E(c,a) ∩ E(c,b)| / K, unordered pairs a < b.     chance K / units
``jaccard``      |∩| / |∪| of the same sets.                       chance K / (2 units - K)
``transfer_ap``  mean AP on (c, b) of E(c, a), ordered pairs a != b. chance positive rate of (c, b)
``self_ap``      mean AP on (c, a) of E(c, a), the ceiling of transfer. chance positive rate of (c, a)
``crosslingual`` units in E(c, l) for at least m languages, per concept.
                 chance: the exact expectation if every E(c, l) were an independent uniform
                 random K-subset, ``units * P(Binomial(L_c, K / units) >= m)`` (binomial).

Values are averaged over all (concept, pair) items (``n_pairs``) or concepts
(``n_concepts``); the chance is averaged the same way. Outputs in ``<out>/results/``:
``alignment.parquet`` (long form), ``alignment_overlap.parquet`` (language x language
matrices per step and scope) and ``alignment_trajectories.parquet`` (AP of the strongest
cross-lingual units of the last checkpoint, at every checkpoint and in every language).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from babelscope.analysis.experts import AP_DIR, COMPLETE, read_shard, shard_path, top_indices
from babelscope.errors import BabelscopeError

ALIGNMENT_FILE = "alignment.parquet"
OVERLAP_FILE = "alignment_overlap.parquet"
TRAJECTORY_FILE = "alignment_trajectories.parquet"
MEASURES = ("overlap", "jaccard", "transfer_ap", "self_ap", "crosslingual")
ALL = "all"


class AlignSettings(BaseModel):
    """Settings of the alignment stage (``[align]`` in the run config)."""

    model_config = ConfigDict(extra="forbid")

    k_fraction: float = Field(
        0.01, gt=0, le=1, description="K per layer as a share of its units (at least 1)"
    )
    k: int | None = Field(None, ge=1, description="K per layer, absolute (overrides k_fraction)")
    k_model: int | None = Field(
        None, ge=1, description="K over the whole model (default: k_fraction of all units)"
    )
    min_languages: int | None = Field(
        None,
        ge=2,
        description="m: a cross-lingual expert is in the top K of at least m languages (None: half)",
    )
    n_trajectory_units: int = Field(
        10, ge=0, description="Strongest cross-lingual units to follow over checkpoints"
    )
    languages: list[str] | None = Field(None, description="Languages to compare (None: all scored)")


# -- measures on arrays --------------------------------------------------------------------


def k_for(
    units: int, settings: AlignSettings, *, whole_model: bool = False, where: str = ""
) -> int:
    """K for a scope of ``units`` units; a K above the units is a user error."""
    if whole_model:
        k = (
            settings.k_model
            if settings.k_model is not None
            else max(1, round(settings.k_fraction * units))
        )
    else:
        k = settings.k if settings.k is not None else max(1, round(settings.k_fraction * units))
    if k > units:
        raise BabelscopeError(
            f"K = {k} is larger than the {units} units of {where or 'the scope'}: choose a smaller K"
        )
    return int(k)


def membership(ap: np.ndarray, k: int) -> np.ndarray:
    """(L, U) bool: unit u is among the top ``k`` AP of language row l."""
    m = np.zeros(ap.shape, dtype=bool)
    for i, row in enumerate(ap):
        m[i, top_indices(row, k)] = True
    return m


def pair_matrices(member: np.ndarray, ap: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Language x language matrices of one concept: overlap, jaccard and transfer AP.

    ``transfer[a, b]`` = mean AP in language b of the experts found in language a.
    """
    mf = member.astype(np.float64)
    inter = mf @ mf.T
    return {
        "overlap": inter / k,
        "jaccard": inter / (2 * k - inter),
        "transfer": (mf @ np.nan_to_num(ap, nan=0.0).T) / k,
    }


def crosslingual_count(member: np.ndarray, m: int) -> int:
    """Units in the top K of at least ``m`` languages."""
    return int((member.sum(axis=0) >= m).sum())


def crosslingual_chance(units: int, k: int, n_langs: int, m: int) -> float:
    """Expected cross-lingual count if each language's top K were an independent random
    K-subset: each unit is in a language's set with probability K/units, so
    ``units * P(Binomial(n_langs, K/units) >= m)``."""
    p = k / units
    tail = sum(
        math.comb(n_langs, i) * p**i * (1 - p) ** (n_langs - i) for i in range(m, n_langs + 1)
    )
    return units * tail


def overlap_chance(units: int, k: int) -> float:
    return k / units


def jaccard_chance(units: int, k: int) -> float:
    """|∩| / |∪| at the expected intersection K²/units: K / (2 units - K)."""
    return k / (2 * units - k)


# -- over a run --------------------------------------------------------------------------


def _steps_and_languages(out_dir: Path, settings: AlignSettings) -> tuple[list[int], list[str]]:
    root = out_dir / "results" / AP_DIR
    steps = []
    for d in root.glob("step-*"):
        if (d / COMPLETE).exists():
            try:
                steps.append(int(d.name.split("-", 1)[1]))
            except ValueError:
                continue
    if not steps:
        raise BabelscopeError(
            f"no expert scores under {root}: run `babelscope experts --out {out_dir}` first"
        )
    steps.sort()
    # Only the checkpoints of the latest experts run: scores left from an earlier run
    # (a step since removed or flagged) must not enter the plots.
    experts_file = out_dir / "results" / "experts.parquet"
    if experts_file.exists():
        from babelscope.io import read_parquet_metadata

        current = read_parquet_metadata(experts_file).get("steps")
        if current:
            steps = [s for s in steps if s in {int(x) for x in current}]
            if not steps:
                raise BabelscopeError(
                    f"no complete expert scores for the steps of {experts_file}: rerun `babelscope experts`"
                )
    langs = json.loads((root / f"step-{steps[-1]}" / COMPLETE).read_text()).get("languages", [])
    if settings.languages:
        missing = [lang for lang in settings.languages if lang not in langs]
        if missing:
            raise BabelscopeError(
                f"no expert scores for {', '.join(missing)}: scored languages are {', '.join(langs) or 'none'}"
            )
        langs = list(settings.languages)
    if len(langs) < 2:
        raise BabelscopeError(
            f"alignment compares languages, but only {len(langs)} ({', '.join(langs) or 'none'}) "
            "has expert scores: score at least two languages"
        )
    return steps, langs


def _load_step(out_dir: Path, step: int, langs: list[str]) -> dict[str, dict[str, Any]]:
    shards = {}
    for lang in langs:
        p = shard_path(out_dir, step, lang)
        if not p.exists():
            raise BabelscopeError(f"missing expert scores {p}: rerun `babelscope experts`")
        shards[lang] = read_shard(p)
    first = shards[langs[0]]
    for lang in langs[1:]:
        if (shards[lang]["layers"], shards[lang]["widths"]) != (first["layers"], first["widths"]):
            raise BabelscopeError(
                f"expert scores of step {step} differ in units between languages: rerun experts"
            )
    return shards


def _concept_rows(shards: dict[str, dict[str, Any]], langs: list[str]) -> dict[str, dict[str, int]]:
    """concept -> {lang: row in that language's shard}, for concepts in >= 2 languages."""
    where: dict[str, dict[str, int]] = defaultdict(dict)
    for lang in langs:
        for i, c in enumerate(shards[lang]["concepts"]):
            where[c][lang] = i
    return {c: d for c, d in sorted(where.items()) if len(d) >= 2}


def _pos_rate(shard: dict[str, Any], row: int) -> float:
    p, n = int(shard["n_pos"][row]), int(shard["n_neg"][row])
    return p / (p + n)


def _scopes(layers: list[int], widths: list[int]) -> list[tuple[str, slice, int]]:
    off = np.concatenate([[0], np.cumsum(widths)])
    out = [
        (str(la), slice(int(off[i]), int(off[i + 1])), int(widths[i]))
        for i, la in enumerate(layers)
    ]
    return out + [(ALL, slice(0, int(off[-1])), int(off[-1]))]


def align_step(
    step: int, shards: dict[str, dict[str, Any]], langs: list[str], settings: AlignSettings, m: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows of alignment.parquet and of the overlap matrices for one checkpoint."""
    first = shards[langs[0]]
    concepts = _concept_rows(shards, langs)
    rows, mat_rows = [], []
    for scope, sl, units in _scopes(first["layers"], first["widths"]):
        where = "the whole model" if scope == ALL else f"layer {scope}"
        k = k_for(units, settings, whole_model=scope == ALL, where=where)
        acc: dict[str, list[float]] = defaultdict(list)
        ch: dict[str, list[float]] = defaultdict(list)
        mats: dict[tuple[str, str], list[list[float]]] = defaultdict(lambda: [[], [], []])
        for _c, rows_of in concepts.items():
            present = [lang for lang in langs if lang in rows_of]
            ap = np.stack(
                [shards[lang]["ap"][rows_of[lang], sl].astype(np.float64) for lang in present]
            )
            rates = [_pos_rate(shards[lang], rows_of[lang]) for lang in present]
            mem = membership(ap, k)
            pm = pair_matrices(mem, ap, k)
            n = len(present)
            for a in range(n):
                acc["self_ap"].append(pm["transfer"][a, a])
                ch["self_ap"].append(rates[a])
                for b in range(n):
                    if a == b:
                        continue
                    acc["transfer_ap"].append(pm["transfer"][a, b])
                    ch["transfer_ap"].append(rates[b])
                    trip = mats[(present[a], present[b])]
                    trip[0].append(pm["overlap"][a, b])
                    trip[1].append(pm["jaccard"][a, b])
                    trip[2].append(pm["transfer"][a, b])
                    if a < b:
                        acc["overlap"].append(pm["overlap"][a, b])
                        acc["jaccard"].append(pm["jaccard"][a, b])
            if n >= m:
                acc["crosslingual"].append(crosslingual_count(mem, m))
                ch["crosslingual"].append(crosslingual_chance(units, k, n, m))
        ch["overlap"] = [overlap_chance(units, k)] * len(acc["overlap"])
        ch["jaccard"] = [jaccard_chance(units, k)] * len(acc["jaccard"])
        for measure in MEASURES:
            vals = acc[measure]
            rows.append(dict(
                step=int(step), layer=scope, measure=measure,
                value=float(np.mean(vals)) if vals else float("nan"),
                chance=float(np.mean(ch[measure])) if ch[measure] else float("nan"),
                n_concepts=len(concepts) if measure != "crosslingual" else len(vals),
                n_pairs=len(vals) if measure != "crosslingual" else 0,
                k=k, units=units, min_languages=m,
            ))  # fmt: skip
        for (a, b), (ov, jc, tr) in mats.items():
            mat_rows.append(dict(step=int(step), layer=scope, lang_a=a, lang_b=b, overlap=float(np.mean(ov)),
                                 jaccard=float(np.mean(jc)), transfer_ap=float(np.mean(tr)), n_concepts=len(ov),
                                 k=k, units=units))  # fmt: skip
    return rows, mat_rows


def strongest_units(
    shards: dict[str, dict[str, Any]], langs: list[str], k: int, n: int
) -> list[tuple[str, int, int]]:
    """(concept, flat unit, n languages) of the ``n`` units in the most languages' whole-model
    top K (ties: higher mean AP over those languages)."""
    cands = []
    for c, rows_of in _concept_rows(shards, langs).items():
        present = [lang for lang in langs if lang in rows_of]
        ap = np.stack([shards[lang]["ap"][rows_of[lang]].astype(np.float64) for lang in present])
        counts = membership(ap, k).sum(axis=0)
        mean_ap = np.nanmean(ap, axis=0)
        for u in np.flatnonzero(counts > 0):
            cands.append((int(counts[u]), float(mean_ap[u]), c, int(u)))
    cands.sort(key=lambda t: (-t[0], -t[1], t[2], t[3]))
    return [(c, u, cnt) for cnt, _, c, u in cands[:n]]


def run_alignment(out_dir: str | Path, settings: AlignSettings | None = None) -> pd.DataFrame:
    """Alignment measures for every checkpoint x layer (and whole model) from the expert shards.

    Writes ``alignment.parquet``, ``alignment_overlap.parquet`` and
    ``alignment_trajectories.parquet`` under ``<out>/results`` and returns the first.
    """
    from babelscope.io import provenance, read_parquet_metadata, write_parquet_atomic
    from babelscope.progress import track

    settings = settings or AlignSettings()
    out_dir = Path(out_dir)
    steps, langs = _steps_and_languages(out_dir, settings)
    m = (
        settings.min_languages
        if settings.min_languages is not None
        else max(2, math.ceil(len(langs) / 2))
    )
    if m > len(langs):
        raise BabelscopeError(
            f"min_languages = {m} but only {len(langs)} languages are compared: choose m <= {len(langs)}"
        )

    last = _load_step(out_dir, steps[-1], langs)
    total = int(sum(last[langs[0]]["widths"]))
    k_model = k_for(total, settings, whole_model=True, where="the whole model")
    chosen = strongest_units(last, langs, k_model, settings.n_trajectory_units)
    layers, widths = last[langs[0]]["layers"], last[langs[0]]["widths"]
    off = np.concatenate([[0], np.cumsum(widths)])
    del last

    rows, mat_rows, traj = [], [], []
    for step in track(steps, f"align: {len(steps)} checkpoints"):
        shards = _load_step(out_dir, step, langs)
        r, mr = align_step(step, shards, langs, settings, m)
        rows += r
        mat_rows += mr
        for rank, (c, u, cnt) in enumerate(chosen, start=1):
            li = int(np.searchsorted(off, u, side="right") - 1)
            for lang in langs:
                sh = shards[lang]
                if c in sh["concepts"] and u < len(sh["ap"][0]):
                    traj.append(dict(rank=rank, concept=c, layer=int(layers[li]), unit=int(u - off[li]), step=int(step),
                                     lang=lang, ap=float(sh["ap"][sh["concepts"].index(c), u]),
                                     n_languages_last=cnt))  # fmt: skip
    df = pd.DataFrame(rows)
    results = out_dir / "results"
    up = {}
    experts_file = results / "experts.parquet"
    if experts_file.exists():
        up = read_parquet_metadata(experts_file)
    meta = provenance(
        "align", settings=settings.model_dump(), languages=langs, steps=steps, min_languages=m,
        k_model=k_model, crosslingual_chance="binomial expectation under independent uniform random top-K sets",
        fingerprints=up.get("fingerprints"), data_hash=up.get("data_hash"), experts_settings=up.get("settings"),
    )  # fmt: skip
    write_parquet_atomic(df, results / ALIGNMENT_FILE, metadata=meta)
    write_parquet_atomic(pd.DataFrame(mat_rows), results / OVERLAP_FILE, metadata=meta)
    traj_cols = ["rank", "concept", "layer", "unit", "step", "lang", "ap", "n_languages_last"]
    write_parquet_atomic(
        pd.DataFrame(traj, columns=traj_cols), results / TRAJECTORY_FILE, metadata=meta
    )
    return df
