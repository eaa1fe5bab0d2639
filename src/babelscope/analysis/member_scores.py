"""AP of every unit when each concept is scored on its own subset of a pool.

With matched pools (:mod:`babelscope.concepts.matching`) every concept of a language has
its own members (its positives and the negatives matched to them), all drawn from the
one extracted pool. A concept's AP is computed over its members only, on each half
(:mod:`babelscope.analysis.halves`) and in-sample. Concepts with the same members (all
of them in an unmatched pool) share one ranking.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from babelscope.analysis.ap_sets import ap_of_sets, inverse_ranks, ranks


def member_groups(
    members: np.ndarray, rows: np.ndarray | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(sentence indices, concept columns)`` of every distinct member set of ``members``
    (n, C), optionally restricted to sentences ``rows`` (bool (n,))."""
    m = np.asarray(members, dtype=bool)
    if rows is not None:
        m = m & np.asarray(rows, dtype=bool)[:, None]
    seen: dict[bytes, int] = {}
    out: list[tuple[np.ndarray, list[int]]] = []
    for j in range(m.shape[1]):
        key = np.packbits(m[:, j]).tobytes()
        if key not in seen:
            seen[key] = len(out)
            out.append((np.flatnonzero(m[:, j]), []))
        out[seen[key]][1].append(j)
    return [(idx, np.array(cols, dtype=np.int64)) for idx, cols in out]


@dataclass
class HalfRanks:
    """The rankings of one pool's members on each half: ``tables[h][t]`` is the ``N_ge``
    (members, units) of member set ``t``; ``which[h][j]`` the set of concept ``j`` and
    ``rows[h][t]`` its sentence indices into the pool."""

    tables: list[list[np.ndarray]]
    inv: list[list[np.ndarray]]
    which: list[np.ndarray]
    rows: list[list[np.ndarray]]


def half_scores(
    x: np.ndarray, labels: np.ndarray, half: np.ndarray, members: np.ndarray
) -> tuple[HalfRanks, np.ndarray, np.ndarray]:
    """Rankings of every unit on each half of every member set, and the AP on each half
    of every concept, ``(C, U)`` float32 per half (NaN without positives there)."""
    y = np.asarray(labels, dtype=bool)
    n_c, n_u = y.shape[1], x.shape[1]
    tables, invs, which, rowss, aps = [], [], [], [], []
    for h in (0, 1):
        ap = np.full((n_c, n_u), np.nan, dtype=np.float32)
        wh = np.full(n_c, -1, dtype=np.int64)
        tab, inv, rws = [], [], []
        for idx, cols in member_groups(members, np.asarray(half) == h):
            if len(idx) == 0:
                continue
            t = len(tab)
            r = ranks(x[idx])
            tab.append(r)
            inv.append(inverse_ranks(r))
            rws.append(idx)
            wh[cols] = t
            ap[cols] = ap_of_sets(r, [np.flatnonzero(y[idx, j]) for j in cols], inv[-1])
        tables.append(tab)
        invs.append(inv)
        which.append(wh)
        rowss.append(rws)
        aps.append(ap)
    return HalfRanks(tables, invs, which, rowss), aps[0], aps[1]


def member_counts(
    labels: np.ndarray, half: np.ndarray, members: np.ndarray
) -> dict[str, np.ndarray]:
    """(2, C) positives and members of every concept in each half."""
    y = np.asarray(labels, dtype=bool) & members
    return {
        "n_pos_half": np.stack([y[half == h].sum(axis=0) for h in (0, 1)]).astype(np.int64),
        "n_member_half": np.stack([members[half == h].sum(axis=0) for h in (0, 1)]).astype(
            np.int64
        ),
    }


def score_members(
    get_layer: Any,
    layers: list[int],
    labels: np.ndarray,
    members: np.ndarray,
    *,
    threads: int | None = None,
) -> tuple[dict[str, np.ndarray], list[int]]:
    """In-sample AP and activation statistics of every unit of every layer for every
    concept over its members: ``{stat: (C, total units)}`` and the widths."""
    from babelscope.analysis.average_precision import score_units

    stats = ("ap", "on_p50", "on_p90", "off_mean")
    y = np.asarray(labels, dtype=bool)
    groups = member_groups(members)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in stats}
    widths = []
    for layer in layers:
        x = get_layer(layer)
        out = {k: np.full((y.shape[1], x.shape[1]), np.nan) for k in stats}
        for idx, cols in groups:
            if len(idx) == 0:
                continue
            whole = len(idx) == x.shape[0]  # every sentence a member: no copy of the layer
            res = score_units(x if whole else x[idx], y[:, cols] if whole else y[np.ix_(idx, cols)],
                              threads=threads)  # fmt: skip
            for k in stats:
                out[k][cols] = getattr(res, k)
        widths.append(int(x.shape[1]))
        for k in stats:
            parts[k].append(out[k])
        del x
    return {k: np.concatenate(v, axis=1) for k, v in parts.items()}, widths
