"""Whole generations: how many different answers N identical requests gave, where they part,
and why (the near-tie at the split, the drift before it).

`read_generations` turns stored runs into arrays (tokens as integer codes, padded per response);
everything after it is pure numpy on those arrays. A completion is its token sequence: two
responses are the same completion when every generated token is the same.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from detcheck.analysis import stats
from detcheck.errors import DataError, UsageError

GENERATION_COLUMNS = ["ok", "seq", "system_fingerprint", "finish_reason", "text"]
GENERATION_COLUMNS += ["gen_tokens", "gen_logprobs", "http_status", "error_type"]
END = -1  # the code of "no token here": the completion ended before this position
MAX_SPLITS = 50  # splits listed along the modal path (the report stays readable)


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
    over_length: int = 0
    text_mismatch: int = 0  # responses whose text is not their tokens joined

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


def unique_completions(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first response of each distinct completion, inverse, counts), completions ordered by
    count (most common first), ties by first appearance."""
    if codes.shape[0] == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    rows = np.ascontiguousarray(codes).view(
        np.dtype((np.void, codes.dtype.itemsize * codes.shape[1]))
    )
    _, first, inverse, counts = np.unique(
        rows.ravel(), return_index=True, return_inverse=True, return_counts=True
    )
    order = np.lexsort((first, -counts))  # most common first, then earliest
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return first[order], rank[inverse.ravel()], counts[order]


def first_divergence(codes: np.ndarray, modal_row: int) -> np.ndarray:
    """Per response, the 0-based position of the first token that differs from the modal
    completion (ending earlier or later counts as differing); -1 where there is none."""
    if codes.shape[0] == 0:
        return np.zeros(0, np.int64)
    differs = codes != codes[modal_row]
    where = np.argmax(differs, axis=1)
    return np.where(differs.any(axis=1), where, -1)


def on_modal_path(codes: np.ndarray, modal_row: int) -> np.ndarray:
    """(responses, positions): True where a response agrees with the modal completion at this
    position and every one before it."""
    return np.logical_and.accumulate(codes == codes[modal_row], axis=1)


def positions_profile(g: Generations, modal_row: int, agree: np.ndarray) -> list[dict]:
    """One entry per position of the modal completion: among responses that agree with it up
    to there, how many distinct tokens come next, and among those that take the modal token,
    how many bit-distinct logprobs it has and how far they spread (drift that has not, or not
    yet, flipped a token)."""
    out = []
    length = int((g.codes[modal_row] != END).sum())
    for p in range(length):
        before = agree[:, p - 1] if p else np.ones(g.n, bool)
        here = agree[:, p]
        next_tokens = np.unique(g.codes[before, p])
        values = g.logprobs[here, p]
        values = values[~np.isnan(values)]
        distinct = np.unique(values)
        out.append(
            {
                "position": p,
                "token": g.vocabulary[g.codes[modal_row, p]],
                "responses": int(before.sum()),
                "distinct_tokens": int(next_tokens.size),
                "distinct_logprobs": int(distinct.size),
                "logprob_min": float(distinct[0]) if distinct.size else None,
                "logprob_max": float(distinct[-1]) if distinct.size else None,
                "logprob_spread": float(distinct[-1] - distinct[0]) if distinct.size else None,
            }
        )
    return out


