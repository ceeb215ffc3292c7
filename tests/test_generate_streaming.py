"""The generate analysis reads completions as identities and streams their tokens a batch at a
time; here it is checked against the plain definition, worked out by brute force on the rows
themselves (every completion a tuple of tokens, every position looked at), on random runs:
answers of different lengths, shorter and longer than the modal one, past max_tokens, with
null logprobs, small enough to be kept and large enough to be read twice."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from detcheck.analysis.generation_arrays import read_generations
from detcheck.analysis.generations import summarise
from detcheck.store import RunWriter, read_run

END = None


def write_run(path, rows, max_tokens):
    meta = {"run_id": "r", "schema_version": 5,
            "config": {"kind": "generate", "max_tokens": max_tokens}}  # fmt: skip
    writer = RunWriter(path, meta, rows_per_part=37)  # several parts and row groups
    for k, (tokens, logprobs) in enumerate(rows):
        writer.append({
            "run_id": "r", "seq": k, "call": k, "attempt": 1, "ok": True,
            "gen_tokens": tokens, "gen_logprobs": logprobs, "text": "".join(tokens),
            "gen_top_tokens": [[t] for t in tokens], "gen_top_logprobs": [[lp] for lp in logprobs],
        })  # fmt: skip
        if k % 17 == 5:  # failed attempts between them
            writer.append({"run_id": "r", "seq": k + 10_000, "call": k, "attempt": 2,
                           "ok": False, "error_type": "http_500"})  # fmt: skip
    writer.close(status="complete")
    return read_run(path)


def random_rows(seed: int):
    rng = random.Random(seed)
    vocab = [" a", " b", " c", " d"]
    base = [rng.choice(vocab) for _ in range(8)]
    rows = []
    for _ in range(rng.randint(20, 160)):
        tokens = list(base[: rng.choice([6, 7, 8, 8, 8])])
        if rng.random() < 0.4:  # parts somewhere
            at = rng.randrange(len(tokens))
            tokens[at:] = [rng.choice(vocab) for _ in range(rng.randint(0, 4) + len(tokens) - at)]
        if rng.random() < 0.1:  # a server that ignores max_tokens
            tokens += [rng.choice(vocab) for _ in range(3)]
        if seed % 3:  # a few values per position, as drift gives
            logprobs = [rng.choice([-0.5, -0.5, -0.5, -0.25, -1.0, None]) for _ in tokens]
        else:  # all different
            logprobs = [-rng.random() for _ in tokens]
        rows.append((tokens, logprobs))
    return rows


def brute_force(rows, cap):
    """The report's numbers, straight from the definitions."""
    full = [tuple(t) for t, _ in rows]
    capped = [t[:cap] for t in full]
    counts = Counter(full)
    first = {}
    for r, t in enumerate(full):
        first.setdefault(t, r)
    ranked = sorted(counts, key=lambda t: (-counts[t], first[t]))
    modal = capped[first[ranked[0]]]
    width = max(len(t) for t in capped)

    def token(r, p):
        return capped[r][p] if p < len(capped[r]) else END

    def divergence(r):
        if capped[r] == modal:
            return -1
        return next(p for p in range(max(len(capped[r]), len(modal)) + 1)
                    if token(r, p) != (modal[p] if p < len(modal) else END))  # fmt: skip

    div = [divergence(r) for r in range(len(rows))]
    positions = []
    for p in range(len(modal)):
        before = [r for r in range(len(rows)) if div[r] == -1 or div[r] >= p]
        here = [r for r in range(len(rows)) if div[r] == -1 or div[r] > p]
        values = {rows[r][1][p] for r in here if rows[r][1][p] is not None}
        tokens = {token(r, p) for r in before}
        low, high = min(values, default=None), max(values, default=None)
        positions.append((p, modal[p], len(before), len(tokens), len(values), low, high))
    splits = []
    for p in range(width):
        before = [r for r in range(len(rows)) if div[r] == -1 or div[r] >= p]
        if not before:
            break
        taken = Counter(token(r, p) for r in before)
        if len(taken) < 2:
            if p >= len(modal):
                break
            continue
        splits.append((p, len(before), dict(taken)))
    diverged = sorted(d for d in div if d >= 0)
    return {
        "unique": len(counts),
        "counts": [counts[t] for t in ranked],
        "diverged": diverged,
        "positions": positions,
        "splits": splits,
        "lengths": sorted(len(t) for t in capped),
    }


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("kept", [True, False])
def test_the_streamed_analysis_is_the_brute_force_one(tmp_path, seed, kept):
    rows = random_rows(seed)
    cap = 8
    run = write_run(tmp_path / "run", rows, cap)
    # kept: read once (a small run); else read twice, a few rows at a time, as a large run is
    g = read_generations([run], keep=kept, batch_rows=8192 if kept else 16)
    r = summarise(g)
    want = brute_force(rows, cap)
    assert r["n"] == len(rows) and r["unique_completions"] == want["unique"]
    assert [c["count"] for c in r["completions"]] == want["counts"][:20]
    assert r["first_divergence"]["diverged"] == len(want["diverged"])
    assert r["first_divergence"]["by_position"] == {
        str(p): c for p, c in sorted(Counter(want["diverged"]).items())
    }
    got = [(p["position"], p["token"], p["responses"], p["distinct_tokens"],
            p["distinct_logprobs"], p["logprob_min"], p["logprob_max"])
           for p in r["positions"]]  # fmt: skip
    assert got == want["positions"]
    got_splits = [(s["position"], s["responses"],
                   {(None if t["ended"] else t["token"]): t["count"] for t in s["tokens"]})
                  for s in r["splits"]]  # fmt: skip
    assert got_splits == want["splits"]
    for s in r["splits"]:  # most common first
        counts = [t["count"] for t in s["tokens"]]
        assert counts == sorted(counts, reverse=True)
    assert r["lengths"]["min"] == want["lengths"][0] and r["lengths"]["max"] == want["lengths"][-1]
    assert r["flags"]["over_length"] == sum(len(t) > cap for t, _ in rows)
    assert r["errors_by_type"] == {"http_500": sum(k % 17 == 5 for k in range(len(rows)))}


@pytest.mark.parametrize("distinct", [2, 8, 9, 10, 17])
def test_every_count_of_distinct_drift_values_at_a_position(tmp_path, distinct):
    # one completion, all of one length (read as a grid); its first logprob takes `distinct`
    # values: the modal response's own and distinct - 1 others (9 found none left over after
    # the first pass of eight and crashed on a real llama.cpp run)
    tokens = [" a", " b", " c", " d"]
    rows = [(tokens, [-0.5 - 0.01 * (k % distinct), -0.25, -0.25, -0.25]) for k in range(60)]
    run = write_run(tmp_path / "run", rows, len(tokens))
    r = summarise(read_generations([run]))
    want = brute_force(rows, len(tokens))
    got = [(p["position"], p["token"], p["responses"], p["distinct_tokens"],
            p["distinct_logprobs"], p["logprob_min"], p["logprob_max"])
           for p in r["positions"]]  # fmt: skip
    assert got == want["positions"]
    assert r["positions"][0]["distinct_logprobs"] == distinct
