"""compare's findings as markdown (the CI step summary, `--markdown`), and markdown back as
aligned plain text for a terminal."""

from __future__ import annotations

import re

from detcheck.analysis.drift import drift


def render_markdown(result: dict, fail_on: tuple[str, ...], names: tuple[str, str]) -> str:
    """The report as Markdown. `names` are shown as given: callers pass them without
    credentials (display_uri)."""

    failing = drift(result, fail_on)
    verdict = "**drift**" if failing else "no drift"
    lines = [
        f"### detcheck compare: {verdict}",
        "",
        f"baseline `{names[0]}` ({result['baseline_n']:,} calls) vs candidate `{names[1]}` "
        f"({result['candidate_n']:,} calls); clusters at "
        f"{', '.join(t + ' pp' for t in result['by_threshold'])}, "
        f"alpha {result['alpha']:g}; failing on: {', '.join(fail_on)}",
        "",
    ]
    if result["findings"]:
        lines += [*findings_table(result["findings"], fail_on), ""]
    for threshold, at in result["by_threshold"].items():
        lines += [
            f"| cluster (%) at {threshold} pp | baseline | candidate | p (adjusted) |",
            "|---|---|---|---|",
        ]
        for c in at["clusters"]:
            lines.append(
                f"| {c['min_pct']:.6f}-{c['max_pct']:.6f} | {c['baseline_share']:.2%} "
                f"({c['baseline']:,}) | {c['candidate_share']:.2%} ({c['candidate']:,}) | "
                f"{c['p_adjusted']:.2g} |"
            )
        lines.append("")
    return "\n".join(lines)


def render_completions_markdown(result: dict, fail_on: tuple[str, ...], names) -> str:

    failing = drift(result, fail_on)
    lines = [
        f"### detcheck compare (whole generations): {'**drift**' if failing else 'no drift'}",
        "",
        f"baseline `{names[0]}` ({result['baseline_n']:,} calls, "
        f"{result['baseline_completions']} completions) vs candidate `{names[1]}` "
        f"({result['candidate_n']:,} calls, {result['candidate_completions']} completions); "
        f"alpha {result['alpha']:g}; failing on: {', '.join(fail_on)}",
        "",
    ]
    if result["findings"]:
        lines += findings_table(result["findings"], fail_on)
    return "\n".join(lines) + "\n"


def findings_table(findings: list[dict], fail_on: tuple[str, ...]) -> list[str]:
    """The findings as Markdown table lines: kind, whether it fails, detail."""

    lines = ["| finding | fails | detail |", "|---|---|---|"]
    for f in findings:
        fails = "yes" if f["kind"] in fail_on else "no"
        lines.append(f"| {f['kind']} | {fails} | {markdown_cell(f['detail'])} |")
    return lines


def markdown_cell(text: str) -> str:
    """Server text (a fingerprint, a token) in a Markdown table cell: one line, its pipes
    escaped, so it cannot add cells or rows; `markdown_blocks` reads it back."""
    from detcheck.text import printable

    return printable(text).replace("\\", "\\\\").replace("|", "\\|")


_CELL = re.compile(r"((?:[^|\\]|\\.)*)\|")


def _cells(line: str) -> list[str]:
    """A Markdown table row's cells, `\\|` inside one read as a pipe (GitHub reads it so)."""
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    body = body if body.endswith("|") and not body.endswith("\\|") else body + "|"
    return [re.sub(r"\\(.)", r"\1", cell).strip() for cell in _CELL.findall(body)]


def markdown_blocks(markdown: str):
    """The Markdown detcheck writes, in order: ("table", header, rows) for each pipe table (its
    |---| line dropped), ("line", text) for every other line."""
    table: list[list[str]] = []
    for line in [*markdown.splitlines(), ""]:
        if line.startswith("|"):
            table.append(_cells(line))
            continue
        if table:
            yield "table", table[0], table[2:]
            table = []
        yield "line", line


def plain_text(markdown: str, width: int = 80) -> str:
    """The Markdown report as a terminal shows it: headings and emphasis as words, pipe tables
    as aligned columns (the widest column folded to fit `width`), prose folded at words."""
    from detcheck.render.table import fit, wrap

    out: list[str] = []
    for kind, *block in markdown_blocks(markdown):
        if kind == "table":
            header, rows = block
            widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
            # the widest column folds to fit (at least 20 characters wide)
            out.append(fit(rows, header, {widths.index(max(widths)): 20}, width))
            continue
        (line,) = block
        line = line.lstrip("#").strip() if line.startswith("#") else line
        out.append(wrap(line.replace("**", "").replace("`", ""), width))
    return "\n".join(out).rstrip() + "\n"