def splits_on_modal_path(g: Generations, modal_row: int, agree: np.ndarray) -> list[dict]:
    """Where paths part, read along the modal completion: at each position where responses
    that agreed so far take different tokens, the tokens with their counts, and the top-1/top-2
    logprob gap of the modal response there (a near-tie says why they parted)."""
    out = []
    length = g.codes.shape[1]
    for p in range(length):
        before = agree[:, p - 1] if p else np.ones(g.n, bool)
        if not before.any():
            break
        tokens, counts = np.unique(g.codes[before, p], return_counts=True)
        if tokens.size < 2:
            if g.codes[modal_row, p] == END:
                break
            continue
        order = np.argsort(-counts, kind="stable")
        gap = None
        if g.modal_top is not None and p < len(g.modal_top):
            top = [v for v in g.modal_top[p] if v is not None]
            if len(top) >= 2:
                gap = float(top[0] - top[1])
        out.append(
            {
                "position": p,
                "responses": int(before.sum()),
                "tokens": [
                    {
                        "token": None if tokens[i] == END else g.vocabulary[tokens[i]],
                        "ended": bool(tokens[i] == END),
                        "count": int(counts[i]),
                        "modal": bool(tokens[i] == g.codes[modal_row, p]),
                    }
                    for i in order
                ],
                "top_gap_logprob": gap,
            }
        )
        if len(out) >= MAX_SPLITS:
            break
    return out


def analysis_secrets() -> list[str]:
    """Keys this process knows of (rows were redacted as they were stored; this catches what
    only a join of them makes)."""
    import os

    return [v for k, v in os.environ.items() if k.endswith(("API_KEY", "_TOKEN")) and v]


def answers(texts: Sequence[str | None], pattern: str) -> list[str | None]:
    """The answer in each text: the regex's first group if it has one, else its whole match;
    None where it does not match."""
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise UsageError(f"--answer-regex is not a regular expression: {exc}") from None
    out = []
    for text in texts:
        found = regex.search(text or "")
        out.append(None if found is None else (found.group(1) if regex.groups else found.group(0)))
    return out


def summarise(g: Generations, answer_regex: str | None = None) -> dict:
    """The report of one set of identical requests (one prompt). Every text it makes is
    redacted again (a key split over two tokens is whole only once they are joined)."""
    from detcheck.send.record import redact

    secrets = analysis_secrets()
    first, inverse, counts = unique_completions(g.identity)
    n = g.n
    if n == 0:
        return {"n": 0, "unique_completions": 0, "completions": [], "modal_completion": None}
    modal_row = int(first[0])
    if g.modal_top is None and g.where:  # why paths part: the modal response's near-ties
        run, seq = g.locate(modal_row)
        found = run.row(seq, ["gen_top_logprobs"])
        g.modal_top = (found or {}).get("gen_top_logprobs")
    divergence = first_divergence(g.codes, modal_row)
    agree = on_modal_path(g.codes, modal_row)
    lengths = (g.codes != END).sum(axis=1)
    completions = []
    for k, (row, count) in enumerate(zip(first.tolist(), counts.tolist())):
        if k >= 20:  # the rest are counted, not listed
            break
        parts_at = None if k == 0 else int(divergence[row])
        if parts_at is not None and parts_at < 0:  # the same tokens up to max_tokens
            parts_at = int(g.codes.shape[1])
        # from two tokens before it parts from the modal one: what a reader compares
        parting = "".join(
            g.vocabulary[c] or "" for c in g.codes[row, max(0, (parts_at or 0) - 2) :] if c != END
        )
        completions.append(
            {
                "count": int(count),
                "share": count / n,
                "text": redact(g.texts[row], secrets),
                "tokens": int(lengths[row]),
                "first_divergence": parts_at,
                "parting_text": None if parts_at is None else redact(parting, secrets),
            }
        )
    diverged = divergence[divergence >= 0]
    by_position = Counter(diverged.tolist())
    unseen = stats.unseen(counts)
    unseen["chao1_ci95"] = list(stats.chao1_ci95(counts))
    report = {
        "n": n,
        "max_tokens_seen": int(g.codes.shape[1]),
        "unique_completions": int(counts.size),
        "completions": completions,
        "modal_completion": {
            "count": int(counts[0]),
            "share": float(counts[0] / n),
            "text": redact(g.texts[modal_row], secrets),
            "tokens": int(lengths[modal_row]),
        },
        "first_divergence": {
            "diverged": int(diverged.size),
            "min": int(diverged.min()) if diverged.size else None,
            "median": float(np.median(diverged)) if diverged.size else None,
            "max": int(diverged.max()) if diverged.size else None,
            "by_position": {str(p): c for p, c in sorted(by_position.items())},
        },
        "common_prefix_tokens": int(diverged.min()) if diverged.size else int(lengths[modal_row]),
        "splits": splits_on_modal_path(g, modal_row, agree),
        "positions": positions_profile(g, modal_row, agree),
        "lengths": {
            "min": int(lengths.min()),
            "median": float(np.median(lengths)),
            "max": int(lengths.max()),
        },
        "finish_reasons": dict(Counter(r or "null" for r in g.finish_reasons).most_common()),
        "unseen": unseen,
        "fingerprints": dict(Counter(f or "null" for f in g.fingerprints).most_common()),
        "errors": int(sum(g.errors_by_type.values())),
        "errors_by_type": dict(sorted(g.errors_by_type.items())),
        # what does not add up: answers longer than max_tokens, texts that are not their tokens
        "flags": {"over_length": g.over_length, "text_mismatch": g.text_mismatch},
    }
    if answer_regex is not None:
        found = answers(g.texts, answer_regex)
        tally = Counter(found)
        report["answers"] = {
            "distinct": len(tally),
            "modal": tally.most_common(1)[0][0],
            "modal_share": tally.most_common(1)[0][1] / n,
            "unmatched": tally.get(None, 0),
        }
    return report


