"""Controls of the LID probe that can fail, and its intervals.

- **Control task** (Hewitt & Liang 2019): every token *type* gets a fixed random language
  label (drawn with the languages' proportions); the same probe on the same vectors and
  split predicts it. A probe that memorises token identity does well on it wherever the
  vectors identify the type (the embedding layer above all), so selectivity = accuracy -
  control accuracy says how much of the accuracy is about language, not about which token
  it is. (Shuffling language labels across sentences is *not* a control: with
  sentence-disjoint splits the test labels are independent of everything seen, so it
  sits at 1 / L by construction.)
- **Lexical baseline**: the same probe on token identity alone (a one-hot of the token
  type; for sentence vectors, the bag of types): how much of LID is which tokens occur.
- **Interval** of the accuracy that resamples test sentences (clusters of tokens), per
  seed, averaged over seeds as the accuracy is.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def type_control_labels(
    types: np.ndarray, y: np.ndarray, n_classes: int, rng: np.random.Generator
) -> np.ndarray:
    """Per row, the fixed random label of its token type (classes in ``y``'s proportions)."""
    uniq, inv = np.unique(types, return_inverse=True)
    p = np.bincount(y, minlength=n_classes) / len(y)
    label_of_type = rng.choice(n_classes, size=len(uniq), p=p)
    return label_of_type[inv]


def one_hot_types(types: Sequence, n_rows: int):
    """Sparse ``(rows, types)`` indicator of token identity: a type per row (token vectors)
    or a list of types per row (the bag of a sentence)."""
    from scipy.sparse import csr_matrix

    rows, cols = [], []
    for r, t in enumerate(types):
        ts = np.unique(np.atleast_1d(np.asarray(t, dtype=np.int64)))
        rows.append(np.full(len(ts), r))
        cols.append(ts)
    rows_a = np.concatenate(rows) if rows else np.zeros(0, int)
    cols_a = np.concatenate(cols) if cols else np.zeros(0, int)
    _, col_idx = np.unique(cols_a, return_inverse=True)
    width = int(col_idx.max()) + 1 if len(col_idx) else 1
    return csr_matrix((np.ones(len(rows_a)), (rows_a, col_idx)), shape=(n_rows, width))


def lexical_predictions(
    X_types, train: np.ndarray, test: np.ndarray, y: np.ndarray, C: float, max_iter: int
) -> np.ndarray:
    """Predictions of a multinomial logistic regression on token-identity features."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(y[train])) < 2:
        return np.full(len(test), y[train][0])
    clf = LogisticRegression(C=C, max_iter=max_iter, solver="lbfgs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X_types[train], y[train])
    return clf.predict(X_types[test])


def sentence_bootstrap(
    per_seed: list[tuple[np.ndarray, np.ndarray]],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Interval of the mean-over-seeds accuracy that resamples each seed's test sentences.

    ``per_seed``: for each seed, the test rows' sentence and whether each was right.
    """
    rng = np.random.default_rng(seed)
    reps = np.zeros(n_boot)
    for sent, correct in per_seed:
        _, inv = np.unique(sent, return_inverse=True)
        n_s = np.bincount(inv).astype(np.float64)
        c_s = np.bincount(inv, weights=correct.astype(np.float64))
        draw = rng.integers(0, len(n_s), size=(n_boot, len(n_s)))
        reps += c_s[draw].sum(1) / n_s[draw].sum(1)
    reps /= max(len(per_seed), 1)
    a = (1 - level) / 2
    lo, hi = np.quantile(reps, [a, 1 - a])
    return float(lo), float(hi)


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """``(true, predicted)`` counts."""
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes
    )
