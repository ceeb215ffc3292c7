"""Stored whole generations as arrays: every successful response's tokens as integer codes and
its logprobs, padded to the longest answer (or max_tokens), with texts, finish reasons and
fingerprints alongside. The generation analysis (detcheck.analysis.generations) starts here."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from detcheck.errors import DataError

GENERATION_COLUMNS = ["ok", "seq", "system_fingerprint", "finish_reason", "text"]
GENERATION_COLUMNS += ["gen_tokens", "gen_logprobs", "http_status", "error_type", "answer"]


END = -1  # the code of "no token here": the completion ended before this position


@dataclass
class Generations:
    """The successful responses of some runs, position by position."""

    codes: np.ndarray  # (responses, positions) int32 token codes, END past each one's end
    logprobs: np.ndarray  # (responses, positions) float64, NaN past the end (or unusable)
    vocabulary: list[str | None]  # code -> token
    texts: list[str | None]
    finish_reasons: list[str | None]
    fingerprints: list[str | None]
    errors_by_type: dict[str, int]
    where: list[tuple[object, np.ndarray]]  # (run, seqs of its responses), in order
    modal_top: list[list[float]] | None = None  # the modal response's top logprobs, fetched
    # answers longer than asked (a server that ignores max_tokens) are read to max_tokens; what
    # follows is told apart by `tails` (0: none), so they still count as different completions
    tails: np.ndarray | None = None
    # the answers the data gave beside the texts (`import --answer`); None when none did
    answers: list[str | None] | None = None
    over_length: int = 0
    text_mismatch: int = 0  # responses whose text is not their tokens joined
    # asked for without logprobs: a completion is its text (one code per response), and where
    # answers part, their lengths in tokens and every logprob are unknown
    text_only: bool = False

    @property
    def identity(self) -> np.ndarray:
        """What makes a completion: its tokens, and what came past max_tokens."""
        if self.tails is None or not self.tails.any():
            return self.codes
        return np.column_stack([self.codes, self.tails.astype(self.codes.dtype)])

    @property
    def n(self) -> int:
        return int(self.codes.shape[0])

    def locate(self, response: int) -> tuple[object, int]:
        """The run and seq of the response-th response (to fetch one row's detail)."""
        for run, seqs in self.where:
            if response < len(seqs):
                return run, int(seqs[response])
            response -= len(seqs)
        raise IndexError(response)


def read_generations(runs) -> Generations:
    """The generated tokens and logprobs of every successful response of `runs`, in the order
    they were received, as arrays padded to the longest answer, or to max_tokens where a
    server sent more than asked (one 120,000-token answer does not widen them all)."""
    token_chunks, logprob_chunks, text_chunks = [], [], []
    reasons, fps, where = [], [], []
    errors: Counter = Counter()
    if any((r.meta.get("config") or {}).get("logprobs") is False for r in runs):
        return _read_texts(runs)
    asked = [int((r.meta.get("config") or {}).get("max_tokens") or 0) for r in runs]
    cap = max(asked) if asked and min(asked) > 0 else None
    for run in runs:
        for batch in run.batches(GENERATION_COLUMNS, batch_size=8_192):
            ok = batch.column("ok")
            failed = batch.filter(pc.invert(ok))
            errors.update(e or "unknown" for e in failed.column("error_type").to_pylist())
            good = batch.filter(ok)
            if good.num_rows == 0:
                continue
            tokens = good.column("gen_tokens")
            if tokens.null_count == len(tokens):
                raise DataError(
                    f"{run.path}: holds no whole generations (a `flip` run: analyse it as one, "
                    "or measure whole answers with `detcheck generate`)"
                )
            token_chunks.append(tokens)
            logprob_chunks.append(good.column("gen_logprobs"))
            text_chunks.append(good.column("text"))
            reasons += good.column("finish_reason").to_pylist()
            fps += good.column("system_fingerprint").to_pylist()
            where.append((run, good.column("seq").to_numpy()))
    if not token_chunks:
        return Generations(
            np.zeros((0, 0), np.int32), np.zeros((0, 0)), [], [], [], [], dict(errors), []
        )
    tokens = pa.chunked_array(token_chunks).combine_chunks()
    logprobs = pa.chunked_array(logprob_chunks).combine_chunks()
    texts = pa.chunked_array(text_chunks).combine_chunks()
    mismatch = pc.sum(pc.fill_null(pc.not_equal(pc.binary_join(tokens, ""), texts), False))
    lengths = pc.fill_null(pc.list_value_length(tokens), 0).to_numpy(zero_copy_only=False)
    tails, over_length = None, 0
    if cap is not None and lengths.size and int(lengths.max()) > cap:
        over = np.flatnonzero(lengths > cap)
        over_length = int(over.size)
        seen: dict[tuple, int] = {}
        tails = np.zeros(lengths.size, np.int64)
        for row in over.tolist():  # few, by their nature: told apart by what follows cap
            tail = tuple(tokens[row].values[cap:].to_pylist())
            tails[row] = seen.setdefault(tail, len(seen) + 1)
        tokens = pc.list_slice(tokens, 0, cap)
        logprobs = pc.list_slice(logprobs, 0, cap)
        lengths = np.minimum(lengths, cap)
    width = int(lengths.max()) if lengths.size else 0
    destination = _flat_destinations(lengths, width)
    codes, vocabulary = _padded_codes(tokens, destination, width)
    floats = _padded_floats(logprobs, destination, codes.shape)
    return Generations(
        codes,
        floats,
        vocabulary,
        texts.to_pylist(),
        reasons,
        fps,
        dict(errors),
        where,
        tails=tails,
        over_length=over_length,
        text_mismatch=int(mismatch.as_py() or 0),
    )


def _read_texts(runs) -> Generations:
    """Generations known by their text only (some runs were asked for without logprobs): each
    response's text is its one code; runs with tokens are read by their text too, so that they
    pool with the others on what both have."""
    texts, reasons, fps, where, answers = [], [], [], [], []
    errors: Counter = Counter()
    for run in runs:
        for batch in run.batches(GENERATION_COLUMNS, batch_size=8_192):
            ok = batch.column("ok")
            failed = batch.filter(pc.invert(ok))
            errors.update(e or "unknown" for e in failed.column("error_type").to_pylist())
            good = batch.filter(ok)
            texts += good.column("text").to_pylist()
            answers += good.column("answer").to_pylist()
            reasons += good.column("finish_reason").to_pylist()
            fps += good.column("system_fingerprint").to_pylist()
            where.append((run, good.column("seq").to_numpy()))
    encoded = pc.dictionary_encode(pa.array(texts, pa.string()))
    vocabulary = encoded.dictionary.to_pylist() + [None]
    indices = pc.fill_null(encoded.indices, len(vocabulary) - 1)  # a null text is one of its own
    codes = indices.to_numpy(zero_copy_only=False).astype(np.int32).reshape(-1, 1)
    logprobs = np.full(codes.shape, np.nan)
    return Generations(
        codes, logprobs, vocabulary, texts, reasons, fps, dict(errors), where, text_only=True,
        answers=answers if any(a is not None for a in answers) else None,
    )  # fmt: skip


def _flat_destinations(lengths: np.ndarray, width: int) -> np.ndarray | None:
    """Where each flattened list item goes in a (rows, width) array, row-major; None when every
    list is `width` long (a plain reshape)."""
    if lengths.size == 0 or (lengths == width).all():
        return None
    starts = np.cumsum(lengths) - lengths  # each row's first item in the flat list
    shift = np.arange(lengths.size, dtype=np.int64) * width - starts
    return np.arange(int(lengths.sum()), dtype=np.int64) + np.repeat(shift, lengths)


def _padded(values: np.ndarray, destination, shape, fill) -> np.ndarray:
    if destination is None:
        return values.reshape(shape)
    out = np.full(shape, fill, dtype=values.dtype)
    out.ravel()[destination] = values
    return out


def _padded_codes(tokens: pa.ListArray, destination, width: int) -> tuple[np.ndarray, list]:
    """Token lists as a (responses, longest) array of codes (dictionary-encoded by Arrow, in
    C), END where a response has no token."""
    encoded = pc.dictionary_encode(pc.list_flatten(tokens))
    vocabulary = encoded.dictionary.to_pylist() + [None]
    indices = encoded.indices
    if indices.null_count:  # a null token is a token of its own
        indices = pc.fill_null(indices, len(vocabulary) - 1)
    flat = indices.to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
    return _padded(flat, destination, (len(tokens), width), END), vocabulary


def _padded_floats(lists: pa.ListArray, destination, shape: tuple[int, int]) -> np.ndarray:
    flat = pc.list_flatten(lists).to_numpy(zero_copy_only=False)  # nulls become NaN
    flat = flat.astype(np.float64, copy=False)
    if flat.size != (shape[0] * shape[1] if destination is None else destination.size):
        raise DataError("the stored logprobs do not match the stored tokens, position by position")
    return _padded(flat, destination, shape, np.nan)
