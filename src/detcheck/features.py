"""Per-response features, extracted batch by batch from stored attempts.

Analysis never holds every top-k list in memory: each record batch is reduced to a few numbers
per response (the target's logprob, the top-1 token, the top-1/top-2 gap, a hash of the whole
top-k vector...), and only one representative top-k list is kept per distinct vector.
Pure functions of Arrow arrays; no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from detcheck.analysis import NULL_FINGERPRINT

FEATURE_COLUMNS = (
    "ok",
    "error_type",
    "system_fingerprint",
    "token",
    "top_logprobs",
    "started_at",
    "in_flight",
)

_P1 = np.uint64(0x9E3779B97F4A7C15)
_P2 = np.uint64(0xC2B2AE3D27D4EB4F)


class Codebook:
    """Stable integer codes for strings seen across batches (fingerprints, tokens)."""

    def __init__(self):
        self.names: list[str] = []
        self._index: dict[str, int] = {}

    def code(self, name: str) -> int:
        if name not in self._index:
            self._index[name] = len(self.names)
            self.names.append(name)
        return self._index[name]

    def encode(self, array: pa.Array, null_name: str | None = NULL_FINGERPRINT) -> np.ndarray:
        """Codes for every element; nulls become `null_name` (or -1 when it is None)."""
        encoded = pc.dictionary_encode(array)
        if isinstance(encoded, pa.ChunkedArray):
            encoded = encoded.combine_chunks()
        mapping = np.array(
            [self.code(v) for v in encoded.dictionary.to_pylist()] + [-1], dtype=np.int64
        )
        indices = encoded.indices.fill_null(len(mapping) - 1).to_numpy(zero_copy_only=False)
        codes = mapping[indices]
        if null_name is not None and (codes == -1).any():
            codes[codes == -1] = self.code(null_name)
        return codes


@dataclass
class Features:
    """Arrays over successful responses, in stored order."""

    target_logprob: list = field(default_factory=list)
    fingerprint: list = field(default_factory=list)
    top_token: list = field(default_factory=list)
    top1_logprob: list = field(default_factory=list)
    top2_logprob: list = field(default_factory=list)
    top_k: list = field(default_factory=list)
    vector_hash: list = field(default_factory=list)
    started_at_us: list = field(default_factory=list)
    in_flight: list = field(default_factory=list)
    fingerprints: Codebook = field(default_factory=Codebook)
    tokens: Codebook = field(default_factory=Codebook)
    # one top-k list [(token, logprob), ...] per distinct vector hash
    vectors: dict[int, list[tuple[str, float]]] = field(default_factory=dict)
    errors_by_type: dict[str, int] = field(default_factory=dict)

    def arrays(self) -> dict[str, np.ndarray]:
        names = (
            "target_logprob",
            "fingerprint",
            "top_token",
            "top1_logprob",
            "top2_logprob",
            "top_k",
            "vector_hash",
            "started_at_us",
            "in_flight",
        )
        return {
            name: np.concatenate(getattr(self, name)) if getattr(self, name) else np.zeros(0)
            for name in names
        }


def _flat_logprobs(tops: pa.ListArray) -> np.ndarray:
    values = pc.struct_field(pc.list_flatten(tops), "logprob").to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=float)


def target_values(tops: pa.ListArray, target: str, label_mass: str | None = None) -> np.ndarray:
    """The target's logprob per response (NaN where absent). With `label_mass`, the log of the
    summed probability of every top-k token that is a prefix of that label (leading space
    ignored): e.g. `He`, `Head` and `Heads` all count towards `Heads`."""
    n = len(tops)
    out = np.full(n, np.nan)
    if n == 0:
        return out
    flat = pc.list_flatten(tops)
    parents = pc.list_parent_indices(tops).to_numpy()
    tokens = pc.struct_field(flat, "token")
    logprobs = _flat_logprobs(tops)
    if label_mass is None:
        hit = pc.fill_null(pc.equal(tokens, target), False).to_numpy(zero_copy_only=False)
        idx = np.flatnonzero(hit)
        rows, first = np.unique(parents[idx], return_index=True)
        out[rows] = logprobs[idx[first]]
        return out
    encoded = pc.dictionary_encode(tokens)
    prefix = np.array(
        [
            bool(t and t.lstrip() and label_mass.startswith(t.lstrip()))
            for t in encoded.dictionary.to_pylist()
        ]
        + [False]
    )
    idx = np.flatnonzero(
        prefix[encoded.indices.fill_null(len(prefix) - 1).to_numpy()] & np.isfinite(logprobs)
    )
    mass = np.bincount(parents[idx], weights=np.exp(logprobs[idx]), minlength=n)
    has = np.bincount(parents[idx], minlength=n) > 0
    out[has] = np.log(mass[has])
    return out


def vector_hashes(tops: pa.ListArray, tokens: Codebook) -> np.ndarray:
    """A 64-bit hash of each response's whole top-k list (tokens, exact logprob bits, order)."""
    n = len(tops)
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    flat = pc.list_flatten(tops)
    parents = pc.list_parent_indices(tops).to_numpy()
    token_codes = tokens.encode(pc.struct_field(flat, "token"), null_name="").astype(np.uint64)
    bits = np.nan_to_num(_flat_logprobs(tops), nan=-1e308).view(np.uint64)
    offsets = tops.offsets.to_numpy()
    position = (np.arange(len(parents)) - (offsets[parents] - offsets[0])).astype(np.uint64)
    position += np.uint64(1)
    with np.errstate(over="ignore"):
        mixed = (bits * _P1) ^ (token_codes * _P2) ^ (position * _P1 * _P2)
        mixed ^= mixed >> np.uint64(29)
        mixed *= _P2
    out = np.zeros(n, dtype=np.uint64)
    np.add.at(out, parents, mixed)  # wraps modulo 2^64: order is in `position`
    return out


