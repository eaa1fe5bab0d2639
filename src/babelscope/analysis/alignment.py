"""Cross-lingual alignment of concept experts, per checkpoint x layer (and whole model).

The measures (overlap@K, Jaccard, transfer AP, held-out self AP, cross-lingual experts)
are defined in :mod:`babelscope.analysis.alignment_measures`: experts are selected on one
half of every pool and compared or scored on the other (cross-fitting). Every row of
``alignment.parquet`` (step, layer, measure) carries:

``value``                 the measure, averaged over concepts (and language pairs);
``ci_lo``/``ci_hi``       a 95 % bootstrap interval over concepts, then pairs within them;
``null_mean``/``null_p95``/``p_value``/``n_null``
                          the permutation null: the same measure on labels permuted within
                          source x length strata, R times (:mod:`.alignment_null`);
``diffconcept``           the same measure between a concept's experts and *other*
                          concepts' (alignment that is not about the concept shows here);
``floor``                 a closed form that is only a floor, never the reference: K/units
                          for overlap, K/(2 units - K) for Jaccard, the expected AP of a
                          random ranking for transfer and self AP, the binomial expectation of
                          independent uniform top-K sets for the cross-lingual count.

``self_ap_insample`` (AP of a language's top K on the very sentences they were chosen
on) is kept, named as such, to show the winner's curse beside the held-out ``self_ap``.
Outputs in ``<out>/results/``: ``alignment.parquet``, ``alignment_overlap.parquet``
(language x language matrices per step and scope, with the pair's null) and
``alignment_trajectories.parquet`` (units selected on half 0 of the last checkpoint,
their AP on half 1 at every checkpoint and in every language).
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from babelscope.analysis.alignment_measures import MEASURES, PAIR_MEASURES
from babelscope.analysis.alignment_refs import (  # noqa: F401 - crosslingual_floor re-exported
    _floors,
    _insample_self,
    crosslingual_floor,
    strongest_units,
)
from babelscope.analysis.experts import AP_DIR, COMPLETE, read_shard, shard_path
from babelscope.errors import BabelscopeError

ALIGNMENT_FILE = "alignment.parquet"
OVERLAP_FILE = "alignment_overlap.parquet"
TRAJECTORY_FILE = "alignment_trajectories.parquet"
ALL = "all"
ROW_MEASURES = (*MEASURES, "self_ap_insample")


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
    permutations: int = Field(
        100, ge=0, description="R: label permutations of the null (0: no null, not recommended)"
    )
    null_seed: int = Field(0, description="Seed of the null's permutations")
    length_bins: int = Field(
        4, ge=1, description="Length bins (quantiles) of the null's strata, with the source"
    )
    n_boot: int = Field(1000, ge=100, description="Bootstrap draws of the intervals")
    keep_shortcut_concepts: bool = Field(
        False,
        description="Keep concepts that a trivial shortcut scores as well as their experts "
        "(results/shortcuts.parquet); left out of the averages by default",
    )

    def min_languages_for(self, n_langs: int) -> int:
        """m for ``n_langs`` compared languages (half of them, at least 2, unless set)."""
        return (
            self.min_languages if self.min_languages is not None else max(2, math.ceil(n_langs / 2))
        )

    def null_key(self) -> dict[str, Any]:
        """The settings the null depends on (they key the experts stage's per-step work)."""
        return self.model_dump(exclude={"n_trajectory_units", "n_boot", "keep_shortcut_concepts"})


# -- scopes and closed-form floors -----------------------------------------------------------


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


def scopes_for(
    layers: list[int], widths: list[int], settings: AlignSettings
) -> list[tuple[str, int, int, int]]:
    """``(name, lo, hi, K)`` of every layer and of the whole model (``all``)."""
    off = np.concatenate([[0], np.cumsum(widths)]).astype(int)
    out = [
        (
            str(la),
            int(off[i]),
            int(off[i + 1]),
            k_for(int(widths[i]), settings, where=f"layer {la}"),
        )
        for i, la in enumerate(layers)
    ]
    total = int(off[-1])
    return out + [
        (ALL, 0, total, k_for(total, settings, whole_model=True, where="the whole model"))
    ]


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


def _load_step(
    out_dir: Path, step: int, langs: list[str], variant: str = "matched"
) -> dict[str, dict[str, Any]]:
    shards = {}
    for lang in langs:
        p = shard_path(out_dir, step, lang, variant)
        if not p.exists():
            raise BabelscopeError(f"missing expert scores {p}: rerun `babelscope experts`")
        shards[lang] = read_shard(p)
        if "ap_half0" not in shards[lang]:
            raise BabelscopeError(
                f"expert scores {p} have no held-out halves (written by an older babelscope): "
                "rerun `babelscope experts --force`"
            )
    first = shards[langs[0]]
    for lang in langs[1:]:
        if (shards[lang]["layers"], shards[lang]["widths"]) != (first["layers"], first["widths"]):
            raise BabelscopeError(
                f"expert scores of step {step} differ in units between languages: rerun experts"
            )
    return shards


def step_arrays(shards: dict[str, dict[str, Any]], langs: list[str]) -> dict[str, Any]:
    """``(L, C, U)`` arrays of one checkpoint over the concepts scored in >= 2 languages."""
    seen: dict[str, int] = {}
    for lang in langs:
        for c in shards[lang]["concepts"]:
            seen[c] = seen.get(c, 0) + 1
    concepts = sorted(c for c, n in seen.items() if n >= 2)
    n_u = int(sum(shards[langs[0]]["widths"]))
    shape = (len(langs), len(concepts), n_u)
    out = {k: np.full(shape, np.nan, dtype=np.float32) for k in ("ap", "ap_half0", "ap_half1")}
    n_pos = np.zeros((2, len(langs), len(concepts)))
    n_half = np.zeros((2, len(langs), len(concepts)))  # members of each concept per half
    for i, lang in enumerate(langs):
        sh = shards[lang]
        whole = np.bincount(sh["half"], minlength=2)
        for j, c in enumerate(concepts):
            if c in sh["concepts"]:
                row = sh["concepts"].index(c)
                for k in out:
                    out[k][i, j] = sh[k][row]
                n_pos[:, i, j] = sh["n_pos_half"][:, row]
                n_half[:, i, j] = sh["n_member_half"][:, row] if "n_member_half" in sh else whole
    return {**out, "concepts": concepts, "n_pos_half": n_pos, "n_half": n_half}


def align_step(
    step: int,
    arr: dict[str, Any],
    langs: list[str],
    scopes: list[tuple[str, int, int, int]],
    m: int,
    null: dict[str, Any] | None,
    settings: AlignSettings,
    *,
    keep: np.ndarray | None = None,
    split: np.ndarray | None = None,
    stash: dict[str, Any] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows of alignment.parquet and of the language matrices for one checkpoint.

    ``keep`` (C,) bool: the concepts the rows average (flagged shortcut concepts out);
    the language matrices cover every concept, like their null. ``split`` (L, C, L): the
    lexical split (adds the token-sharing / token-disjoint rows).
    """
    from babelscope.analysis.alignment_measures import measure_names
    from babelscope.analysis.alignment_null import (
        measures_over_scopes,
        null_values,
        real_languages,
    )
    from babelscope.analysis.stats import bootstrap_interval, null_summary

    real = real_languages(langs)
    everything = keep is None or bool(np.all(keep))
    sub = (lambda a: a) if everything else (lambda a: a[:, keep])  # noqa: E731
    sub_arr = {k: sub(arr[k]) for k in ("ap", "ap_half0", "ap_half1")}
    sub_arr.update(n_pos_half=arr["n_pos_half"][..., keep] if not everything else arr["n_pos_half"],
                   n_half=arr["n_half"][..., keep] if not everything else arr["n_half"])  # fmt: skip
    res = measures_over_scopes(sub_arr["ap_half0"], sub_arr["ap_half1"], scopes, m, items=True,
                               real=real, split=None if split is None else sub(split))  # fmt: skip
    all_pairs = res if everything else measures_over_scopes(
        arr["ap_half0"], arr["ap_half1"], scopes, m, diffconcept=False, real=real)  # fmt: skip
    nv = None if null is None else null_values(null, keep)
    if stash is not None:  # the whole model's items, for the lexical correlation
        stash.update(
            result=res[scopes[-1][0]],
            concepts=[
                c
                for c, ok in zip(
                    arr["concepts"],
                    keep if keep is not None else [True] * len(arr["concepts"]),
                    strict=True,
                )
                if ok
            ],
        )
    names = measure_names(split is not None)
    rows, mat_rows = [], []
    for si, (scope, lo, hi, k) in enumerate(scopes):
        r = res[scope]
        r.items["self_ap_insample"] = _insample_self(sub_arr["ap"], k, lo, hi)
        with warnings.catch_warnings():  # concepts absent from a half: NaN, not a warning
            warnings.simplefilter("ignore", RuntimeWarning)
            floors = _floors(sub_arr, hi - lo, k, m, real)
        for measure in (*names, "self_ap_insample"):
            vals, clusters = r.items[measure]
            value = float(np.mean(vals)) if len(vals) else float("nan")
            lo_ci, hi_ci = bootstrap_interval(vals, clusters=clusters, n_boot=settings.n_boot,
                                              seed=settings.null_seed)  # fmt: skip
            ns = {"null_mean": np.nan, "null_p95": np.nan, "p_value": np.nan, "n_null": 0}
            if nv is not None and measure in null["measures"]:
                ns = null_summary(nv[:, si, null["measures"].index(measure)], value)
            rows.append(dict(
                step=int(step), layer=scope, measure=measure, value=value, ci_lo=lo_ci, ci_hi=hi_ci,
                null_mean=ns["null_mean"], null_p95=ns["null_p95"], p_value=ns.get("p_value", np.nan),
                n_null=ns["n_null"], diffconcept=r.diffconcept.get(measure, np.nan),
                floor=floors.get(measure.replace("_shared", "").replace("_disjoint", ""), np.nan), n_concepts=len(set(np.asarray(clusters).tolist())),
                n_items=len(vals), k=k, units=hi - lo, min_languages=m,
            ))  # fmt: skip
        for a, la in enumerate(langs):
            for b, lb in enumerate(langs):
                row = dict(step=int(step), layer=scope, lang_a=la, lang_b=lb, k=k, units=hi - lo)
                for pi, pm in enumerate(PAIR_MEASURES):
                    v = float(all_pairs[scope].pairs[pm][a, b])
                    row[pm] = v
                    if null is not None and pm in ("overlap", "transfer_ap"):
                        z = null["pairs"][:, si, pi, a, b]
                        s = null_summary(z, v)
                        row[f"{pm}_null_mean"], row[f"{pm}_null_p95"] = (
                            s["null_mean"],
                            s["null_p95"],
                        )
                        row[f"{pm}_p_value"] = s["p_value"]
                mat_rows.append(row)
    return rows, mat_rows


def _check_null(null: dict[str, Any] | None, langs, concepts, scopes, m, step) -> None:
    if null is None:
        return
    want = (langs, concepts, [s[0] for s in scopes], [s[3] for s in scopes], m)
    have = (null["langs"], null["concepts"], null["scopes"], null["ks"], null["m"])
    if tuple(want) != tuple(have):
        raise BabelscopeError(
            f"the permutation null of step {step} was computed for other alignment settings "
            "(languages, concepts, K or m): rerun `babelscope experts` with these [align] settings"
        )


def run_alignment(out_dir: str | Path, settings: AlignSettings | None = None) -> pd.DataFrame:
    """Alignment measures for every checkpoint x layer (and whole model) from the expert
    shards and their nulls; writes the three result files (module doc), returns the first."""
    from babelscope.analysis.alignment_null import NULL_FILE, load_null
    from babelscope.io import provenance, read_parquet_metadata, write_parquet_atomic
    from babelscope.progress import track

    settings = settings or AlignSettings()
    out_dir = Path(out_dir)
    steps, langs = _steps_and_languages(out_dir, settings)
    from babelscope.analysis.alignment_null import real_languages

    n_real = int(real_languages(langs).sum())
    m = settings.min_languages_for(n_real)  # a control language is reported apart
    if n_real < 2:
        raise BabelscopeError(
            f"alignment compares real languages, but only {n_real} of {', '.join(langs)} is one: "
            "score at least two real languages"
        )
    if m > len(langs):
        raise BabelscopeError(
            f"min_languages = {m} but only {len(langs)} languages are compared: choose m <= {len(langs)}"
        )
    last_shards = _load_step(out_dir, steps[-1], langs)
    last = step_arrays(last_shards, langs)
    layers, widths = last_shards[langs[0]]["layers"], last_shards[langs[0]]["widths"]
    del last_shards
    scopes = scopes_for(layers, widths, settings)
    from babelscope.analysis.align_extras import (
        concept_keep,
        lexical_split,
        unmatched_rows,
        with_flagged_rows,
        write_lexical_summary,
    )

    flagged = concept_keep(out_dir, settings)
    chosen = [u for u in strongest_units(last, scopes[-1][3], settings.n_trajectory_units + len(flagged))
              if u[0] not in flagged][: settings.n_trajectory_units]  # fmt: skip
    off = np.concatenate([[0], np.cumsum(widths)])
    del last

    rows, mat_rows, traj, missing_null, stash = [], [], [], [], {}
    for step in track(steps, f"align: {len(steps)} checkpoints"):
        arr = step_arrays(_load_step(out_dir, step, langs), langs)
        null = load_null(out_dir / "results" / AP_DIR / f"step-{step}" / NULL_FILE)
        if null is None:
            missing_null.append(step)
        _check_null(null, langs, arr["concepts"], scopes, m, step)
        keep = np.array([c not in flagged for c in arr["concepts"]], dtype=bool)
        split = lexical_split(out_dir, langs, arr["concepts"])
        r, mr = align_step(step, arr, langs, scopes, m, null, settings, keep=keep, split=split,
                           stash=stash if step == steps[-1] else None)  # fmt: skip
        rows += r
        mat_rows += mr
        for rank, (c, u, cnt) in enumerate(chosen, start=1):
            li = int(np.searchsorted(off, u, side="right") - 1)
            if c not in arr["concepts"]:
                continue
            j = arr["concepts"].index(c)
            for i, lang in enumerate(langs):
                v = arr["ap_half1"][i, j, u]
                if np.isfinite(v):
                    traj.append(dict(rank=rank, concept=c, layer=int(layers[li]), unit=int(u - off[li]),
                                     step=int(step), lang=lang, ap=float(v), selected_on="half0",
                                     n_languages_last=cnt))  # fmt: skip
    if missing_null and settings.permutations:
        from babelscope.progress import warn

        warn(
            f"align: no permutation null for step(s) {', '.join(map(str, missing_null))}: rerun experts"
        )
    df = pd.DataFrame(rows)
    results = out_dir / "results"
    up = (
        read_parquet_metadata(results / "experts.parquet")
        if (results / "experts.parquet").exists()
        else {}
    )
    meta = provenance(
        "align", settings=settings.model_dump(), languages=langs, steps=steps, min_languages=m,
        scopes=[list(s) for s in scopes], null="labels permuted within source x length strata, "
        "whole measure recomputed (analysis/alignment_null.py)", fingerprints=up.get("fingerprints"),
        data_hash=up.get("data_hash"), experts_settings=up.get("settings"),
    )  # fmt: skip
    meta["shortcut_concepts_left_out"] = sorted(flagged)
    write_parquet_atomic(df, results / ALIGNMENT_FILE, metadata=meta)
    unmatched_rows(out_dir, steps[-1], langs, scopes, m, settings, flagged, meta)
    with_flagged_rows(out_dir, steps[-1], langs, scopes, m, settings, flagged, meta)
    write_lexical_summary(out_dir, stash, langs, steps[-1], meta)
    write_parquet_atomic(pd.DataFrame(mat_rows), results / OVERLAP_FILE, metadata=meta)
    traj_cols = [
        "rank",
        "concept",
        "layer",
        "unit",
        "step",
        "lang",
        "ap",
        "selected_on",
        "n_languages_last",
    ]
    write_parquet_atomic(
        pd.DataFrame(traj, columns=traj_cols), results / TRAJECTORY_FILE, metadata=meta
    )
    return df