def headline(r: dict) -> str:
    if not r["n"]:
        return "no successful responses to analyse"
    k, n = r["unique_completions"], r["n"]
    if k == 1:
        return (
            f"1 completion in {n:,} calls: every response was the same "
            f"{r['modal_completion']['tokens']} tokens."
        )
    parts = [
        f"{k:,} different completions in {n:,} calls",
        f"all agree for their first {r['common_prefix_tokens']:,} tokens",
        f"the most common came back in {r['modal_completion']['share']:.1%} of calls",
    ]
    if r["splits"]:
        s = r["splits"][0]
        gap = s["top_gap_logprob"]
        why = (
            f"a near-tie (gap {gap:.4g} nats)"
            if gap is not None and gap < 0.5
            else f"a gap of {gap:.4g} nats"
            if gap is not None
            else "no top logprobs to say why"
        )
        parts.append(f"the first split is {why} at position {s['position']}")
    drift = [p for p in r["positions"][: r["common_prefix_tokens"]] if p["distinct_logprobs"] > 1]
    if drift:
        parts.append(
            f"before it, the logprobs already drifted at {len(drift)} of "
            f"{r['common_prefix_tokens']} positions"
        )
    return "; ".join(parts) + "."


def path_picture(r: dict, width: int = 64) -> str:
    """Where paths part, in one line per 64 positions: the share of responses still on the
    modal path at each position (█ all ... ▁ few), | at a split."""
    levels = " ▁▂▃▄▅▆▇█"
    positions = r["positions"]
    if not positions:
        return ""
    n = r["n"]
    split_at = {s["position"] for s in r["splits"]}
    cells = []
    for p in positions:
        if p["position"] in split_at:
            cells.append("|")
        else:
            cells.append(levels[max(1, math.ceil(p["responses"] / n * 8))])
    lines = []
    for start in range(0, len(cells), width):
        lines.append(f"{start:>5}  " + "".join(cells[start : start + width]))
    return "\n".join(lines)


