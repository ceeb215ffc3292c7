"""Stored whole generations, read for the analysis (detcheck.analysis.generations) without
holding them whole: a completion is a 128-bit identity (two polynomial hashes of its tokens'
own hashes, position by position, and its length), its length, and where it is stored; the
counts the report needs (finish reasons, fingerprints, failed attempts, answers) are tallied
as the batches go by. Reading a million 128-token completions holds ~30 MB of them, not the
~1.5 GB of padded codes and logprobs it took before.

What needs the tokens themselves (where completions part from the modal one, the drift of its
logprobs) reads them again, a batch at a time (`Generations.batches`), or from the batches kept
when the runs are small (KEEP_ROWS), as a prompt set's runs are: each is then read once."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from detcheck.errors import DataError, UsageError

GENERATION_COLUMNS = ["ok", "seq", "system_fingerprint", "finish_reason", "text"]
GENERATION_COLUMNS += ["gen_tokens", "gen_logprobs", "http_status", "error_type", "answer"]
KEEP_ROWS = 50_000  # runs of at most this many rows are read once, their batches kept
BATCH_ROWS = 8_192
# tokens as Parquet stores them: each row group's distinct tokens once, and their indices
# (no string per token is made: 1,000,000 x 128 tokens read in 0.4 s instead of 1.5 s)
TOKENS_AS_CODES = ["gen_tokens.list.element"]

END = -1  # "no token here": the completion ended before this position
# the polynomial hashes' bases (odd, so every power is a unit mod 2^64) and the mix of a length
_BASES = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F))
_LENGTH_MIX = np.uint64(0xFF51AFD7ED558CCD)
_NULL_TOKEN = "\x00detcheck: a null token"


class TokenHashes:
    """Each distinct token's two 64-bit hashes (blake2b of its UTF-8), worked out once."""

    def __init__(self):
        self.known: dict[str | None, tuple[int, int]] = {}

    def of(self, dictionary: Sequence[str | None]) -> np.ndarray:
        """(len(dictionary), 2) uint64: the hashes of these tokens, in order."""
        out = np.empty((len(dictionary), 2), np.uint64)
        known = self.known
        for k, token in enumerate(dictionary):
            pair = known.get(token)
            if pair is None:
                text = _NULL_TOKEN if token is None else token
                digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16)
                raw = digest.digest()
                pair = known[token] = (int.from_bytes(raw[:8], "little"),
                                       int.from_bytes(raw[8:], "little"))  # fmt: skip
            out[k] = pair
        return out


@dataclass
class Tokens:
    """One batch of completions' tokens, flattened: each token's code in the batch's
    dictionary, and that code's hashes; each row's length. Every row of the same length
    (`uniform`, the usual case: answers cut at max_tokens) allows (rows, positions) views."""

    codes: np.ndarray  # each token's index in `dictionary`
    dictionary: list  # the batch's distinct tokens
    table: np.ndarray  # (len(dictionary), 2) uint64: each distinct token's hashes
    lengths: np.ndarray  # each row's token count (all of them, past any cap)
    uniform: int | None  # the length of every row, if they are all one length

    def hashes(self, k: int) -> np.ndarray:
        """Each token's k-th hash."""
        return self.table[:, k][self.codes]

    @property
    def starts(self) -> np.ndarray:
        return np.cumsum(self.lengths) - self.lengths

    @property
    def rows(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.lengths)), self.lengths)

    @property
    def positions(self) -> np.ndarray:
        total = int(self.lengths.sum())
        return np.arange(total, dtype=np.int64) - np.repeat(self.starts, self.lengths)

    def grid(self, values: np.ndarray) -> np.ndarray:
        """Per-token `values` as a (rows, uniform) view."""
        return values.reshape(len(self.lengths), self.uniform)

    def joined(self, row: int) -> str | None:
        """The row's tokens as one text (a null token adds nothing)."""
        start = int(self.starts[row]) if self.uniform is None else row * self.uniform
        tokens = [self.dictionary[c] for c in self.codes[start : start + int(self.lengths[row])]]
        return None if None in tokens else "".join(tokens)  # as Arrow's join: null if one is


