"""How well a clustering matches known labels: purity, completeness and the adjusted Rand index.

For ``n`` items with a true label and a found cluster each, from the contingency table ``n_ij``
(items of label ``i`` in cluster ``j``), row sums ``a_i``, column sums ``b_j``:

- *purity*: ``sum_j max_i n_ij / n``, the share of items in their cluster's majority label
  (1.0 when no campaign mixes families);
- *completeness* (inverse purity): ``sum_i max_j n_ij / n``, the share of items in their label's
  largest cluster (1.0 when no family is split);
- *adjusted Rand index* (Hubert & Arabie 1985): ``(index - expected) / (max - expected)`` with
  ``index = sum C(n_ij, 2)``, ``expected = sum C(a_i, 2) * sum C(b_j, 2) / C(n, 2)`` and
  ``max = (sum C(a_i, 2) + sum C(b_j, 2)) / 2``; 1.0 for identical partitions, about 0 for a
  random one; 1.0 too when both partitions are trivial (max == expected).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence


def _c2(k: int) -> int:
    return k * (k - 1) // 2


def _table(truth: Sequence[Hashable], found: Sequence[Hashable]) -> Counter[tuple[Hashable, Hashable]]:
    if len(truth) != len(found):
        raise ValueError("truth and found differ in length")
    return Counter(zip(truth, found, strict=True))


def purity(truth: Sequence[Hashable], found: Sequence[Hashable]) -> float:
    table = _table(truth, found)
    best: dict[Hashable, int] = {}
    for (_, j), k in table.items():
        best[j] = max(best.get(j, 0), k)
    return sum(best.values()) / len(truth) if truth else 1.0


def completeness(truth: Sequence[Hashable], found: Sequence[Hashable]) -> float:
    return purity(found, truth)


def adjusted_rand_index(truth: Sequence[Hashable], found: Sequence[Hashable]) -> float:
    table = _table(truth, found)
    n = len(truth)
    index = sum(_c2(k) for k in table.values())
    rows = sum(_c2(k) for k in Counter(truth).values())
    cols = sum(_c2(k) for k in Counter(found).values())
    pairs = _c2(n)
    expected = rows * cols / pairs if pairs else 0.0
    best = (rows + cols) / 2
    if best == expected:
        return 1.0
    return (index - expected) / (best - expected)
