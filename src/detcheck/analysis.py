"""Pure analysis of stored responses: target extraction, distinct values, gap clustering.

Functions take arrays and return arrays or plain data; no I/O. Values are compared as the exact
float64 the endpoint returned (two responses agree only if their logprobs are bit-identical).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

NULL_FINGERPRINT = "null"


def logprob_to_pct(logprob: np.ndarray | float) -> np.ndarray | float:
    """Logprobs are natural logs; the publication and users think in percent."""
    return np.exp(logprob) * 100.0


def target_logprobs(top_logprobs: pa.Array | pa.ChunkedArray, token: str) -> np.ndarray:
    """For each response, the logprob of `token` in its top list (NaN where it is absent).

    A list that names the token twice (endpoints whose token texts collide) counts the first.
    """
    if isinstance(top_logprobs, pa.ChunkedArray):
        top_logprobs = (
            top_logprobs.combine_chunks()
            if top_logprobs.num_chunks
            else pa.array([], top_logprobs.type)
        )
    n = len(top_logprobs)
    out = np.full(n, np.nan)
    if n == 0:
        return out
    flat = pc.list_flatten(top_logprobs)
    parents = pc.list_parent_indices(top_logprobs).to_numpy()
    hit = pc.equal(pc.struct_field(flat, "token"), token).to_numpy(zero_copy_only=False)
    hit = np.asarray(hit, dtype=bool) & ~np.asarray(pc.is_null(pc.struct_field(flat, "token")))
    idx = np.flatnonzero(hit)
    if idx.size == 0:
        return out
    rows, first = np.unique(parents[idx], return_index=True)
    values = pc.struct_field(flat, "logprob").to_numpy(zero_copy_only=False)
    out[rows] = np.asarray(values[idx[first]], dtype=float)
    return out


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


def distinct_values(logprobs: np.ndarray, fingerprints: Sequence[str | None]) -> DistinctValues:
    """Group identical floats. `logprobs` must be finite (drop missing targets first)."""
    logprobs = np.asarray(logprobs, dtype=float)
    fps = np.asarray([NULL_FINGERPRINT if f is None else f for f in fingerprints], dtype=object)
    values, inverse, counts = np.unique(logprobs, return_inverse=True, return_counts=True)
    fp_names, fp_codes = np.unique(fps.astype(str), return_inverse=True) if len(fps) else ([], [])
    per_value: list[dict[str, int]] = [{} for _ in values]
    if len(values):
        pairs, pair_counts = np.unique(
            inverse.ravel() * len(fp_names) + np.asarray(fp_codes).ravel(), return_counts=True
        )
        for pair, c in zip(pairs.tolist(), pair_counts.tolist()):
            value_index, fp_index = divmod(pair, len(fp_names))
            per_value[value_index][str(fp_names[fp_index])] = c
    return DistinctValues(values, counts, per_value)


def cluster_ids(sorted_values: np.ndarray, threshold: float) -> np.ndarray:
    """Gap clustering: a new cluster starts where the gap to the previous value is > threshold."""
    sorted_values = np.asarray(sorted_values, dtype=float)
    if sorted_values.size == 0:
        return np.zeros(0, dtype=int)
    return np.concatenate([[0], np.cumsum(np.diff(sorted_values) > threshold)]).astype(int)


def count_clusters(sorted_values: np.ndarray, threshold: float) -> int:
    ids = cluster_ids(sorted_values, threshold)
    return int(ids[-1]) + 1 if ids.size else 0


def fingerprint_counts(fingerprints: Sequence[str | None]) -> dict[str, int]:
    names, counts = np.unique(
        np.asarray([NULL_FINGERPRINT if f is None else f for f in fingerprints], dtype=str),
        return_counts=True,
    )
    return {str(k): int(v) for k, v in zip(names, counts)}


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
