"""Rebuild the shipped recording gpt-4o-coinflip (src/detcheck/recordings/gpt-4o-coinflip, which
recordings/gpt-4o-2024-08-06-coinflip-10000 links to) from the published figures in source/.

    uv run python recordings/build_gpt4o_coinflip.py

Deterministic: the same inputs give the same rows (only `versions` in run.json names the
environment that built it). recordings/README.md says what is published fact and what is filled in.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np

from detcheck.config import FlipConfig
from detcheck.plan import Control, Plan, RetryPolicy
from detcheck.send.record import success_fields
from detcheck.send.tokens import resolve_targets
from detcheck.shapes import shape
from detcheck.store import RunWriter
from detcheck.store.runs import run_meta

HERE = Path(__file__).parent
SOURCE = HERE / "source"
NAME = "gpt-4o-2024-08-06-coinflip-10000"
FP_TOTALS = {"fp_f9f4fb6dbf": 4488, "fp_eb9dce56a8": 5512}  # published
ORDER_SEED = 20250101  # the call order was not published: a seeded shuffle
CREATED_START = 1738368000  # 2025-02-01T00:00:00Z; timestamps were not published
PROMPT_TOKENS = 18  # the publication's figure for this prompt (tiktoken agrees)


def read_distribution() -> list[dict]:
    with open(SOURCE / "gpt-4o-2024-08-06-coinflip-10000.csv") as f:
        return [
            {
                "pct": r["heads_probability_pct"],
                "count": int(r["count"]),
                "fps": r["fingerprints"].split(),
            }
            for r in csv.DictReader(f)
        ]


def split_fingerprints(rows: list[dict]) -> list[dict[str, int]]:
    """Where a row lists both fingerprints the publication did not split its count. Give each
    listed fingerprint at least one call and share the rest in proportion (largest remainder),
    so that the fingerprint totals come out as published."""
    fp_a, fp_b = "fp_f9f4fb6dbf", "fp_eb9dce56a8"
    splits = [dict.fromkeys(r["fps"], 0) for r in rows]
    both = [i for i, r in enumerate(rows) if len(r["fps"]) == 2]
    for i, r in enumerate(rows):
        if len(r["fps"]) == 1:
            splits[i][r["fps"][0]] = r["count"]
        else:
            splits[i] = {fp_a: 1, fp_b: 1}
    need_a = FP_TOTALS[fp_a] - sum(s.get(fp_a, 0) for s in splits)
    spare = {i: rows[i]["count"] - 2 for i in both}
    share = need_a / sum(spare.values())
    exact = {i: spare[i] * share for i in both}
    extra = {i: math.floor(exact[i]) for i in both}
    leftover = need_a - sum(extra.values())
    for i in sorted(both, key=lambda i: exact[i] - extra[i], reverse=True)[:leftover]:
        extra[i] += 1
    for i in both:
        splits[i][fp_a] += extra[i]
        splits[i][fp_b] = rows[i]["count"] - splits[i][fp_a]
    return splits


def read_top20() -> dict[str, list[tuple[str, float]]]:
    by_call: dict[str, list] = {}
    with open(SOURCE / "top20-two-calls.csv") as f:
        for r in csv.DictReader(f):
            by_call.setdefault(r["call"], []).append(
                (r["token"], float(r["logprob"]), r["percentage"])
            )
    # key each published list by its Heads percentage (10 decimals)
    return {rows[0][2]: [(t, lp) for t, lp, _ in rows] for rows in by_call.values()}


def top_list(
    pct: str, published: dict, template: list[tuple[str, float]]
) -> list[tuple[str, float]]:
    """The top-20 list of a call whose Heads probability is `pct`.

    Heads' logprob is log(pct/100): the published logprobs are rounded to 10 decimals, the
    percentages carry more digits. Published lists are used as printed otherwise. For every other
    value (filled in): the tokens of the published 96.27% list keep their logprob gaps to Heads,
    and `T` takes the mass that is left, so the list sums to (almost exactly) 100%.
    """
    heads_lp = math.log(float(pct) / 100)
    if pct in published:
        return [("Heads", heads_lp)] + published[pct][1:]
    heads_template = template[0][1]
    others = [(t, heads_lp + (lp - heads_template)) for t, lp in template[1:] if t != "T"]
    rest = 1 - float(pct) / 100 - sum(math.exp(lp) for _, lp in others)
    ranked = sorted([("T", math.log(rest))] + others, key=lambda e: -e[1])
    return [("Heads", heads_lp)] + ranked


def body(i: int, pct: str, fp: str, published: dict, template: list) -> str:
    entries = [
        {"token": t, "logprob": lp, "bytes": list(t.encode()), "top_logprobs": []}
        for t, lp in top_list(pct, published, template)
    ]
    first = dict(
        entries[0], top_logprobs=[{k: e[k] for k in ("token", "logprob", "bytes")} for e in entries]
    )
    return json.dumps(
        {
            "id": f"chatcmpl-reconstructed-{i:05d}",
            "object": "chat.completion",
            "created": CREATED_START + i,
            "model": "gpt-4o-2024-08-06",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Heads", "refusal": None},
                    "logprobs": {"content": [first], "refusal": None},
                    "finish_reason": "length",
                }
            ],
            "usage": {
                "prompt_tokens": PROMPT_TOKENS,
                "completion_tokens": 1,
                "total_tokens": PROMPT_TOKENS + 1,
                "prompt_tokens_details": {"cached_tokens": 0},
            },
            "system_fingerprint": fp,
        },
        separators=(",", ":"),
    )


def call_order(rows: list[dict], splits: list[dict]) -> list[tuple[str, str]]:
    """Ten published consecutive calls first, then the rest in a seeded random order."""
    pool = {(r["pct"], fp): c for r, s in zip(rows, splits) for fp, c in s.items()}
    with open(SOURCE / "ten-calls-fingerprint.csv") as f:
        first = [(r["heads_probability_pct"], r["system_fingerprint"]) for r in csv.DictReader(f)]
    for key in first:
        pool[key] -= 1
    rest = [key for key, c in sorted(pool.items()) for _ in range(c)]
    order = np.random.default_rng(ORDER_SEED).permutation(len(rest))
    return first + [rest[j] for j in order]


def main() -> None:
    rows = read_distribution()
    splits = split_fingerprints(rows)
    published = read_top20()
    template = published["96.2660836887"]
    calls = call_order(rows, splits)
    config = FlipConfig()
    targets = resolve_targets(config.model, config.labels)
    config = FlipConfig(targets={t.label: t.token for t in targets})
    plan = Plan(config, targets, None, len(calls), Control(concurrency=None), RetryPolicy(), {}, {})
    meta = run_meta(plan, "https://api.openai.com/v1")
    meta.update(
        run_id=NAME,
        started_at=None,
        retry_policy=None,
        provenance="reconstructed from published figures by recordings/build_gpt4o_coinflip.py; "
        "see recordings/README.md for what is fact and what is filled in",
    )
    out = HERE.parent / "src" / "detcheck" / "recordings" / "gpt-4o-coinflip"  # ships in the wheel
    shutil.rmtree(out, ignore_errors=True)
    writer = RunWriter(out, meta, rows_per_part=len(calls) + 1)
    for i, (pct, fp) in enumerate(calls):
        text = body(i, pct, fp, published, template)
        created_us = (CREATED_START + i) * 1_000_000
        writer.append(
            {
                "run_id": NAME,
                "seq": i,
                "call": i,
                "attempt": 1,
                "ok": True,
                "http_status": 200,
                "started_at": created_us,
                "finished_at": created_us,
                "raw_body": text,
                **success_fields(shape("chat").parse(text)),
            }
        )
    writer.close(status="complete", ended_at=None, successes=len(calls), attempts=len(calls))
    print(f"wrote {out} ({len(calls):,} responses)")


if __name__ == "__main__":
    main()