def extract(
    batches: Iterable[pa.RecordBatch],
    target: str,
    label_mass: str | None = None,
    features: Features | None = None,
) -> Features:
    f = features or Features()
    for batch in batches:
        ok = batch.column("ok").to_numpy(zero_copy_only=False).astype(bool)
        if (~ok).any():
            kinds = batch.column("error_type").filter(pa.array(~ok)).to_pylist()
            for kind in kinds:
                f.errors_by_type[kind or "unknown"] = f.errors_by_type.get(kind or "unknown", 0) + 1
        good = batch.filter(pa.array(ok))
        if good.num_rows == 0:
            continue
        tops = good.column("top_logprobs")
        f.target_logprob.append(target_values(tops, target, label_mass))
        f.fingerprint.append(
            f.fingerprints.encode(good.column("system_fingerprint").cast(pa.string()))
        )
        f.top_token.append(f.tokens.encode(good.column("token"), null_name=""))
        f.top1_logprob.append(_element_logprob(tops, 0))
        f.top2_logprob.append(_element_logprob(tops, 1))
        f.top_k.append(pc.list_value_length(tops).fill_null(0).to_numpy(zero_copy_only=False))
        hashes = vector_hashes(tops, f.tokens)
        f.vector_hash.append(hashes)
        _keep_new_vectors(f, tops, hashes)
        started = good.column("started_at").cast(pa.int64()).fill_null(0)
        f.started_at_us.append(started.to_numpy(zero_copy_only=False))
        f.in_flight.append(good.column("in_flight").fill_null(0).to_numpy(zero_copy_only=False))
    return f


def _element_logprob(tops: pa.ListArray, i: int) -> np.ndarray:
    """Logprob of the i-th entry of each top list (lists come ranked), NaN if too short."""
    lengths = pc.list_value_length(tops).fill_null(0).to_numpy(zero_copy_only=False)
    out = np.full(len(tops), np.nan)
    has = np.flatnonzero(lengths > i)
    if has.size:
        offsets = tops.offsets.to_numpy()
        out[has] = _flat_logprobs(tops)[offsets[has] - offsets[0] + i]
    return out


def _keep_new_vectors(f: Features, tops: pa.ListArray, hashes: np.ndarray) -> None:
    unique, first = np.unique(hashes, return_index=True)
    for h, row in zip(unique.tolist(), first.tolist()):
        if h not in f.vectors:
            entries = tops[row].as_py() or []
            f.vectors[h] = [
                (e["token"], e["logprob"] if e["logprob"] is not None else math.nan)
                for e in entries
            ]
