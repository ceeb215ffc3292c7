"""Whole generations: how many different answers N identical requests gave, where they part,
and why (the near-tie at the split, the drift before it).

detcheck.analysis.generation_arrays reads stored runs into what this needs: each completion's
128-bit identity (its tokens) and length, and the batches again for where completions part from
the modal one. A completion is its token sequence: two responses are the same completion when
every generated token is the same. Memory holds a few numbers per response, never the padded
(responses x positions) arrays: a million 128-token completions are ~30 MB here.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from detcheck.analysis import stats
from detcheck.analysis.generation_arrays import Generations, read_generations
from detcheck.analysis.generation_paths import (
    modal_paths,
    positions_profile,
    splits_on_modal_path,
)


def unique_completions(identity: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first response of each distinct completion, inverse, counts), completions ordered by
    count (most common first), ties by first appearance."""
    if identity.shape[0] == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    rows = np.ascontiguousarray(identity).view(
        np.dtype((np.void, identity.dtype.itemsize * identity.shape[1]))
    )
    _, first, inverse, counts = np.unique(
        rows.ravel(), return_index=True, return_inverse=True, return_counts=True
    )
    order = np.lexsort((first, -counts))  # most common first, then earliest
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return first[order], rank[inverse.ravel()], counts[order]


def analysis_secrets() -> list[str]:
    """Keys this process knows of (rows were redacted as they were stored; this catches what
    only a join of them makes)."""
    import os

    return [v for k, v in os.environ.items() if k.endswith(("API_KEY", "_TOKEN")) and v]


def summarise(g: Generations, answer_regex: str | None = None) -> dict:
    """The report of one set of identical requests (one prompt). Every text it makes is
    redacted again (a key split over two tokens is whole only once they are joined).
    `answer_regex` was applied as `g` was read (read_generations)."""
    from detcheck.text import redact

    secrets = analysis_secrets()
    first, _, counts = unique_completions(g.identity)
    n = g.n
    if n == 0:
        return {"n": 0, "unique_completions": 0, "completions": [], "modal_completion": None}
    modal_row = int(first[0])
    if g.text_only:
        return _summarise_texts(g, first, counts)
    listed = first[:20].tolist()
    detail = g.rows(listed, ["gen_tokens", "text", "gen_top_logprobs"])
    if g.modal_top is None:  # why paths part: the modal response's near-ties
        g.modal_top = detail[modal_row].get("gen_top_logprobs")
    paths = modal_paths(g, modal_row)
    divergence = paths.divergence
    lengths = g.lengths
    completions = []
    for k, (row, count) in enumerate(zip(listed, counts.tolist())):
        parts_at = None if k == 0 else int(divergence[row])
        if parts_at is not None and parts_at < 0:  # the same tokens up to max_tokens
            parts_at = int(g.width)
        # from two tokens before it parts from the modal one: what a reader compares
        tokens = list(detail[row].get("gen_tokens") or [])[: g.cap]
        parting = "".join(t or "" for t in tokens[max(0, (parts_at or 0) - 2) :])
        completions.append(
            {
                "count": int(count),
                "share": count / n,
                "text": redact(detail[row].get("text"), secrets),
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
        "max_tokens_seen": int(g.width),
        "unique_completions": int(counts.size),
        "completions": completions,
        "modal_completion": {
            "count": int(counts[0]),
            "share": float(counts[0] / n),
            "text": redact(detail[modal_row].get("text"), secrets),
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
        "splits": splits_on_modal_path(g, paths),
        "positions": positions_profile(g, paths),
        "lengths": {
            "min": int(lengths.min()),
            "median": float(np.median(lengths)),
            "max": int(lengths.max()),
        },
        "finish_reasons": dict(g.finish_reasons.most_common()),
        "unseen": unseen,
        "fingerprints": dict(g.fingerprints.most_common()),
        "errors": int(sum(g.errors_by_type.values())),
        "errors_by_type": dict(sorted(g.errors_by_type.items())),
        # what does not add up: answers longer than max_tokens, texts that are not their tokens
        "flags": {"over_length": g.over_length, "text_mismatch": g.text_mismatch},
    }
    if g.answer_tally is not None:
        report["answers"] = g.answer_tally
    return report


def _summarise_texts(g: Generations, first, counts) -> dict:
    """The report of answers known by their text only: how many, how often each; what needs
    tokens (where they part, their lengths, the drift) is null, not guessed."""
    from detcheck.text import redact

    secrets = analysis_secrets()
    n = g.n
    listed = first.tolist()[:20]
    texts = g.rows(listed, ["text"])
    completions = [
        {
            "count": int(count),
            "share": count / n,
            "text": redact(texts[row].get("text"), secrets),
            "tokens": None,
            "first_divergence": None,
            "parting_text": None,
        }
        for row, count in zip(listed, counts.tolist())
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
        "finish_reasons": dict(g.finish_reasons.most_common()),
        "unseen": unseen,
        "fingerprints": dict(g.fingerprints.most_common()),
        "errors": int(sum(g.errors_by_type.values())),
        "errors_by_type": dict(sorted(g.errors_by_type.items())),
        "flags": {"over_length": 0, "text_mismatch": 0},
    }
    if g.answer_tally is not None:
        report["answers"] = g.answer_tally
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
        report = {**common, **summarise(read_generations(runs, answer_regex))}
        report["prompts"], report["agreement"] = None, None
        report["headline"] = headline(report)
        return report
    prompts, fingerprints, errors = [], Counter(), Counter()
    for (prompt_id, prompt), members in groups.items():
        s = summarise(read_generations(members, answer_regex))
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
    """{completion (its identity: the same for the same tokens, in any run): responses that
    gave it}."""
    first, _, counts = unique_completions(g.identity)
    return {
        tuple(g.identity[row].tolist()): int(count)
        for row, count in zip(first.tolist(), counts.tolist())
    }
