"""Pure analysis of per-response values: distinct values and gap clustering.

Functions take arrays and return arrays or plain data; no I/O. Values are compared as the exact
float64 the endpoint returned (two responses agree only if their logprobs are bit-identical).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

NULL_FINGERPRINT = "null"


def logprob_to_pct(logprob: np.ndarray | float) -> np.ndarray | float:
    """Logprobs are natural logs; the publication and users think in percent."""
    return np.exp(logprob) * 100.0


@dataclass
class DistinctValues:
    """The distinct logprobs of one token, ascending, with counts and per-fingerprint counts."""

    logprob: np.ndarray
    count: np.ndarray
    fingerprints: list[dict[str, int]]

    @property
    def prob_pct(self) -> np.ndarray:
        return logprob_to_pct(self.logprob)

    def __len__(self) -> int:
        return len(self.logprob)


def unique_inverse(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Like np.unique(values, return_inverse=True, return_counts=True), but hash-based (Arrow's
    dictionary encoding): O(n) instead of a sort of all n values, which matters at 10^7."""
    import pyarrow as pa

    values = np.asarray(values)
    if values.size == 0:
        return values[:0], np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    encoded = pa.array(values).dictionary_encode()
    found = encoded.dictionary.to_numpy(zero_copy_only=False)
    order = np.argsort(found, kind="stable")
    small = np.int32 if order.size < 2**31 else np.int64  # inverse: 4 bytes per response, not 8
    rank = np.empty(order.size, dtype=small)
    rank[order] = np.arange(order.size, dtype=small)
    inverse = rank[encoded.indices.to_numpy(zero_copy_only=False)]
    return found[order], inverse, np.bincount(inverse, minlength=order.size)


def distinct_values(
    logprobs: np.ndarray, fingerprint_codes: np.ndarray, fingerprint_names: Sequence[str]
) -> tuple[DistinctValues, np.ndarray]:
    """Group identical floats (drop missing targets first). Returns the distinct values and, for
    each input, the index of its value."""
    # coded by their bits: bit-identical floats only are one value
    bits, codes, _ = unique_inverse(np.asarray(logprobs, dtype=float).view(np.int64))
    return distinct_coded(codes, bits.view(np.float64), fingerprint_codes, fingerprint_names)


def distinct_coded(
    codes: np.ndarray,
    table: np.ndarray,
    fingerprint_codes: np.ndarray,
    fingerprint_names: Sequence[str],
) -> tuple[DistinctValues, np.ndarray]:
    """`distinct_values` for values already coded: `codes[i]` indexes `table`, whose entries
    are distinct floats in any order. Returns the values present, ascending, and for each input
    the index of its value."""
    table = np.asarray(table, dtype=float)
    counts = np.bincount(codes, minlength=table.size)
    order = np.argsort(table, kind="stable")
    order = order[counts[order] > 0]  # an entry no response holds is not a value
    rank = np.full(table.size, -1, dtype=np.int32)
    rank[order] = np.arange(order.size, dtype=np.int32)
    inverse = rank[codes]
    values = table[order]
    per_value: list[dict[str, int]] = [{} for _ in values]
    if values.size:
        k = len(fingerprint_names)
        pair_counts = np.bincount(
            inverse.astype(np.int64) * k + np.asarray(fingerprint_codes, dtype=np.int64),
            minlength=len(values) * k,
        )
        for pair in np.flatnonzero(pair_counts).tolist():
            value_index, fp_index = divmod(pair, k)
            per_value[value_index][fingerprint_names[fp_index]] = int(pair_counts[pair])
    return DistinctValues(values, counts[order], per_value), inverse


def cluster_ids(sorted_values: np.ndarray, threshold: float) -> np.ndarray:
    """Gap clustering: a new cluster starts where the gap to the previous value is > threshold."""
    sorted_values = np.asarray(sorted_values, dtype=float)
    if sorted_values.size == 0:
        return np.zeros(0, dtype=int)
    return np.concatenate([[0], np.cumsum(np.diff(sorted_values) > threshold)]).astype(int)


def count_clusters(sorted_values: np.ndarray, threshold: float) -> int:
    ids = cluster_ids(sorted_values, threshold)
    return int(ids[-1]) + 1 if ids.size else 0


def clusters_of(distinct: DistinctValues, threshold_pct: float, space: str = "pct") -> list[dict]:
    """Clusters (ascending) in the JSON shape scheduled jobs rely on."""
    axis = distinct.prob_pct if space == "pct" else distinct.logprob
    ids = cluster_ids(axis, threshold_pct)
    pct = distinct.prob_pct
    out: list[dict] = []
    for cid in range(int(ids[-1]) + 1 if ids.size else 0):
        members = np.flatnonzero(ids == cid)
        out.append(
            {
                "count": int(distinct.count[members].sum()),
                "min_pct": float(pct[members[0]]),
                "max_pct": float(pct[members[-1]]),
                "values": [
                    {
                        "prob_pct": float(pct[i]),
                        "logprob": float(distinct.logprob[i]),
                        "count": int(distinct.count[i]),
                        "fingerprints": distinct.fingerprints[i],
                    }
                    for i in members
                ],
            }
        )
    return out
