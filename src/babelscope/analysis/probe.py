"""Where a probe is trained: layer-wise language-identification (LID) probes with controls.

Experiment 1 of the study (SPEC §1, §2 "LID probe"): for every checkpoint and every layer of
the residual stream, can a linear classifier still tell the languages apart?

The core works on plain arrays (:func:`probe_layer`): token (or pooled sentence) vectors,
their language, and the sentence each row came from. Per seed it

1. splits the *sentences* of every language into train and test (or k folds), so no
   sentence is on both sides: tokens of one sentence share context and would leak;
2. samples the same number of vectors for every language on each side (balanced, so
   chance is exactly ``1 / n_languages``);
3. fits ``StandardScaler`` + multinomial ``LogisticRegression`` and scores the test side;
4. runs the *control task* of Hewitt & Liang: every token type gets a fixed random
   language label, same probe, same split (:mod:`babelscope.analysis.probe_controls`).
   Selectivity = accuracy - control accuracy;
5. runs the *lexical baseline*: the same probe on token identity alone;
6. gives an interval of the accuracy that resamples test sentences, and a confusion matrix.

:func:`run_probe` drives it over a checkpoint series: one forward pass per checkpoint
serves all layers, the per-layer probes run in parallel, each finished checkpoint is
saved at once (resume), and ``results/probe.parquet`` carries provenance.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from babelscope.errors import BabelscopeError

if TYPE_CHECKING:
    pass

RESULT_COLUMNS = [
    "step", "layer", "seed", "accuracy", "ci_lo", "ci_hi", "control_accuracy", "selectivity",
    "lexical_accuracy", "chance", "n_train", "n_test", "n_languages", "converged",
]  # fmt: skip


def available_cores() -> int:
    """CPU cores this process may use (respects affinity masks, e.g. in containers)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return max(1, os.cpu_count() or 1)


class ProbeSettings(BaseModel):
    """Settings of the LID probe stage; the same keys as the ``[probe]`` section of the config."""

    model_config = ConfigDict(extra="forbid")

    level: Literal["token", "sentence"] = Field(
        "token", description="Probe token vectors, or sentence vectors (masked mean over tokens)"
    )
    languages: list[str] | None = Field(
        None, description="Languages to probe (default: all in the corpus)"
    )
    sentences_per_language: int = Field(
        100,
        ge=2,
        description="Sentences drawn per language (seeded); every language needs this many",
    )
    tokens_per_language: int | None = Field(
        500, ge=2, description="Token vectors per language, train + test (token level; None: all)"
    )
    tokens_per_sentence: int | None = Field(
        None,
        ge=1,
        description="Tokens sampled per sentence at extraction (None: enough for tokens_per_language)",
    )
    seeds: list[int] = Field(
        default_factory=lambda: [0, 1, 2], description="Each seed re-draws split and sample"
    )
    folds: int | None = Field(
        None, ge=2, description="k-fold cross-validation grouped by sentence (None: one split)"
    )
    test_fraction: float = Field(
        0.2, gt=0.0, lt=1.0, description="Share of each language's sentences tested"
    )
    layers: list[int] | None = Field(
        None, description="Residual layers (0 = embedding output); None: all"
    )
    C: float = Field(1.0, gt=0.0, description="Inverse L2 strength of the logistic regression")
    max_iter: int = Field(300, ge=1, description="L-BFGS iterations per fit (at most)")
    # 1e-3, not scikit-learn's 1e-4: on residual streams 1e-4 costs 2-3x the iterations for
    # about one point of accuracy, the same at every checkpoint (measured in the issue-5 note).
    tol: float = Field(1e-3, gt=0.0, description="L-BFGS stopping tolerance (projected gradient)")
    n_jobs: int | None = Field(
        None, description="Parallel per-layer probes (None: all available cores)"
    )
    batch_size: int = Field(32, ge=1, description="Sentences per forward pass")
    max_length: int | None = Field(
        128,
        ge=1,
        description="Truncate sentences to this many tokens (and never past the model's context)",
    )

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("give at least one seed")
        if len(set(v)) != len(v):
            raise ValueError("seeds must be distinct")
        return v

    @field_validator("layers")
    @classmethod
    def _layers(cls, v: list[int] | None) -> list[int] | None:
        return None if v is None else sorted(set(v))

    def result_key(self) -> dict[str, Any]:
        """The settings that change the numbers (not n_jobs or batch size): the resume key."""
        return self.model_dump(exclude={"n_jobs", "batch_size"})


