"""`detcheck report` and `compare --html`: one self-contained HTML page to share. Styles and
figures (SVG) are inline and nothing is fetched, so the file reads the same from a mail, an
artifact or a phone offline. Every piece of server-sent text is escaped."""

from __future__ import annotations

import json
import re
from html import escape

from detcheck.render.html_table import UNKNOWN, shown, table

__all__ = ["UNKNOWN", "page", "report_page", "shown", "table"]

# Small, readable on a phone: one column; a table's cells wrap, and below 40rem a wide table
# becomes one card per row (each cell under its column's name), so nothing but the figure is
# wider than the screen; the figure keeps its text as large as the page's and scrolls instead.
STYLE = """
:root { color-scheme: light dark; --muted: #666; --line: #ccc; --band: rgba(127,127,127,.08); }
* { box-sizing: border-box; }
body { font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto;
       padding: 1rem; max-width: 62rem; }
h1 { font-size: 1.35rem; line-height: 1.3; margin: .2rem 0 1rem; overflow-wrap: anywhere; }
h2 { font-size: 1.1rem; margin: 2rem 0 .6rem; border-bottom: 1px solid var(--line); }
p, li { overflow-wrap: anywhere; }
.headline { font-size: 1.1rem; padding: .8rem 1rem; background: var(--band);
            border-left: 4px solid #4a7; margin: 1rem 0; }
.drift { border-left-color: #c33; }
dl.measured { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; margin: 0; }
dl.measured dt { color: var(--muted); }
dl.measured dd { margin: 0; overflow-wrap: anywhere; min-width: 0; }
.scroll { overflow-x: auto; -webkit-overflow-scrolling: touch; margin: .8rem 0; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; width: 100%;
        margin: .8rem 0; }
th, td { text-align: left; vertical-align: top; padding: .25rem .6rem;
         border-bottom: 1px solid var(--line); overflow-wrap: anywhere; }
td.num, th.num { text-align: right; white-space: nowrap; }
tbody + tbody { border-top: 2px solid var(--muted); }
.verdict { font-weight: 600; white-space: nowrap; }
.fp { display: inline-block; margin-right: .6em; }
figure { margin: 1rem 0; }
figure svg { width: 100%; min-width: 60rem; height: auto; background: #fff; border-radius: 4px; }
figcaption { color: var(--muted); }
@media (min-width: 64rem) { figcaption.narrow { display: none; } }
@media (max-width: 40rem) {
  table.cards, table.cards tbody, table.cards tr, table.cards td { display: block; }
  table.cards thead { display: none; }
  table.cards tr { border-bottom: 1px solid var(--line); padding: .4rem 0; }
  table.cards td { border: 0; padding: .1rem 0; text-align: left; white-space: normal; }
  table.cards td[data-label]::before { content: attr(data-label) ": "; color: var(--muted); }
  table.cards td:empty { display: none; }
  th, td { padding: .25rem .35rem; }
}
ul.lines { padding-left: 1.1rem; } ul.lines li { margin: .35rem 0; }
.label { color: var(--muted); }
pre { overflow-x: auto; font-size: .8rem; padding: .8rem; background: var(--band); }
details summary { cursor: pointer; }
footer { color: var(--muted); font-size: .85rem; margin-top: 2rem; }
"""

CONFIG_SHOWN = ("prompt", "labels", "temperature", "seed", "top_logprobs", "max_tokens", "api")


def page(title: str, body: str) -> str:
    from detcheck import __version__

    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n"
        f"<footer>Written by detcheck {escape(__version__)}. This file is self-contained: it "
        "loads nothing from anywhere.</footer>\n</body>\n</html>\n"
    )


def report_page(
    report: dict, configs: list[dict], figure_svg: str | None, title: str | None
) -> str:
    """The page of an analysis: what was measured, the headline, the figure, the values, the
    analysis in words, and the JSON."""
    models = ", ".join((report.get("measured") or {}).get("models") or report.get("models") or [])
    heading = title or (f"detcheck report: {models}" if models else "detcheck report")
    return page(heading, report_body(report, configs, figure_svg, heading))


