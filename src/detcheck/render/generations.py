"""The generate report as text: the answers, the picture of the modal path, the splits; and a
prompt set's table (TARr@N, TARa@N)."""

from __future__ import annotations

import math
import textwrap

from detcheck.analysis.generations import headline


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


def named_files(files: list[str]) -> str:
    """'a.csv, b.csv, c.csv and 2 more'."""
    return ", ".join(files[:3]) + (f" and {len(files) - 3:,} more" if len(files) > 3 else "")


def imported_lines(r: dict) -> list[str]:
    """What a report of imported data cannot say, one line each."""
    imported = (r.get("measured") or {}).get("imported")
    if not imported:
        return []
    formats, files = "/".join(imported["formats"]), named_files(imported["files"])
    head = f"imported      {formats} data from {files}"
    return [head, *(f"              {lack}" for lack in imported["lacks"])]


def render_text(r: dict) -> str:
    """The report for a terminal of 80 columns: tables narrowed to fit, prose folded."""
    from detcheck.render.table import wrap

    return "\n".join(wrap(line) for line in _lines(r))


def _lines(r: dict) -> list[str]:
    from detcheck.render.table import fit
    from detcheck.text import printable

    if r.get("prompts"):
        return [render_prompt_set(r), *map(printable, imported_lines(r))]
    lines = [r.get("headline") or headline(r), *map(printable, imported_lines(r)), ""]
    if not r["n"]:
        return lines
    rows = [
        [
            f"{c['count']:,}",
            f"{c['share']:.1%}",
            "" if c["tokens"] is None else c["tokens"],
            "" if c["first_divergence"] is None else c["first_divergence"],
            printable(_clip(c["text"] if c["parting_text"] is None else "…" + c["parting_text"])),
        ]
        for c in r["completions"][:10]
    ]
    lines.append(fit(rows, ["Count", "Share", "Tokens", "Parts at", "Completion"], wrap={4}))
    if r["unique_completions"] > len(rows):
        lines.append(f"... and {r['unique_completions'] - len(rows):,} more")
    if r["positions"]:
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
    where = (
        "text only: no tokens, so no common prefix or lengths"
        if r.get("text_only")
        else f"common prefix {r['common_prefix_tokens']:,} tokens | first divergence median "
        + (f"{fd['median']:g}" if fd["median"] is not None else "none")
    )
    lengths = (
        ""
        if r["lengths"] is None
        else (f"lengths {r['lengths']['min']}-{r['lengths']['max']} tokens; ")
    )
    summary = (
        f"responses {r['n']:,} | completions {r['unique_completions']:,} (Chao1 "
        f"{u['chao1']:,.1f}, 95% CI {lo:,.1f} to {hi:,.1f}) | {where}"
    )
    lines += [
        "",
        textwrap.fill(summary, 80, break_on_hyphens=False),  # flush left: it has no label
        f"{lengths}finish reasons: "
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
    return lines


def _clip(text: str | None, limit: int = 90) -> str:  # two lines of the table's last column
    text = (text or "").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_prompt_set(r: dict) -> str:
    from detcheck.render.table import fit, wrap
    from detcheck.text import printable

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
    headers = ["prompt", "n", "completions", "modal share", "common prefix", "split gap"]
    table = fit(rows, [*headers, "answers"], wrap={0})
    ag = r["agreement"]
    answer = f"{ag['answer']:.1%}" if ag["answer"] is not None else "n/a (give --answer-regex)"
    lines = [wrap(r["headline"]), "", table, "", f"TARr@N {ag['raw']:.1%}; TARa@N {answer}"]
    return "\n".join(lines)