def batch_tokens(tokens: pa.Array, hasher: TokenHashes) -> Tokens:
    """A list<string> column of a batch (its strings dictionary-encoded, as Parquet gives them
    with `read_dictionary`, or encoded here), flattened and hashed."""
    if isinstance(tokens, pa.ChunkedArray):
        tokens = tokens.combine_chunks()
    lengths = pc.fill_null(pc.list_value_length(tokens), 0).to_numpy(zero_copy_only=False)
    flat = pc.list_flatten(tokens)
    if isinstance(flat, pa.ChunkedArray):
        flat = flat.combine_chunks()
    if not pa.types.is_dictionary(flat.type):
        flat = pc.dictionary_encode(flat)
    dictionary, indices = flat.dictionary.to_pylist(), flat.indices
    if indices.null_count:  # a null token is a token of its own
        dictionary = [*dictionary, None]
        indices = pc.fill_null(indices, len(dictionary) - 1)
    codes = indices.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    lengths = lengths.astype(np.int64, copy=False)
    uniform = int(lengths[0]) if len(lengths) and (lengths == lengths[0]).all() else None
    return Tokens(codes, dictionary, hasher.of(dictionary), lengths, uniform)


def identities(t: Tokens) -> np.ndarray:
    """(rows, 2) uint64: each completion's identity (every token, in order, and its length)."""
    n = len(t.lengths)
    out = np.zeros((n, 2), np.uint64)
    mix = t.lengths.astype(np.uint64)[:, None] * _LENGTH_MIX
    if not len(t.codes):
        return out ^ mix
    top = int(t.lengths.max())
    with np.errstate(over="ignore"):
        for k, base in enumerate(_BASES):
            powers = np.cumprod(np.full(top, base, np.uint64), dtype=np.uint64)
            hashes = t.hashes(k)
            if t.uniform is not None:
                grid = t.grid(hashes)
                grid *= powers[None, :]
                out[:, k] = grid.sum(axis=1, dtype=np.uint64)
            else:
                terms = hashes * powers[t.positions]
                filled = t.lengths > 0
                out[filled, k] = np.add.reduceat(terms, t.starts[filled])
        out ^= mix
    return out