def report_body(
    report: dict,
    configs: list[dict] | None = None,
    figure_svg: str | None = None,
    heading: str = "detcheck report",
) -> str:
    """The page's body. `figure_svg`: the figure; "" when there is nothing to draw (text
    compared without logprobs), None when it could not be drawn (no matplotlib)."""
    parts = [f"<h1>{escape(heading)}</h1>"]
    parts.append(f'<p class="headline">{escape(report["headline"])}</p>')
    parts.append("<h2>What was measured</h2>" + _measured(report, configs or []))
    if figure_svg:
        parts.append(figure(figure_svg))
    elif figure_svg is None and configs is not None:
        parts.append(
            "<h2>Figure</h2><p>No figure: plotting needs matplotlib "
            "(<code>pip install matplotlib</code>).</p>"
        )
    if report.get("kind") == "generate":
        from detcheck.render.html_generations import generations_body

        parts.append(generations_body(report))
    else:
        parts.append("<h2>Distinct values</h2>" + _values_table(report))
        parts.append("<h2>What the analysis says</h2>" + _analysis(report))
    parts.append(raw_json(report, "report"))
    return "\n".join(parts)


def figure(svg: str) -> str:
    """The figure, at a width that keeps its text as large as the page's: on a narrow screen
    it scrolls sideways, and says so before it starts."""
    return (
        '<h2>Figure</h2><figure><figcaption class="narrow">The figure is wider than this '
        f'screen: scroll it sideways.</figcaption><div class="scroll">{svg}</div></figure>'
    )


def raw_json(data: dict, what: str) -> str:
    return (
        f"<h2>Raw data</h2><details><summary>The {what} as JSON (what <code>--json</code> "
        f"prints)</summary><pre>{escape(json.dumps(data, indent=2))}</pre></details>"
    )


def _measured(report: dict, configs: list[dict]) -> str:
    m = report.get("measured") or {}
    endpoint = ", ".join(m.get("endpoints") or [])
    if m.get("provenance") and endpoint and not endpoint.startswith("replay:"):
        endpoint += " (not measured there: see provenance)"
    rows = [
        ("model", ", ".join(m.get("models") or report.get("models") or [])),
        ("endpoint", endpoint),
        ("provenance", " / ".join(m.get("provenance") or [])),
        ("started", _when(m)),
        ("runs", _several(m.get("run_ids") or [], "runs")),
        ("responses", f"{report['n']:,}"),
        ("measured token", repr(report.get("target")) if report.get("target") else ""),
        (
            "fingerprints",
            ", ".join(f"{shown(k)} ({v:,})" for k, v in report["fingerprints"].items()),
        ),
    ]
    for key in CONFIG_SHOWN:
        if key == "labels" and report.get("kind") == "generate":
            continue  # whole completions: no label is measured
        values = {shown(None if c.get(key) is None else json.dumps(c.get(key))) for c in configs}
        if any(key in c for c in configs):
            shown_values = (
                f"{len(values):,} {key}s (each in the table below)"
                if key == "prompt" and len(values) > 3
                else " / ".join(sorted(values))
            )
            rows.append((key.replace("_", " "), shown_values))
    cells = "".join(f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in rows if v)
    return f'<dl class="measured">{cells}</dl>'


def _several(names: list[str], what: str) -> str:
    """All of them when a few; else how many, and the first and the last."""
    if len(names) <= 3:
        return ", ".join(names)
    return f"{len(names):,} {what}, {names[0]} to {names[-1]}"


def _when(m: dict) -> str:
    first, last = m.get("first_started_at"), m.get("last_started_at")
    if not first:
        return ""
    return (
        first[:19].replace("T", " ")
        + (f" to {last[:19].replace('T', ' ')}" if last and last != first else "")
        + " UTC"
    )


