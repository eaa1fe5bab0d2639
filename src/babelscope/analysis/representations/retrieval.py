"""Cross-lingual retrieval of translations from pooled representations (one layer at a time).

The input is one layer's sentence vectors for the parallel items, ``x`` of shape
``(n_languages, n_items, d)``: ``x[a, i]`` and ``x[b, i]`` are translations of each other.
For every ordered language pair ``(a, b)``, ``a != b``, each sentence of ``a`` looks for its
nearest neighbour (cosine) among the ``n_items`` sentences of ``b``; precision@1 is the
share found at their own translation.

References beside every number:

- **chance** ``1 / n_items`` (a random neighbour);
- **permutation null**: which sentence of ``b`` counts as the translation is shuffled
  (independently per pair and per draw) while the neighbours stay as computed; the null is
  the pair-averaged precision@1 under each shuffle, so it carries the spread a score of
  pure chance would have with this many items and pairs;
- **interval**: percentile bootstrap over the parallel *items* (the same items are used by
  every pair, so they are the unit that is resampled).

``centred=True`` first removes each language's mean vector over the items (Libovický et
al. 2020): what is left cannot encode which language a sentence is in by a constant
offset, and the gap between centred and raw retrieval measures how much of the
representation is language identity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from babelscope.analysis.stats import bootstrap_interval, null_summary
from babelscope.errors import BabelscopeError


def check_parallel(x: np.ndarray) -> np.ndarray:
    """``x`` as float64 ``(n_languages >= 2, n_items >= 2, d)``, or a clear error."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3 or x.shape[0] < 2 or x.shape[1] < 2:
        raise BabelscopeError(
            f"parallel representations must be (languages >= 2, items >= 2, width), got shape {x.shape}: "
            "use at least two languages and two parallel items"
        )
    if not np.isfinite(x).all():
        raise BabelscopeError(
            "parallel representations contain NaN or inf: check the model's dtype (fp16 overflow?)"
        )
    return x


def centre_languages(x: np.ndarray) -> np.ndarray:
    """Remove each language's mean vector over its items: ``x[a] - x[a].mean(0)``."""
    return x - x.mean(axis=1, keepdims=True)


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def cosine_tensor(x: np.ndarray) -> np.ndarray:
    """Cosine of every item of every language with every item of every other language.

    Returns ``(n_languages, n_languages, n_items, n_items)``: ``[a, b, i, j]`` is the
    cosine between item ``i`` of ``a`` and item ``j`` of ``b``.
    """
    u = unit_rows(x)
    return np.einsum("aid,bjd->abij", u, u, optimize=True)


def ordered_pairs(n_languages: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(a, b)`` of every ordered pair of different languages."""
    a, b = np.meshgrid(np.arange(n_languages), np.arange(n_languages), indexing="ij")
    keep = a != b
    return a[keep], b[keep]


def pair_cosines(x: np.ndarray, centred: bool = False) -> np.ndarray:
    """Cosines for every ordered language pair: ``(n_pairs, n_items, n_items)`` in the order
    of :func:`ordered_pairs`; compute once, pass as ``cos=`` to :func:`retrieval` and
    :func:`~babelscope.analysis.representations.similarity.margin`."""
    x = check_parallel(x)
    if centred:
        x = centre_languages(x)
    pa, pb = ordered_pairs(x.shape[0])
    return cosine_tensor(x)[pa, pb]


def random_pairings(n_permutations: int, n_pairs: int, n_items: int, seed: int = 0) -> np.ndarray:
    """Shuffled pairings ``(n_permutations, n_pairs, n_items)``: in draw ``r`` item ``i`` of
    pair ``k`` is paired with item ``[r, k, i]``. Made once, they serve every layer."""
    rng = np.random.default_rng(seed)
    return rng.random((n_permutations, n_pairs, n_items)).argsort(axis=2)


@dataclass
class RetrievalResult:
    """Precision@1 of one layer, averaged over ordered language pairs.

    ``per_pair[k]`` belongs to the pair ``(pairs_a[k], pairs_b[k])``; ``null`` holds the
    permutation null of the pair average, one value per draw.
    """

    precision: float
    chance: float
    ci_low: float
    ci_high: float
    null: np.ndarray
    per_pair: np.ndarray
    pairs_a: np.ndarray
    pairs_b: np.ndarray
    n_items: int
    nearest: np.ndarray | None = None  # (pairs, items): the retrieved item of each query

    def subset_row(
        self, a: int, b: int, pairings: np.ndarray, *, n_boot: int = 1000, seed: int = 0
    ) -> dict[str, float]:
        """The table row of one language pair alone, both directions (``a -> b``, ``b -> a``):
        e.g. a language and its cipher, whose structure is shared by construction."""
        keep = ((self.pairs_a == a) & (self.pairs_b == b)) | (
            (self.pairs_a == b) & (self.pairs_b == a)
        )
        near = self.nearest[keep]
        hits = near == np.arange(self.n_items)[None, :]
        null = (near[None] == pairings[:, keep]).mean(axis=(1, 2))
        value = float(hits.mean())
        lo, hi = bootstrap_interval(hits.mean(axis=0), n_boot=n_boot, seed=seed)
        return {
            "value": value, "chance": self.chance, **null_summary(null, value),
            "ci_low": lo, "ci_high": hi, "n_items": self.n_items, "n_pairs": int(keep.sum()),
        }  # fmt: skip

    def row(self) -> dict[str, float]:
        """The numbers for a result table: value, chance, null summary, interval."""
        return {
            "value": self.precision,
            "chance": self.chance,
            **null_summary(self.null, self.precision),
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "n_items": self.n_items,
            "n_pairs": len(self.per_pair),
        }


def retrieval(
    x: np.ndarray,
    *,
    centred: bool = False,
    n_permutations: int = 200,
    n_boot: int = 1000,
    seed: int = 0,
    pairings: np.ndarray | None = None,
    cos: np.ndarray | None = None,
) -> RetrievalResult:
    """Translation retrieval precision@1 over all ordered language pairs of one layer.

    ``pairings``: the null's shuffled pairings (:func:`random_pairings`), to share them
    between layers; by default drawn here from ``seed``. ``cos``: :func:`pair_cosines` of
    ``x`` (with the same ``centred``), when already computed.
    """
    if cos is None:
        cos = pair_cosines(x, centred)  # (pairs, n, n)
    n = cos.shape[1]
    pa, pb = ordered_pairs(int(round(0.5 + np.sqrt(0.25 + cos.shape[0]))))
    nearest = cos.argmax(axis=2)  # (pairs, n)
    hits = nearest == np.arange(n)[None, :]
    if pairings is None:
        pairings = random_pairings(n_permutations, len(pa), n, seed)
    # Which B item "is" the translation, shuffled per pair and draw.
    null = (nearest[None] == pairings).mean(axis=(1, 2))
    lo, hi = bootstrap_interval(hits.mean(axis=0), n_boot=n_boot, seed=seed)
    return RetrievalResult(
        precision=float(hits.mean()),
        chance=1.0 / n,
        ci_low=lo,
        ci_high=hi,
        null=null,
        per_pair=hits.mean(axis=1),
        pairs_a=pa,
        pairs_b=pb,
        n_items=n,
        nearest=nearest,
    )