# --------------------------------------------------------------------------- core on arrays


def _fit_score(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
    C: float = 1.0,
    max_iter: int = 300,
    tol: float = 1e-3,
) -> tuple[int, bool]:
    """Standardise, fit a multinomial logistic regression, return (correct test predictions, converged)."""
    pred, converged = _fit_predict(X_train, y_train, X_test, C, max_iter, tol)
    return int((pred == y_test).sum()), converged


def _fit_predict(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_test: np.ndarray,
    C: float = 1.0,
    max_iter: int = 300,
    tol: float = 1e-3,
) -> tuple[np.ndarray, bool]:
    """Standardise, fit a multinomial logistic regression, return (test predictions, converged)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    classes = np.unique(y_train)
    if len(classes) < 2:  # only possible in the control task on tiny data: predict the one label
        return np.full(len(X_test), classes[0]), True
    scaler = StandardScaler().fit(X_train)
    # L-BFGS on standardised features: multinomial (the default for >2 classes), fast and
    # stable for a few thousand rows x a few hundred features.
    clf = LogisticRegression(C=C, max_iter=max_iter, tol=tol, solver="lbfgs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(scaler.transform(X_train), y_train)
    converged = bool(np.max(clf.n_iter_) < max_iter)
    return clf.predict(scaler.transform(X_test)), converged


def _balanced_sample(
    candidates: list[np.ndarray], target: int | None, rng: np.random.Generator
) -> np.ndarray:
    """Draw the same number of rows from every language (the smallest pool caps it)."""
    n = min(len(c) for c in candidates)
    if target is not None:
        n = min(n, target)
    picked = [rng.choice(c, size=n, replace=False) if n < len(c) else c for c in candidates]
    return np.sort(np.concatenate(picked))


def sentence_splits(
    sentence_language: np.ndarray,
    rng: np.random.Generator,
    *,
    test_fraction: float = 0.2,
    folds: int | None = None,
) -> list[np.ndarray]:
    """Boolean test masks over sentences, stratified by language.

    One mask (``test_fraction`` of each language's sentences, at least one on each side),
    or ``folds`` masks that partition every language's sentences.
    """
    n_sent = len(sentence_language)
    if folds:
        fold_of = np.empty(n_sent, dtype=np.int64)
        for lang in np.unique(sentence_language):
            idx = rng.permutation(np.flatnonzero(sentence_language == lang))
            fold_of[idx] = np.arange(len(idx)) % folds
        return [fold_of == f for f in range(folds)]
    mask = np.zeros(n_sent, dtype=bool)
    for lang in np.unique(sentence_language):
        idx = rng.permutation(np.flatnonzero(sentence_language == lang))
        n_test = min(max(1, round(test_fraction * len(idx))), len(idx) - 1)
        mask[idx[:n_test]] = True
    return [mask]


class _Encoded:
    """The rows of one probe, encoded: language index and sentence index per row, checked."""

    def __init__(
        self,
        lang_labels: Sequence[Any] | np.ndarray,
        sentence_ids: Sequence[Any] | np.ndarray,
        folds: int | None,
    ):
        labels, sids = np.asarray(lang_labels), np.asarray(sentence_ids)
        if len(labels) != len(sids):
            raise ValueError(f"{len(labels)} language labels but {len(sids)} sentence ids")
        self.langs, self.y = np.unique(labels, return_inverse=True)
        if len(self.langs) < 2:
            found = ", ".join(map(str, self.langs)) or "none"
            raise BabelscopeError(
                f"a language probe needs at least two languages (found: {found}); add languages"
            )
        _, self.s_of_row = np.unique(sids, return_inverse=True)
        self.sent_lang = np.empty(int(self.s_of_row.max()) + 1, dtype=np.int64)
        self.sent_lang[self.s_of_row] = self.y
        if not np.array_equal(self.sent_lang[self.s_of_row], self.y):
            raise ValueError("rows of one sentence carry different languages")
        need = folds if folds else 2
        counts = np.bincount(self.sent_lang, minlength=len(self.langs))
        for lang, n in zip(self.langs, counts, strict=True):
            if n < need:
                why = "one per fold" if folds else "one to train and one to test"
                raise BabelscopeError(
                    f"language {lang} has {n} sentence(s); the probe needs at least {need} ({why}): "
                    f"add text in {lang} or drop it"
                )
        self.rows_of_lang = [np.flatnonzero(self.y == k) for k in range(len(self.langs))]

    def splits(
        self,
        rng: np.random.Generator,
        test_fraction: float,
        folds: int | None,
        tokens_per_language: int | None,
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """(train rows, test rows) per split: sentences split by language, rows sampled balanced."""
        test_share = 1.0 / folds if folds else test_fraction
        if tokens_per_language is None:
            target_train = target_test = None
        else:
            target_test = max(1, round(tokens_per_language * test_share))
            target_train = max(1, tokens_per_language - target_test)
        out = []
        for test_sent in sentence_splits(
            self.sent_lang, rng, test_fraction=test_fraction, folds=folds
        ):
            row_test = test_sent[self.s_of_row]
            pools = {
                "train": [r[~row_test[r]] for r in self.rows_of_lang],
                "test": [r[row_test[r]] for r in self.rows_of_lang],
            }
            for side, pool in pools.items():
                empty = [str(self.langs[k]) for k, p in enumerate(pool) if len(p) == 0]
                if empty:  # only when sentences have no content tokens at all
                    raise BabelscopeError(
                        f"language {empty[0]} has no token vectors on the {side} side: its sentences "
                        "are empty after tokenization; add text or raise sentences_per_language"
                    )
            train = _balanced_sample(pools["train"], target_train, rng)
            test = _balanced_sample(pools["test"], target_test, rng)
            out.append((train, test))
        return out


def split_indices(
    lang_labels: Sequence[Any] | np.ndarray,
    sentence_ids: Sequence[Any] | np.ndarray,
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    folds: int | None = None,
    tokens_per_language: int | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (train rows, test rows) that :func:`probe_layer` uses for ``seed``: one pair, or one per fold."""
    enc = _Encoded(lang_labels, sentence_ids, folds)
    return enc.splits(np.random.default_rng(seed), test_fraction, folds, tokens_per_language)


def probe_layer(
    X: np.ndarray,
    lang_labels: Sequence[Any] | np.ndarray,
    sentence_ids: Sequence[Any] | np.ndarray,
    *,
    token_types: Sequence[Any] | np.ndarray | None = None,
    lexical: bool = True,
    seeds: Sequence[int] = (0, 1, 2),
    test_fraction: float = 0.2,
    folds: int | None = None,
    tokens_per_language: int | None = None,
    C: float = 1.0,
    max_iter: int = 300,
    tol: float = 1e-3,
) -> list[dict[str, Any]]:
    """Probe one layer for language: one result row per seed.

    ``X`` is ``(n_rows, d)``: token vectors, or one pooled vector per sentence (then
    ``sentence_ids`` is simply unique per row). ``lang_labels`` and ``sentence_ids`` give
    each row's language and sentence; all rows of a sentence must share a language.
    ``token_types`` gives each row's token id (token vectors) or its sentence's token ids
    (pooled vectors): the control task (token vectors only) and the lexical baseline need
    them, and are NaN without. ``tokens_per_language`` caps rows per language (train + test
    together; with k folds the test share is ``1/k``); every language gets the same count
    on each side. With ``folds`` every sentence is tested once per seed.

    Returns rows with ``seed, accuracy, ci_lo, ci_hi, control_accuracy, selectivity,
    lexical_accuracy, chance, n_train, n_test, n_languages, converged, confusion``
    (``ci_*``: the interval of the mean over seeds, resampling test sentences; the same in
    every row; ``confusion``: true x predicted counts of that seed, as nested lists).
    """
    from babelscope.analysis.probe_controls import (
        confusion,
        lexical_predictions,
        one_hot_types,
        sentence_bootstrap,
        type_control_labels,
    )

    X = np.asarray(X)
    if X.ndim != 2 or len(X) != len(lang_labels):
        raise ValueError(f"X has shape {X.shape} but there are {len(lang_labels)} labels")
    enc = _Encoded(lang_labels, sentence_ids, folds)
    n_lang = len(enc.langs)
    by_token = (
        token_types is not None
        and np.asarray(token_types, dtype=object).ndim == 1
        and all(np.ndim(t) == 0 for t in token_types)
    )
    types = np.asarray(token_types, dtype=np.int64) if by_token else None
    # the lexical baseline does not depend on X: callers probing many layers run it once
    X_types = one_hot_types(token_types, len(X)) if token_types is not None and lexical else None
    results, per_seed = [], []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        splits = enc.splits(rng, test_fraction, folds, tokens_per_language)
        y_control = type_control_labels(types, enc.y, n_lang, rng) if by_token else None
        correct = correct_ctrl = correct_lex = n_train = n_test = 0
        converged = True
        conf = np.zeros((n_lang, n_lang), dtype=np.int64)
        sents, rights = [], []
        for train_idx, test_idx in splits:
            Xtr, Xte = X[train_idx], X[test_idx]
            pred, ok = _fit_predict(Xtr, enc.y[train_idx], Xte, C, max_iter, tol)
            right = pred == enc.y[test_idx]
            correct += int(right.sum())
            conf += confusion(enc.y[test_idx], pred, n_lang)
            sents.append(enc.s_of_row[test_idx])
            rights.append(right)
            if y_control is not None:
                c_ctrl, ok_ctrl = _fit_score(
                    Xtr, y_control[train_idx], Xte, y_control[test_idx], C, max_iter, tol
                )
                correct_ctrl += c_ctrl
                ok = ok and ok_ctrl
            if X_types is not None:
                lex = lexical_predictions(X_types, train_idx, test_idx, enc.y, C, max_iter)
                correct_lex += int((lex == enc.y[test_idx]).sum())
            n_train += len(train_idx)
            n_test += len(test_idx)
            converged = converged and ok
        per_seed.append((np.concatenate(sents), np.concatenate(rights)))
        acc = correct / n_test
        ctrl = correct_ctrl / n_test if y_control is not None else float("nan")
        results.append(
            dict(seed=int(seed), accuracy=acc, control_accuracy=ctrl, selectivity=acc - ctrl,
                 lexical_accuracy=correct_lex / n_test if X_types is not None else float("nan"),
                 chance=1.0 / n_lang, n_train=n_train // len(splits), n_test=n_test,
                 n_languages=n_lang, converged=converged, confusion=conf.tolist())
        )  # fmt: skip
    lo, hi = sentence_bootstrap(per_seed, seed=int(seeds[0]))
    for r in results:
        r["ci_lo"], r["ci_hi"] = lo, hi
    return results


def check_layers(requested: Sequence[int] | None, n_layers: int) -> list[int]:
    """Validate layer indices against ``0..n_layers-1`` (0 = embedding output); None means all."""
    if requested is None:
        return list(range(n_layers))
    bad = [layer for layer in requested if not 0 <= layer < n_layers]
    if bad:
        raise BabelscopeError(
            f"layer {bad[0]} is out of range: this model's residual layers are 0..{n_layers - 1} "
            "(0 = embedding output)"
        )
    return sorted(set(requested))


def probe_layers(
    arrays: Mapping[int, np.ndarray],
    lang_labels: Sequence[Any] | np.ndarray,
    sentence_ids: Sequence[Any] | np.ndarray,
    settings: ProbeSettings,
    *,
    n_jobs: int | None = None,
    token_types: Sequence[Any] | None = None,
) -> pd.DataFrame:
    """Probe several layers in parallel (joblib processes); a frame with ``layer`` + probe
    columns (``confusion`` holds each row's confusion matrix as nested lists)."""
    from joblib import Parallel, delayed

    layers = sorted(arrays)
    n_jobs = n_jobs or settings.n_jobs or available_cores()
    n_jobs = max(1, min(n_jobs, len(layers)))
    tokens = settings.tokens_per_language if settings.level == "token" else None
    kwargs = dict(seeds=settings.seeds, test_fraction=settings.test_fraction, folds=settings.folds,
                  tokens_per_language=tokens, C=settings.C, max_iter=settings.max_iter, tol=settings.tol,
                  token_types=token_types)  # fmt: skip
    labels, sids = np.asarray(lang_labels), np.asarray(sentence_ids)
    if n_jobs == 1:
        per_layer = [
            probe_layer(arrays[layer], labels, sids, lexical=layer == layers[0], **kwargs)
            for layer in layers
        ]
    else:
        # Processes, not threads: L-BFGS spends much of its time in Python. joblib caps each
        # worker's BLAS threads so n_jobs workers do not oversubscribe the cores.
        per_layer = Parallel(n_jobs=n_jobs)(
            delayed(probe_layer)(arrays[layer], labels, sids, lexical=layer == layers[0], **kwargs)
            for layer in layers
        )
    # The lexical baseline sees token identity only, the same rows and splits in every
    # layer: computed once (first layer) and shown in every row.
    for res in per_layer[1:]:
        for r, r0 in zip(res, per_layer[0], strict=True):
            r["lexical_accuracy"] = r0["lexical_accuracy"]
    rows = [
        dict(layer=layer, **r) for layer, res in zip(layers, per_layer, strict=True) for r in res
    ]
    return pd.DataFrame(rows)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per (step, layer): accuracy, control accuracy, selectivity."""
    keys = [k for k in ("step", "layer") if k in df.columns]
    extra = {c: (c, "mean") for c in ("lexical_accuracy",) if c in df.columns}
    extra |= {c: (c, "first") for c in ("ci_lo", "ci_hi") if c in df.columns}
    agg = df.groupby(keys).agg(
        accuracy=("accuracy", "mean"), accuracy_std=("accuracy", "std"), **extra,
        control_accuracy=("control_accuracy", "mean"), control_std=("control_accuracy", "std"),
        selectivity=("selectivity", "mean"), selectivity_std=("selectivity", "std"),
        chance=("chance", "first"), n_seeds=("seed", "nunique"),
    )  # fmt: skip
    return agg.fillna(
        {"accuracy_std": 0.0, "control_std": 0.0, "selectivity_std": 0.0}
    ).reset_index()


# The driver over a checkpoint series lives in probe_stage.py; re-exported here so that
# ``babelscope.analysis.probe`` stays the one place to import the probe from.
from babelscope.analysis.probe_stage import (  # noqa: E402
    CONFUSION_FILE,
    PARTIAL_DIR,
    PROBE_FILE,
    run_probe,
    select_sentences,
)

__all__ = [
    "CONFUSION_FILE", "PARTIAL_DIR", "PROBE_FILE", "RESULT_COLUMNS", "ProbeSettings",
    "check_layers", "probe_layer", "probe_layers", "run_probe", "select_sentences",
    "sentence_splits", "split_indices", "summarize",
]  # fmt: skip