def _values_table(report: dict) -> str:
    in_logprobs = report["space"] == "logprob"
    head = (
        "<thead><tr><th class=num>Logprob (nats)</th>"
        if in_logprobs
        else "<thead><tr><th class=num>Probability (%)</th>"
    ) + "<th class=num>Calls</th><th>Fingerprints</th></tr></thead>"
    bodies = []
    for cluster in report["clusters"]:
        rows = []
        for v in cluster["values"]:
            value = f"{v['logprob']:.15f}" if in_logprobs else f"{v['prob_pct']:.10f}"
            # a narrow cell breaks after a fingerprint's colon, not inside its name
            fps = " ".join(
                f'<span class="fp">{escape(shown(fp))}:<wbr>{c:,}</span>'
                for fp, c in sorted(v["fingerprints"].items())
            )
            rows.append(
                f"<tr><td class=num>{value}</td><td class=num>{v['count']:,}</td>"
                f"<td>{fps}</td></tr>"
            )
        bodies.append("<tbody>" + "".join(rows) + "</tbody>")
    unit = report["threshold_unit"]
    caption = (
        f"{report['distinct']:,} distinct values in {len(report['clusters'])} clusters at "
        f"{report['threshold']:g} {unit} (a thick line starts a cluster)"
    )
    return f'<p>{escape(caption)}</p><table class="values">{head}{"".join(bodies)}</table>'


def _analysis(report: dict) -> str:
    """The text report's detail lines, label and words, as a list."""
    from detcheck.render.text import _details

    items = []
    for line in _details(report):
        label, _, rest = line.partition("  ")
        items.append(
            f'<li><span class="label">{escape(label.strip())}</span>: {escape(rest.strip())}</li>'
        )
    return '<ul class="lines">' + "".join(items) + "</ul>"


def svg_of(fig) -> str:
    """A matplotlib figure as inline SVG that scales with the page. Its text stays text (the
    browser's sans-serif draws it, a reader can search and copy it, and its size can be
    checked against the page's)."""
    import io

    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    with plt.rc_context({"svg.fonttype": "none"}):
        fig.savefig(buffer, format="svg")
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, count=1, flags=re.S)  # generator, date
    return re.sub(r'(<svg[^>]*?) width="[^"]*" height="[^"]*"', r"\1", svg, count=1)


def markdown_page(markdown: str, data: dict, title: str) -> str:
    """compare's Markdown report as a page: headings, paragraphs and pipe tables (the only
    Markdown it writes), with the JSON."""
    from detcheck.render.markdown import markdown_blocks

    parts: list[str] = []
    for kind, *block in markdown_blocks(markdown):
        if kind == "table":
            header, rows = block
            numeric = {
                i for i in range(len(header)) if rows and all(_NUMBER.match(r[i]) for r in rows)
            }
            cells = [[_inline(c) for c in r] for r in rows]
            parts.append(table(header, cells, numeric=numeric, html_cells=True))
            continue
        (line,) = block
        if line.startswith("#"):
            text = line.lstrip("#").strip()
            css = "headline drift" if "drift" in text and "no drift" not in text else "headline"
            parts.append(f'<h1>{escape(title)}</h1><p class="{css}">{_inline(text)}</p>')
        elif line.strip():
            parts.append(f"<p>{_inline(line)}</p>")
    parts.append(
        "<h2>Raw data</h2><details><summary>The comparison as JSON (what <code>--json</code> "
        f"prints)</summary><pre>{escape(json.dumps(data, indent=2))}</pre></details>"
    )
    return page(title, "\n".join(parts))


_NUMBER = re.compile(r"^[-+]?[\d.,]+(?:e[-+]?\d+)?%?(?: \([\d,]+\))?$")  # 2.59% (259), 1e-05


def _inline(text: str) -> str:
    """`code` and **strong**, the rest escaped."""
    out = escape(text)
    out = re.sub(r"`([^`]*)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]*)\*\*", r"<strong>\1</strong>", out)
