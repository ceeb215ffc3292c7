"""Per-response features, extracted batch by batch from stored attempts.

Analysis never holds every top-k list in memory: each record batch is reduced to a few numbers
per response (the target's logprob, the top-1 token, the top-1/top-2 gap, a hash of the whole
top-k vector...), and only one representative top-k list is kept per distinct vector. Tokens are
read as Parquet stores them, dictionary-encoded, and become integer codes: no token string is
materialised per response. Pure functions of Arrow arrays; no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from detcheck.analysis.values import NULL_FINGERPRINT

TOKEN_PATH = "top_logprobs.list.element.token"
LOGPROB_PATH = "top_logprobs.list.element.logprob"
# What analysis reads: never the raw bodies, nor the top-k `bytes`.
FEATURE_COLUMNS = (
    "ok",
    "error_type",
    "system_fingerprint",
    "token",
    TOKEN_PATH,
    LOGPROB_PATH,
    "started_at",
    "in_flight",
)
READ_AS_DICTIONARY = (TOKEN_PATH, "token")

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

    def lookup(self, name: str) -> int:
        """The code of `name`, or -1 if it was never seen."""
        return self._index.get(name, -1)

    def encode(self, array: pa.Array, null_name: str | None = NULL_FINGERPRINT) -> np.ndarray:
        """int32 codes for every element; nulls become `null_name` (or -1 when it is None)."""
        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks()
        encoded = array if pa.types.is_dictionary(array.type) else pc.dictionary_encode(array)
        values = encoded.dictionary.cast(pa.string()).to_pylist()
        mapping = np.array([self.code(v) for v in values] + [-1], dtype=np.int32)
        if encoded.null_count == 0 and (mapping[:-1] == np.arange(len(values))).all():
            # the dictionary lists tokens in the order first coded (a Parquet row group's
            # batches share theirs): the indices are the codes, no per-entry gather
            return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
        indices = encoded.indices.fill_null(len(mapping) - 1).to_numpy(zero_copy_only=False)
        codes = mapping[indices]
        if null_name is not None and (codes == -1).any():
            codes[codes == -1] = self.code(null_name)
        return codes


ARRAYS = {  # name -> dtype of the per-response arrays
    "target": np.int32,  # the target's logprob as an index into Features.target_table, -1: absent
    "fingerprint": np.int32,
    "top_token": np.int32,
    "top1_logprob": np.float32,
    "top2_logprob": np.float32,
    "vector": np.int32,  # which distinct top-k list: an index into Features.vectors
    "started_at_us": np.int64,
    "in_flight": np.int32,
}


@dataclass
class Features:
    """Arrays over successful responses, in stored order (preallocated, filled batch by batch)."""

    capacity: int = 0
    filled: int = 0
    data: dict[str, np.ndarray] = field(default_factory=dict)
    fingerprints: Codebook = field(default_factory=Codebook)
    tokens: Codebook = field(default_factory=Codebook)
    # one top-k list [(token, logprob), ...] per distinct vector, in order of first appearance
    vectors: list[list[tuple[str, float]]] = field(default_factory=list)
    vector_ids: dict[int, int] = field(default_factory=dict)  # vector hash -> index in vectors
    target_ids: dict[int, int] = field(default_factory=dict)  # float64 bits -> index
    errors_by_type: dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        self.data = {k: np.empty(self.capacity, dtype=t) for k, t in ARRAYS.items()}

    @property
    def target_table(self) -> np.ndarray:
        """Each distinct target logprob (exact float64), indexed by the "target" codes."""
        return np.array(list(self.target_ids), dtype=np.int64).view(np.float64)

    def put(self, name: str, values: np.ndarray) -> None:
        into = self.data[name]
        if into.dtype == np.float32 and values.dtype == np.float64:
            # a usable but extreme logprob (-1e308) is past float32's range: the lowest float32
            # says as much for a top-two gap, without an overflow to -inf
            values = np.clip(values, _F32_LOWEST, 0.0)
        into[self.filled : self.filled + len(values)] = values

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: v[: self.filled] for k, v in self.data.items()}


@dataclass
class Flat:
    """The top-k lists of one batch, flattened: per entry its token code and logprob."""

    starts: np.ndarray  # offset of each response's first entry (len = responses + 1)
    codes: np.ndarray  # token codes (Codebook), -1 for a null token
    logprobs: np.ndarray
    k: int | None  # the common list length, when every list has the same (the usual case)

    @property
    def rows(self) -> np.ndarray:
        """Which response each entry belongs to."""
        return np.repeat(np.arange(self.starts.size - 1), np.diff(self.starts))


def flatten(tops: pa.ListArray, tokens: Codebook) -> Flat:
    flat = tops.flatten()
    offsets = tops.offsets.to_numpy()
    starts = offsets - offsets[0]
    lengths = np.diff(starts)
    k = int(lengths[0]) if lengths.size and (lengths == lengths[0]).all() else None
    codes = tokens.encode(flat.field("token"), null_name=None)
    logprobs = np.asarray(flat.field("logprob").to_numpy(zero_copy_only=False), dtype=float)
    return Flat(starts, codes, logprobs, k)


def target_values(
    flat: Flat, n: int, target_code: int, label_codes: np.ndarray | None = None
) -> np.ndarray:
    """The target's logprob per response (NaN where absent). With `label_codes` (the codes of
    every token that is a prefix of the label), the log of their summed probability instead."""
    out = np.full(n, np.nan)
    if label_codes is None:
        idx = np.flatnonzero(flat.codes == target_code)
        rows = idx // flat.k if flat.k else flat.rows[idx]
        first = np.flatnonzero(np.diff(rows, prepend=-1))  # rows ascend: each list's first match
        out[rows[first]] = flat.logprobs[idx[first]]
        return out
    idx = np.flatnonzero(np.isin(flat.codes, label_codes) & np.isfinite(flat.logprobs))
    rows = flat.rows[idx]
    mass = np.bincount(rows, weights=np.exp(flat.logprobs[idx]), minlength=n)
    has = np.bincount(rows, minlength=n) > 0
    out[has] = np.log(mass[has])
    return out


def label_prefix_codes(tokens: Codebook, label: str) -> np.ndarray:
    """Codes of every token seen so far that is a prefix of `label` (leading space ignored)."""
    return np.array(
        [c for c, t in enumerate(tokens.names) if t.lstrip() and label.startswith(t.lstrip())],
        dtype=np.int32,
    )


def _weights(positions: np.ndarray, prime: np.uint64) -> np.ndarray:
    """An odd 64-bit multiplier per list position (odd: no difference is multiplied to 0)."""
    with np.errstate(over="ignore"):
        return ((positions.astype(np.uint64) + np.uint64(1)) * prime) | np.uint64(1)


def vector_hashes(flat: Flat, n: int) -> np.ndarray:
    """A 64-bit hash of each response's whole top-k list (tokens, exact logprob bits, order):
    sum over positions of bits x w1[pos] + code x w2[pos] (mod 2^64), then mixed. A weighted
    sum is one pass (einsum) where an elementwise mix took ten; both paths below give the same
    hash for the same list."""
    logprobs = flat.logprobs
    if np.isnan(logprobs.sum()):  # a NaN somewhere (nulls arrive as NaN): one bit pattern each
        logprobs = np.where(np.isnan(logprobs), np.nan, logprobs)
    bits = np.ascontiguousarray(logprobs).view(np.uint64)
    codes = flat.codes.astype(np.uint64)  # -1 wraps: still distinct
    with np.errstate(over="ignore"):
        if flat.k:  # every list k long (the usual case)
            at = np.arange(flat.k)
            h = np.einsum("ij,j->i", bits.reshape(n, flat.k), _weights(at, _P1))
            h += np.einsum("ij,j->i", codes.reshape(n, flat.k), _weights(at, _P2))
        else:
            h = np.zeros(n, dtype=np.uint64)
            if codes.size:
                position = np.arange(codes.size) - flat.starts[flat.rows]
                mixed = bits * _weights(position, _P1) + codes * _weights(position, _P2)
                nonempty = np.flatnonzero(np.diff(flat.starts))
                h[nonempty] = np.add.reduceat(mixed, flat.starts[nonempty])
        h ^= h >> np.uint64(29)
        h *= _P1
    return h


_F32_LOWEST = float(np.finfo(np.float32).min)


def _element(flat: Flat, i: int) -> np.ndarray:
    """Logprob of the i-th entry of each list (lists come ranked), NaN if too short."""
    lengths = np.diff(flat.starts)
    out = np.full(lengths.size, np.nan)
    has = np.flatnonzero(lengths > i)
    out[has] = flat.logprobs[flat.starts[has] + i]
    return out


def extract(
    batches: Iterable[pa.RecordBatch],
    target: str,
    capacity: int,
    label_mass: str | None = None,
) -> Features:
    f = Features(capacity=capacity)
    for batch in batches:
        ok = batch.column("ok").to_numpy(zero_copy_only=False).astype(bool)
        if not ok.all():
            for kind in batch.column("error_type").filter(pa.array(~ok)).to_pylist():
                f.errors_by_type[kind or "unknown"] = f.errors_by_type.get(kind or "unknown", 0) + 1
        good = batch.filter(pa.array(ok)) if not ok.all() else batch
        n = good.num_rows
        if n == 0:
            continue
        flat = flatten(good.column("top_logprobs"), f.tokens)
        target_code = f.tokens.lookup(target)
        labels = label_prefix_codes(f.tokens, label_mass) if label_mass is not None else None
        f.put("target", _target_ids(f, target_values(flat, n, target_code, labels)))
        f.put("fingerprint", f.fingerprints.encode(good.column("system_fingerprint")))
        f.put("top_token", f.tokens.encode(good.column("token"), null_name=""))
        f.put("top1_logprob", _element(flat, 0))
        f.put("top2_logprob", _element(flat, 1))
        f.put("vector", _vector_ids(f, flat, vector_hashes(flat, n)))
        started = good.column("started_at").cast(pa.int64()).fill_null(0)
        f.put("started_at_us", started.to_numpy(zero_copy_only=False))
        f.put("in_flight", good.column("in_flight").fill_null(0).to_numpy(zero_copy_only=False))
        f.filled += n
    return f


def _numbered(keys: list, known: dict, on_new: Callable[[int], None] | None = None) -> np.ndarray:
    """Ids for a batch's distinct keys (in Arrow dictionary order), one more entry for the
    absent (-1). A key from an earlier batch keeps its id, a new one gets the next;
    `on_new(code)` keeps whatever describes it."""
    ids = np.empty(len(keys) + 1, dtype=np.int32)
    ids[-1] = -1
    for code, key in enumerate(keys):
        if key not in known:
            known[key] = len(known)
            if on_new is not None:
                on_new(code)
        ids[code] = known[key]
    return ids


def _target_ids(f: Features, logprobs: np.ndarray) -> np.ndarray:
    """Each response's index into `f.target_table` (-1 where the target is absent). A batch
    holds few distinct values: coding them here spares the analysis hashing 10^7 floats later,
    and 4 bytes per response instead of 8. Values are told apart by their bits."""
    absent = ~np.isfinite(logprobs)
    encoded = pa.array(logprobs.view(np.int64), mask=absent).dictionary_encode()
    ids = _numbered(encoded.dictionary.to_pylist(), f.target_ids)
    indices = encoded.indices
    if absent.any():
        indices = indices.fill_null(len(ids) - 1)
    return ids[indices.to_numpy(zero_copy_only=False)]


def _vector_ids(f: Features, flat: Flat, hashes: np.ndarray) -> np.ndarray:
    """Each response's index into `f.vectors`, keeping the list of every vector not seen before.
    A batch holds few distinct vectors: they are numbered once, not hashed 10^7 times later."""
    encoded = pa.array(hashes).dictionary_encode()
    codes = encoded.indices.to_numpy()
    # Arrow numbers values in order of first appearance: a first appearance is where the
    # running maximum of the codes grows (no sort of the batch's hashes)
    first = np.flatnonzero(np.diff(np.maximum.accumulate(codes), prepend=-1) > 0)

    def keep_list(code: int) -> None:
        lo, hi = flat.starts[first[code]], flat.starts[first[code] + 1]
        f.vectors.append(
            [
                (f.tokens.names[c] if c >= 0 else "", lp if math.isfinite(lp) else math.nan)
                for c, lp in zip(flat.codes[lo:hi].tolist(), flat.logprobs[lo:hi].tolist())
            ]
        )

    return _numbered(encoded.dictionary.to_pylist(), f.vector_ids, keep_list)[codes]
