"""Clustering attack fingerprints into campaigns: exact variants, banded leader linking, components.

The algorithm, and why:

1. **Variants (exact grouping).** Each feature column is dictionary-encoded (pyarrow, sorted
   dictionary so codes do not depend on input order; 0 = absent) and every attack becomes a row
   of ints; identical rows are one *variant* (a 64-bit row hash, ``np.unique``). A bot family
   sends a few variants many times, so a million attacks become far fewer rows to compare.
2. **Similarity.** Weighted agreement of two variants: the weights of the features on which both
   have the same value, over the weights of the features both have plus half the weights of those
   only one has (:data:`~stormwatch.analytics.fingerprint.FEATURES`). A weighted Jaccard on
   (feature, value) pairs: a feature a family randomises per bot costs its small weight; a feature
   neither has (no shellcode analysis) costs nothing, and one only one has (a probe carries no
   payload, an exploit does) costs half: absence is weaker evidence than a different value.
3. **Candidates by bands (blocking).** Comparing all pairs is quadratic; two attacks of one family
   agree at least on one *band*: the exploit framing, the client stack, the payload hash, the
   shellcode's decoder and key, or the offer. Variants are bucketed by each band's values; inside
   a bucket the *leader algorithm* (Hartigan 1975) runs vectorised: the most frequent unassigned
   variant leads, every unassigned variant with similarity >= ``threshold`` to it links to it,
   repeat (at most ``max_leaders`` leaders per bucket: a bucket that fragments into more is left
   to the other bands).
4. **Campaigns** are the connected components of the links (min-label propagation with pointer
   jumping, numpy), numbered by attack count, largest first.

This is single linkage through leaders: a campaign may chain two families whose leaders are
similar enough; the threshold is set on the tuning families of :mod:`stormwatch.demo.families`
(``tests/test_campaigns.py`` reports the held-out ones apart). MinHash LSH was the alternative
for scale; it needs many hash functions per row and gives approximate similarities, while the
bands here are few, exact, and already keep a million attacks well under a minute (bench).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from stormwatch.analytics.fingerprint import FEATURE_NAMES, FEATURES

IntArray = npt.NDArray[np.int64]

THRESHOLD: Final = 0.75
"""Similarity at or above which two variants are one campaign (tuned on the tuning families)."""

MAX_LEADERS: Final = 64

#: Candidate bands: the first feature must be present for a variant to be bucketed in a band.
BANDS: Final[tuple[tuple[str, ...], ...]] = (
    ("vuln", "kind", "arg_units", "prefix_units", "pipe", "fragments", "requests"),
    ("dialects", "native_os", "native_lanman", "auth", "ntlm_flags", "workstation", "vuln"),
    ("payload_sha256",),
    ("decoder", "key"),
    ("offer_file", "offer_port", "offer_protocol"),
)

_MIX = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class Clusters:
    """The result: per attack its campaign (``labels``, 0 = largest) and variant; per campaign the
    consensus values (a feature's value held by more than half its attacks, else absent)."""

    labels: IntArray
    variants: IntArray
    n_variants: int
    sizes: IntArray
    consensus: list[dict[str, str]]

    @property
    def count(self) -> int:
        return len(self.sizes)


def encode(columns: Mapping[str, Sequence[str | None]]) -> tuple[npt.NDArray[np.int32], list[list[str]]]:
    """The feature columns as an (attacks x features) int32 matrix, 0 = absent, and per feature
    its values (code ``c`` is ``values[c - 1]``); codes follow the sorted values."""
    n = len(columns[FEATURE_NAMES[0]]) if FEATURE_NAMES[0] in columns else 0
    codes = np.zeros((n, len(FEATURE_NAMES)), dtype=np.int32)
    values: list[list[str]] = []
    for j, name in enumerate(FEATURE_NAMES):
        col = columns.get(name)
        if col is None or n == 0:
            values.append([])
            continue
        enc = pa.array(col, type=pa.string()).dictionary_encode()
        dictionary = enc.dictionary
        order = pc.sort_indices(dictionary).to_numpy()
        rank = np.empty(len(order), dtype=np.int32)
        rank[order] = np.arange(1, len(order) + 1, dtype=np.int32)
        idx = enc.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        codes[:, j] = np.where(idx >= 0, rank[np.maximum(idx, 0)] if len(rank) else 0, 0)
        values.append([dictionary[int(i)].as_py() for i in order])
    return codes, values


def _row_hash(codes: npt.NDArray[np.int32]) -> npt.NDArray[np.uint64]:
    h = np.zeros(codes.shape[0], dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(codes.shape[1]):
            h = (h ^ codes[:, j].astype(np.uint64)) * _MIX + np.uint64(j + 1)
            h ^= h >> np.uint64(29)
    return h


def similarity(x: npt.NDArray[np.int32], leader: npt.NDArray[np.int32], weights: npt.NDArray[np.float64]
               ) -> npt.NDArray[np.float64]:
    """Weighted agreement of each row of ``x`` with ``leader`` (see the module docstring)."""
    both = (x != 0) & (leader != 0)
    one = (x != 0) ^ (leader != 0)
    same = (x == leader) & both
    total = (both.astype(np.float64) + 0.5 * one.astype(np.float64)) @ weights
    agree = same.astype(np.float64) @ weights
    out: npt.NDArray[np.float64] = np.divide(agree, total, out=np.ones_like(total), where=total > 0)
    return out


def _components(n: int, a: IntArray, b: IntArray) -> IntArray:
    """Connected components of ``n`` nodes and edges (a, b): each node's smallest member."""
    parent = np.arange(n, dtype=np.int64)
    if len(a) == 0:
        return parent
    while True:
        m = np.minimum(parent[a], parent[b])
        before = parent.copy()
        np.minimum.at(parent, a, m)
        np.minimum.at(parent, b, m)
        while True:  # pointer jumping: every node points at its root
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
        if np.array_equal(parent, before):
            return parent


def cluster(columns: Mapping[str, Sequence[str | None]], *, threshold: float = THRESHOLD,
            max_leaders: int = MAX_LEADERS) -> Clusters:
    """Cluster the attacks whose features are ``columns`` (see :func:`fingerprint.columns`)."""
    codes, values = encode(columns)
    n = codes.shape[0]
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Clusters(empty, empty, 0, empty, [])
    h = _row_hash(codes)
    uniq, first, inverse, counts = np.unique(h, return_index=True, return_inverse=True, return_counts=True)
    # variants ordered by attacks (most first), ties by hash: the leaders are the common variants
    order = np.lexsort((uniq, -counts))
    renumber = np.empty(len(order), dtype=np.int64)
    renumber[order] = np.arange(len(order))
    variant_of = renumber[inverse.reshape(-1)]
    vx = codes[first[order]]
    vcount = counts[order]
    v = len(order)
    weights = np.array([f.weight for f in FEATURES], dtype=np.float64)
    edges_a: list[IntArray] = []
    edges_b: list[IntArray] = []
    index = {name: j for j, name in enumerate(FEATURE_NAMES)}
    for band in BANDS:
        cols = [index[name] for name in band]
        members = np.flatnonzero(vx[:, cols[0]] != 0)
        if len(members) < 2:
            continue
        key = _row_hash(vx[members][:, cols])
        # stable sort: inside a bucket, members keep the variant order (most attacks first)
        by_key = np.argsort(key, kind="stable")
        sorted_key = key[by_key]
        starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
        ends = np.r_[starts[1:], len(sorted_key)]
        for s, e in zip(starts, ends, strict=True):
            if e - s < 2:
                continue
            pending = members[by_key[s:e]]
            for _ in range(max_leaders):
                leader = pending[0]
                hit = similarity(vx[pending], vx[leader], weights) >= threshold
                linked = pending[hit]
                edges_a.append(np.full(len(linked), leader, dtype=np.int64))
                edges_b.append(linked)
                pending = pending[~hit]
                if len(pending) < 2:
                    break
    a = np.concatenate(edges_a) if edges_a else np.zeros(0, dtype=np.int64)
    b = np.concatenate(edges_b) if edges_b else np.zeros(0, dtype=np.int64)
    root = _components(v, a, b)
    roots, comp = np.unique(root, return_inverse=True)
    sizes = np.bincount(comp, weights=vcount).astype(np.int64)
    # campaigns numbered by attacks, ties by their first variant (itself ordered by attacks)
    corder = np.lexsort((roots, -sizes))
    crank = np.empty(len(corder), dtype=np.int64)
    crank[corder] = np.arange(len(corder))
    vlabel = crank[comp.reshape(-1)]
    return Clusters(vlabel[variant_of], variant_of, v, sizes[corder],
                    _consensus(vx, vcount, vlabel, len(corder), values))


def _consensus(vx: npt.NDArray[np.int32], vcount: IntArray, vlabel: IntArray, k: int,
               values: list[list[str]]) -> list[dict[str, str]]:
    """Per campaign, each feature's value held by more than half of its attacks."""
    total = np.bincount(vlabel, weights=vcount, minlength=k)
    out: list[dict[str, str]] = [{} for _ in range(k)]
    for j, name in enumerate(FEATURE_NAMES):
        codes = vx[:, j].astype(np.int64)
        width = int(codes.max()) + 1 if len(codes) else 1
        pair = vlabel * width + codes
        uniq, inv = np.unique(pair, return_inverse=True)
        weight = np.bincount(inv.reshape(-1), weights=vcount)
        lab, code = uniq // width, uniq % width
        winners = np.flatnonzero((code != 0) & (weight * 2 > total[lab]))
        for w in winners:
            out[int(lab[w])][name] = values[j][int(code[w]) - 1]
    return out