def render_text(r: dict) -> str:
    from tabulate import tabulate

    from detcheck.send.record import printable

    if r.get("prompts"):
        return render_prompt_set(r)
    lines = [r.get("headline") or headline(r), ""]
    if not r["n"]:
        return "\n".join(lines)
    rows = [
        [
            f"{c['count']:,}",
            f"{c['share']:.1%}",
            c["tokens"],
            "" if c["first_divergence"] is None else c["first_divergence"],
            printable(_clip(c["text"] if c["parting_text"] is None else "…" + c["parting_text"])),
        ]
        for c in r["completions"][:10]
    ]
    lines.append(
        tabulate(
            rows,
            headers=["Count", "Share", "Tokens", "Parts at", "Completion"],
            disable_numparse=True,
        )
    )
    if r["unique_completions"] > len(rows):
        lines.append(f"... and {r['unique_completions'] - len(rows):,} more")
    lines += ["", "on the modal path, by position:", path_picture(r), ""]
    for s in r["splits"][:10]:
        tokens = ", ".join(
            f"{'(end)' if t['ended'] else printable(repr(t['token']))} {t['count']:,}"
            for t in s["tokens"][:5]
        )
        gap = s["top_gap_logprob"]
        gap_text = f"top-2 gap {gap:.4g} nats" if gap is not None else "no top logprobs"
        lines.append(f"split at {s['position']:>4}: {tokens} ({gap_text})")
    fd = r["first_divergence"]
    u = r["unseen"]
    lo, hi = u["chao1_ci95"]
    lines += [
        "",
        f"responses {r['n']:,} | completions {r['unique_completions']:,} (Chao1 "
        f"{u['chao1']:,.1f}, 95% CI {lo:,.1f} to {hi:,.1f}) | common prefix "
        f"{r['common_prefix_tokens']:,} tokens | first divergence median "
        + (f"{fd['median']:g}" if fd["median"] is not None else "none"),
        f"lengths {r['lengths']['min']}-{r['lengths']['max']} tokens; finish reasons: "
        + ", ".join(f"{printable(k)} {v:,}" for k, v in r["finish_reasons"].items()),
        "calls per fingerprint: "
        + ", ".join(f"{printable(k)} {v:,}" for k, v in sorted(r["fingerprints"].items())),
    ]
    if r.get("answers"):
        a = r["answers"]
        lines.append(
            f"answers: {a['distinct']} distinct; modal {printable(repr(a['modal']))} in "
            f"{a['modal_share']:.1%}; {a['unmatched']:,} unmatched"
        )
    if r.get("agreement"):
        ag = r["agreement"]
        answer = f"{ag['answer']:.1%}" if ag["answer"] is not None else "n/a"
        lines.append(f"prompts {ag['prompts']}: TARr@N {ag['raw']:.1%}, TARa@N {answer}")
    if r["errors"]:
        kinds = ", ".join(f"{k} {c:,}" for k, c in r["errors_by_type"].items())
        lines.append(f"failed attempts: {r['errors']:,} ({kinds})")
    flags = r.get("flags") or {}
    if flags.get("over_length"):
        lines.append(
            f"warning: {flags['over_length']:,} answer(s) longer than the {r.get('max_tokens')} "
            "tokens asked for (the server ignored max_tokens): read that far, and told apart "
            "by what follows"
        )
    if flags.get("text_mismatch"):
        lines.append(
            f"warning: {flags['text_mismatch']:,} response(s) whose text is not their tokens "
            "joined (a token's bytes, or the server, disagree with the message)"
        )
    return "\n".join(lines)


def _clip(text: str | None, limit: int = 60) -> str:
    text = (text or "").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


# the --json keys of a generate report (tests/test_generate.py). 2: `measured`. 3: `flags`
GENERATE_REPORT_VERSION = 3


def prompt_key(run) -> tuple[str, str]:
    """(id, prompt) of the prompt a run sent: --prompts gives ids, one --prompt has none."""
    meta = run.meta
    prompt = (meta.get("config") or {}).get("prompt") or ""
    return str((meta.get("tags") or {}).get("prompt_id") or ""), prompt


