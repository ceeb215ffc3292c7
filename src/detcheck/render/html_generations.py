"""Whole generations as a page (`detcheck report` of generate runs): the completions as a table,
where they part, the analysis in words; a prompt set as one row per prompt with TARr@N and
TARa@N. Built from the same report the terminal text is, every text escaped, what the data
does not say written "unknown"."""

from __future__ import annotations

import re
from html import escape

from detcheck.render.html_table import UNKNOWN, shown, table

MOST_SHOWN = 20  # completions listed; the JSON has them all
LONGEST = 1_000  # characters of one completion shown
_NULL = re.compile(r"\bnull\b")


def generations_body(r: dict) -> str:
    if r.get("prompts"):
        return _prompt_set(r) + _imported(r)
    if not r["n"]:
        return _imported(r)
    return "\n".join([_completions(r), _splits(r), _analysis(r), _imported(r)])


def _clip(text: str | None) -> str:
    text = text or ""
    return text if len(text) <= LONGEST else text[: LONGEST - 1] + "…"


def _completions(r: dict) -> str:
    rows = [
        [
            f"{c['count']:,}",
            f"{c['share']:.1%}",
            c["tokens"],
            c["first_divergence"] if c["first_divergence"] is not None else "",
            _clip(c["text"] if c["parting_text"] is None else "…" + c["parting_text"]),
        ]
        for c in r["completions"][:MOST_SHOWN]
    ]
    more = r["unique_completions"] - len(rows)
    note = f"<p>… and {more:,} more (the JSON below has every one).</p>" if more > 0 else ""
    return (
        "<h2>Completions</h2><p>Each different answer, the most common first; an answer that "
        "parts from the most common one is shown from where it parts.</p>"
        + table(["Count", "Share", "Tokens", "Parts at", "Completion"], rows, numeric={0, 1, 2, 3})
        + note
    )


def _splits(r: dict) -> str:
    if not r["splits"]:
        return ""
    items = []
    for s in r["splits"][:MOST_SHOWN]:
        tokens = ", ".join(
            f"{'(end)' if t['ended'] else repr(t['token'])} {t['count']:,}" for t in s["tokens"][:5]
        )
        gap = s["top_gap_logprob"]
        why = f"top-2 gap {gap:.4g} nats" if gap is not None else "top logprobs unknown"
        items.append(f"<li>at position {s['position']:,}: {escape(tokens)} ({why})</li>")
    return f'<h2>Where they part</h2><ul class="lines">{"".join(items)}</ul>'


def _analysis(r: dict) -> str:
    u = r["unseen"]
    lo, hi = u["chao1_ci95"]
    lines = [
        f"{r['n']:,} responses, {r['unique_completions']:,} different completions (Chao1 "
        f"{u['chao1']:,.1f}, 95% CI {lo:,.1f} to {hi:,.1f})",
    ]
    if r.get("text_only"):
        lines.append("compared by their text only: no tokens, so where they part is unknown")
    else:
        fd = r["first_divergence"]["median"]
        lines.append(
            f"common prefix: {r['common_prefix_tokens']:,} tokens; first divergence (median): "
            + (f"position {fd:g}" if fd is not None else "none")
        )
    if r["lengths"] is not None:
        lines.append(f"lengths: {r['lengths']['min']:,} to {r['lengths']['max']:,} tokens")
    reasons = ", ".join(f"{shown(k)} {v:,}" for k, v in r["finish_reasons"].items())
    lines.append(f"finish reasons: {reasons or 'unknown'}")
    fps = ", ".join(f"{shown(k)} {v:,}" for k, v in sorted(r["fingerprints"].items()))
    lines.append(f"calls per fingerprint: {fps or 'unknown'}")
    if r.get("answers"):
        a = r["answers"]
        lines.append(
            f"answers: {a['distinct']} distinct; the most common {shown(a['modal'])!s} in "
            f"{a['modal_share']:.1%}; {a['unmatched']:,} without one"
        )
    if r["errors"]:
        kinds = ", ".join(f"{k} {c:,}" for k, c in r["errors_by_type"].items())
        lines.append(f"failed attempts: {r['errors']:,} ({kinds})")
    items = "".join(f"<li>{escape(line)}</li>" for line in lines)
    return f'<h2>What the analysis says</h2><ul class="lines">{items}</ul>'


def _prompt_set(r: dict) -> str:
    rows = [
        [
            p["id"],
            _clip(p["prompt"]),
            f"{p['n']:,}",
            p["unique_completions"],
            f"{p['modal_share']:.1%}" if p["modal_share"] is not None else None,
            p["common_prefix_tokens"],
            f"{p['first_split_gap_logprob']:.4g}"
            if p["first_split_gap_logprob"] is not None
            else ("" if p["unique_completions"] == 1 else None),
            p["answers"]["distinct"] if p["answers"] else "",
        ]
        for p in r["prompts"]
    ]
    headers = ["id", "prompt", "n", "completions", "modal share", "common prefix", "split gap"]
    ag = r["agreement"]
    answer = f"{ag['answer']:.1%}" if ag["answer"] is not None else "not measured (no answers)"
    return (
        "<h2>Prompts</h2><p>Each prompt sent N times: how many different completions came "
        "back, and how far they agreed (the split gap: the top-2 logprob gap where the first "
        "split happened).</p>"
        + table([*headers, "answers"], rows, numeric={2, 3, 4, 5, 6, 7})
        + f"<p>TARr@N (every completion of a prompt the same): {ag['raw']:.1%} of "
        f"{ag['prompts']:,} prompts; TARa@N (every answer the same): {escape(answer)}.</p>"
    )


def _imported(r: dict) -> str:
    from detcheck.render.generations import imported_lines

    lines = [line.strip() for line in imported_lines(r)]
    if not lines:
        return ""
    head, *lacks = lines
    # the data's words: what it lacks is unknown to the reader, whatever JSON calls it
    items = "".join(f"<li>{escape(_NULL.sub(UNKNOWN, lack))}</li>" for lack in lacks)
    return (
        f"<h2>What the data does not say</h2><p>{escape(head.removeprefix('imported').strip())}"
        f'</p><ul class="lines">{items}</ul>'
    )
