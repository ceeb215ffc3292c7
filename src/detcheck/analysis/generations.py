"""Whole generations: how many different answers N identical requests gave, where they part,
and why (the near-tie at the split, the drift before it).

detcheck.analysis.generation_arrays turns stored runs into arrays (tokens as integer codes, padded
per response); everything here is pure numpy on those arrays. A completion is its token
sequence: two responses are the same completion when every generated token is the same.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from detcheck.analysis import stats
from detcheck.analysis.generation_arrays import (
    END,
    Generations,
    read_generations,
)
from detcheck.errors import UsageError

MAX_SPLITS = 50  # splits listed along the modal path (the report stays readable)


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
    from detcheck.text import redact

    secrets = analysis_secrets()
    first, inverse, counts = unique_completions(g.identity)
    n = g.n
    if n == 0:
        return {"n": 0, "unique_completions": 0, "completions": [], "modal_completion": None}
    modal_row = int(first[0])
    if g.text_only:
        return _summarise_texts(g, first, counts, answer_regex)
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
    if (tally := _answers(g, answer_regex)) is not None:
        report["answers"] = tally
    return report


def _answers(g: Generations, answer_regex: str | None) -> dict | None:
    """The answers' tally: by --answer-regex from the texts, else the answers the data gave
    (`import --answer`), else None."""
    if answer_regex is not None:
        return answer_tally(answers(g.texts, answer_regex))
    return answer_tally(g.answers) if g.answers is not None else None


def answer_tally(found: Sequence[str | None]) -> dict:
    tally = Counter(found)
    return {
        "distinct": len(tally),
        "modal": tally.most_common(1)[0][0],
        "modal_share": tally.most_common(1)[0][1] / len(found),
        "unmatched": tally.get(None, 0),
    }


def _summarise_texts(g: Generations, first, counts, answer_regex: str | None) -> dict:
    """The report of answers known by their text only: how many, how often each; what needs
    tokens (where they part, their lengths, the drift) is null, not guessed."""
    from detcheck.text import redact

    secrets = analysis_secrets()
    n = g.n
    completions = [
        {
            "count": int(count),
            "share": count / n,
            "text": redact(g.texts[row], secrets),
            "tokens": None,
            "first_divergence": None,
            "parting_text": None,
        }
        for row, count in zip(first.tolist()[:20], counts.tolist())
    ]
    unseen = stats.unseen(counts)
    unseen["chao1_ci95"] = list(stats.chao1_ci95(counts))
    report = {
        "n": n,
        "text_only": True,
        "max_tokens_seen": None,
        "unique_completions": int(counts.size),
        "completions": completions,
        "modal_completion": {**completions[0], "tokens": None},
        "first_divergence": None,
        "common_prefix_tokens": None,
        "splits": [],
        "positions": [],
        "lengths": None,
        "finish_reasons": dict(Counter(r or "null" for r in g.finish_reasons).most_common()),
        "unseen": unseen,
        "fingerprints": dict(Counter(f or "null" for f in g.fingerprints).most_common()),
        "errors": int(sum(g.errors_by_type.values())),
        "errors_by_type": dict(sorted(g.errors_by_type.items())),
        "flags": {"over_length": 0, "text_mismatch": 0},
    }
    if (tally := _answers(g, answer_regex)) is not None:
        report["answers"] = tally
    return report


def headline(r: dict) -> str:
    if not r["n"]:
        return "no successful responses to analyse"
    k, n = r["unique_completions"], r["n"]
    if r.get("text_only"):
        return (
            f"{k:,} different completion{'s' if k != 1 else ''} in {n:,} calls (by their text: "
            "asked for without logprobs, so where they part is not known); the most common "
            f"came back in {r['modal_completion']['share']:.1%} of calls."
        )
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
    from detcheck.analysis.runs import measured

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
    answered = [p["answers"] for p in prompts]
    if all(a is None for a in answered):
        answered = None
    agreement = {
        "prompts": len(prompts),
        "raw": sum(p["unique_completions"] == 1 for p in prompts) / len(prompts),
        # one answer every time, found in every completion (none found is no agreement: TARa@N
        # as Atil et al. count it)
        "answer": sum(bool(a) and a["distinct"] == 1 and not a["unmatched"] for a in answered)
        / len(prompts)
        if answered
        else None,
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


def completion_counts(g: Generations) -> dict[tuple, int]:
    """{completion as its tokens: responses that gave it}."""
    first, _, counts = unique_completions(g.identity)
    return {
        tuple(g.vocabulary[c] for c in g.codes[row] if c != END): int(count)
        for row, count in zip(first.tolist(), counts.tolist())
    }