def build_generation_report(runs, answer_regex: str | None = None) -> dict:
    """The report of generate runs: one prompt's runs added up, or, for runs of several
    prompts (--prompts), each prompt's summary and the agreement over prompts (TARr@N, TARa@N)."""
    from detcheck.analysis.report import measured

    groups: dict[tuple[str, str], list] = {}
    for run in runs:
        groups.setdefault(prompt_key(run), []).append(run)
    configs = [r.meta.get("config") or {} for r in runs]
    common = {
        "kind": "generate",
        "report_version": GENERATE_REPORT_VERSION,
        "models": sorted({c.get("model") for c in configs if c.get("model")}),
        "max_tokens": max((c.get("max_tokens") or 0 for c in configs), default=None),
        "runs": [str(r.path) for r in runs],
        "measured": measured(runs),
    }
    if len(groups) == 1:
        report = {**common, **summarise(read_generations(runs), answer_regex)}
        report["prompts"], report["agreement"] = None, None
        report["headline"] = headline(report)
        return report
    prompts, fingerprints, errors = [], Counter(), Counter()
    for (prompt_id, prompt), members in groups.items():
        g = read_generations(members)
        s = summarise(g, answer_regex)
        fingerprints.update(s.get("fingerprints") or {})
        errors.update(s.get("errors_by_type") or {})
        prompts.append(
            {
                "id": prompt_id or prompt[:40],
                "prompt": prompt,
                "n": s["n"],
                "unique_completions": s["unique_completions"],
                "modal_share": (s["modal_completion"] or {}).get("share"),
                "modal_text": (s["modal_completion"] or {}).get("text"),
                "common_prefix_tokens": s.get("common_prefix_tokens"),
                "first_divergence": s.get("first_divergence"),
                "first_split_gap_logprob": (s.get("splits") or [{}])[0].get("top_gap_logprob"),
                "answers": s.get("answers"),
            }
        )
    answered = [p["answers"] for p in prompts] if answer_regex is not None else None
    agreement = {
        "prompts": len(prompts),
        "raw": sum(p["unique_completions"] == 1 for p in prompts) / len(prompts),
        "answer": sum(a["distinct"] == 1 for a in answered) / len(prompts) if answered else None,
    }
    report = {
        **common,
        "n": sum(p["n"] for p in prompts),
        "unique_completions": sum(p["unique_completions"] for p in prompts),
        "prompts": prompts,
        "agreement": agreement,
        "fingerprints": dict(fingerprints.most_common()),
        "errors": int(sum(errors.values())),
        "errors_by_type": dict(sorted(errors.items())),
    }
    answer = f", TARa@N {agreement['answer']:.1%}" if agreement["answer"] is not None else ""
    report["headline"] = (
        f"{len(prompts)} prompts, {report['n']:,} calls: {agreement['raw']:.1%} gave one "
        f"completion every time (TARr@N){answer}."
    )
    return report


def render_prompt_set(r: dict) -> str:
    from tabulate import tabulate

    from detcheck.send.record import printable

    rows = [
        [
            printable(p["id"]),
            f"{p['n']:,}",
            p["unique_completions"],
            f"{p['modal_share']:.1%}" if p["modal_share"] is not None else "",
            "" if p["common_prefix_tokens"] is None else p["common_prefix_tokens"],
            "" if p["first_split_gap_logprob"] is None else f"{p['first_split_gap_logprob']:.4g}",
            "" if not p["answers"] else p["answers"]["distinct"],
        ]
        for p in r["prompts"]
    ]
    table = tabulate(
        rows,
        headers=[
            "prompt",
            "n",
            "completions",
            "modal share",
            "common prefix",
            "split gap",
            "answers",
        ],
        disable_numparse=True,
    )
    ag = r["agreement"]
    answer = f"{ag['answer']:.1%}" if ag["answer"] is not None else "n/a (give --answer-regex)"
    return "\n".join([r["headline"], "", table, "", f"TARr@N {ag['raw']:.1%}; TARa@N {answer}"])


def completion_counts(g: Generations) -> dict[tuple, int]:
    """{completion as its tokens: responses that gave it}."""
    first, _, counts = unique_completions(g.identity)
    return {
        tuple(g.vocabulary[c] for c in g.codes[row] if c != END): int(count)
        for row, count in zip(first.tolist(), counts.tolist())
    }