@dataclass
class Generations:
    """The successful responses of some runs: each one's identity and length, and what the
    report counts of them; their tokens and logprobs read again when needed."""

    identity: np.ndarray  # (responses, 2) uint64
    lengths: np.ndarray  # tokens read of each (to max_tokens)
    width: int  # positions read: the longest answer, or max_tokens
    finish_reasons: Counter
    fingerprints: Counter
    errors_by_type: dict[str, int]
    where: list[tuple[object, np.ndarray]]  # (run, seqs of its responses), in order
    cap: int | None = None  # max_tokens, where every run asked for one
    answer_tally: dict | None = None  # the answers (by --answer-regex, or the data's own)
    over_length: int = 0  # answers longer than asked (a server that ignored max_tokens)
    text_mismatch: int = 0  # responses whose text is not their tokens joined
    # asked for without logprobs: a completion is its text, and where answers part, their
    # lengths in tokens and every logprob are unknown
    text_only: bool = False
    kept: list[pa.RecordBatch] | None = None  # the good rows, when the runs were small
    hasher: TokenHashes = field(default_factory=TokenHashes)
    modal_top: list | None = None  # the modal response's top logprobs, once fetched
    batch_rows: int = BATCH_ROWS

    @property
    def n(self) -> int:
        return int(self.identity.shape[0])

    def locate(self, response: int) -> tuple[object, int]:
        """The run and seq of the response-th response (to fetch one row's detail)."""
        for run, seqs in self.where:
            if response < len(seqs):
                return run, int(seqs[response])
            response -= len(seqs)
        raise IndexError(response)

    def batches(self, columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
        """The good rows again, in order, a batch at a time (`columns` of them)."""
        if self.kept is not None:
            for batch in self.kept:
                yield batch.select(columns)
            return
        runs = list({id(run): run for run, _ in self.where}.values())  # each once, in order
        workers = 2 if self.n > KEEP_ROWS else 0
        for run in runs:
            for batch in run.batches(["ok", *columns], self.batch_rows, TOKENS_AS_CODES, workers):
                yield _good(batch).select(columns)

    def rows(self, responses: Sequence[int], columns: Sequence[str]) -> dict[int, dict]:
        """Those responses' `columns`, by response number (a few: the listed completions)."""
        wanted = sorted(set(responses))
        found: dict[int, dict] = {}
        if self.kept is not None:
            at = 0
            for batch in self.kept:
                for r in wanted:
                    if at <= r < at + batch.num_rows:
                        found[r] = batch.select(columns).slice(r - at, 1).to_pylist()[0]
                at += batch.num_rows
            return found
        for r in wanted:
            run, seq = self.locate(r)
            found[r] = run.row(seq, list(columns)) or {}
        return found


def read_generations(runs, answer_regex: str | None = None, *, keep: bool | None = None,
                     batch_rows: int = BATCH_ROWS) -> Generations:  # fmt: skip
    """The successful responses of `runs`, in the order they were received: each one's
    identity, its length read to max_tokens where a server sent more than asked (one
    120,000-token answer does not widen them all), and the report's tallies. `keep`: hold the
    batches for the second look (default: when the runs have at most KEEP_ROWS rows)."""
    regex = _compiled(answer_regex)
    if any((r.meta.get("config") or {}).get("logprobs") is False for r in runs):
        return _read_texts(runs, regex)
    asked = [int((r.meta.get("config") or {}).get("max_tokens") or 0) for r in runs]
    cap = max(asked) if asked and min(asked) > 0 else None
    if keep is None:
        keep = sum(r.num_rows() for r in runs) <= KEEP_ROWS
    columns = GENERATION_COLUMNS + (["gen_top_logprobs"] if keep else [])
    hasher = TokenHashes()
    ids, lengths, kept, where = [], [], [], []
    errors, reasons, fps, answers = Counter(), Counter(), Counter(), Counter()
    have_answers = False
    mismatch = over = 0
    workers = 2 if sum(r.num_rows() for r in runs) > KEEP_ROWS else 0
    for run in runs:
        for batch in run.batches(columns, batch_rows, TOKENS_AS_CODES, workers):
            good = _good(batch, errors)
            if good.num_rows == 0:
                continue
            tokens = good.column("gen_tokens")
            if tokens.null_count == len(tokens):
                raise DataError(
                    f"{run.path}: holds no whole generations (a `flip` run: analyse it as one, "
                    "or measure whole answers with `detcheck generate`)"
                )
            t = batch_tokens(tokens, hasher)
            batch_ids = identities(t)
            ids.append(batch_ids)
            lengths.append(np.minimum(t.lengths, cap) if cap is not None else t.lengths)
            over += int((t.lengths > cap).sum()) if cap is not None else 0
            texts = good.column("text")
            mismatch += _mismatched(t, batch_ids, texts, tokens)
            _tally(reasons, good.column("finish_reason"))
            _tally(fps, good.column("system_fingerprint"))
            if regex is not None:
                answers.update(_answers(texts.to_pylist(), regex))
            else:
                given = good.column("answer")
                have_answers = have_answers or given.null_count < len(given)
                answers.update(given.to_pylist())
            where.append((run, good.column("seq").to_numpy()))
            if keep:
                kept.append(good)
    if not ids:
        return Generations(np.zeros((0, 2), np.uint64), np.zeros(0, np.int64), 0, Counter(),
                           Counter(), dict(errors), [], cap)  # fmt: skip
    lengths_all = np.concatenate(lengths)
    tally = None
    if regex is not None or have_answers:
        tally = answer_tally(answers)
    return Generations(
        np.concatenate(ids),
        lengths_all,
        int(lengths_all.max()) if lengths_all.size else 0,
        reasons,
        fps,
        dict(errors),
        where,
        cap=cap,
        answer_tally=tally,
        over_length=over,
        text_mismatch=mismatch,
        kept=kept if keep else None,
        hasher=hasher,
        batch_rows=batch_rows,
    )


def _read_texts(runs, regex) -> Generations:
    """Generations known by their text only (some runs were asked for without logprobs): each
    response's text is its identity; runs with tokens are read by their text too, so that they
    pool with the others on what both have."""
    ids, where, kept = [], [], []
    errors, reasons, fps, answers = Counter(), Counter(), Counter(), Counter()
    have_answers = False
    keep = sum(r.num_rows() for r in runs) <= KEEP_ROWS
    hasher = TokenHashes()
    for run in runs:
        for batch in run.batches(GENERATION_COLUMNS, batch_size=BATCH_ROWS):
            ok = batch.column("ok")
            failed = batch.filter(pc.invert(ok))
            errors.update(e or "unknown" for e in failed.column("error_type").to_pylist())
            good = batch.filter(ok)
            if not good.num_rows:
                continue
            encoded = pc.dictionary_encode(good.column("text"))
            dictionary = encoded.dictionary.to_pylist() + [None]  # a null text: one of its own
            codes = pc.fill_null(encoded.indices, len(dictionary) - 1).to_numpy(
                zero_copy_only=False)  # fmt: skip
            ids.append(hasher.of(dictionary)[codes])
            _tally(reasons, good.column("finish_reason"))
            _tally(fps, good.column("system_fingerprint"))
            if regex is not None:
                answers.update(_answers(good.column("text").to_pylist(), regex))
            else:
                given = good.column("answer")
                have_answers = have_answers or given.null_count < len(given)
                answers.update(given.to_pylist())
            where.append((run, good.column("seq").to_numpy()))
            if keep:
                kept.append(good)
    identity = np.concatenate(ids) if ids else np.zeros((0, 2), np.uint64)
    tally = answer_tally(answers) if (regex is not None or have_answers) and ids else None
    return Generations(
        identity, np.ones(len(identity), np.int64), 1, reasons, fps, dict(errors), where,
        answer_tally=tally, text_only=True, kept=kept if keep else None, hasher=hasher,
    )  # fmt: skip


def _good(batch: pa.RecordBatch, errors: Counter | None = None) -> pa.RecordBatch:
    """The batch's successful rows (itself when all are: a filter copies every list); the
    failed ones' error types counted into `errors`."""
    ok = batch.column("ok")
    if ok.null_count == 0 and pc.all(ok).as_py():
        return batch
    if errors is not None:
        failed = batch.filter(pc.invert(ok))
        errors.update(e or "unknown" for e in failed.column("error_type").to_pylist())
    return batch.filter(ok)


def _mismatched(t: Tokens, ids: np.ndarray, texts: pa.Array, tokens: pa.Array) -> int:
    """Responses whose text is not their tokens joined: each distinct completion's tokens are
    joined once, and compared with the texts of all that gave it (in C)."""
    rows = ids.view(np.dtype((np.void, 16))).ravel()
    _, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
    joined = pa.array([t.joined(r) for r in first.tolist()], pa.string())
    expected = joined.take(pa.array(inverse.ravel()))
    expected = pc.if_else(pc.is_null(tokens), None, expected)  # no tokens: nothing to compare
    return int(pc.sum(pc.fill_null(pc.not_equal(expected, texts), False)).as_py() or 0)


def _tally(counter: Counter, column) -> None:
    for entry in pc.value_counts(column).to_pylist():
        counter[entry["values"] or "null"] += entry["counts"]


def _compiled(pattern: str | None):
    if pattern is None:
        return None
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise UsageError(f"--answer-regex is not a regular expression: {exc}") from None


def _answers(texts: Sequence[str | None], regex) -> list[str | None]:
    """The answer in each text: the regex's first group if it has one, else its whole match;
    None where it does not match."""
    out = []
    for text in texts:
        found = regex.search(text or "")
        out.append(None if found is None else (found.group(1) if regex.groups else found.group(0)))
    return out


def answer_tally(tally: Counter) -> dict:
    total = sum(tally.values())
    modal, count = tally.most_common(1)[0]
    return {
        "distinct": len(tally),
        "modal": modal,
        "modal_share": count / total,
        "unmatched": tally.get(None, 0),
    }
