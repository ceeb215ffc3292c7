"""`detcheck report` and `compare --html`: one self-contained HTML page to share. Styles and
figures (SVG) are inline and nothing is fetched, so the file reads the same from a mail, an
artifact or a phone offline. Every piece of server-sent text is escaped."""

from __future__ import annotations

import json
import re
from html import escape

# Small, readable on a phone: one column, tables scroll sideways inside their own box.
STYLE = """
:root { color-scheme: light dark; --muted: #666; --line: #ccc; --band: rgba(127,127,127,.08); }
* { box-sizing: border-box; }
body { font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto;
       padding: 1rem; max-width: 62rem; }
h1 { font-size: 1.35rem; line-height: 1.3; margin: .2rem 0 1rem; }
h2 { font-size: 1.1rem; margin: 2rem 0 .6rem; border-bottom: 1px solid var(--line); }
.headline { font-size: 1.1rem; padding: .8rem 1rem; background: var(--band);
            border-left: 4px solid #4a7; margin: 1rem 0; }
.drift { border-left-color: #c33; }
dl.measured { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; margin: 0; }
dl.measured dt { color: var(--muted); }
dl.measured dd { margin: 0; overflow-wrap: anywhere; }
.scroll { overflow-x: auto; -webkit-overflow-scrolling: touch; margin: .8rem 0; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; min-width: 100%; }
th, td { text-align: left; padding: .25rem .6rem; border-bottom: 1px solid var(--line);
         white-space: nowrap; }
td.num, th.num { text-align: right; }
td.wrap { white-space: normal; min-width: 8rem; }
tbody + tbody { border-top: 2px solid var(--muted); }
figure { margin: 1rem 0; }
figure svg { width: 100%; min-width: 48rem; height: auto; background: #fff; border-radius: 4px; }
figcaption { color: var(--muted); font-size: .85rem; }
@media (min-width: 50rem) { figcaption.narrow { display: none; } }
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
    parts = [f"<h1>{escape(heading)}</h1>"]
    parts.append(f'<p class="headline">{escape(report["headline"])}</p>')
    parts.append("<h2>What was measured</h2>" + _measured(report, configs or []))
    if figure_svg:
        parts.append(
            f'<h2>Figure</h2><figure><div class="scroll">{figure_svg}</div><figcaption '
            'class="narrow">The figure is wider than this screen: scroll it sideways.'
            "</figcaption></figure>"
        )
    elif figure_svg is None and configs is not None:
        parts.append(
            "<h2>Figure</h2><p>No figure: plotting needs matplotlib "
            "(<code>pip install matplotlib</code>).</p>"
        )
    if report.get("kind") == "generate":
        from detcheck.render.generations import render_text

        parts.append(f"<h2>Completions</h2><pre>{escape(render_text(report))}</pre>")
    else:
        parts.append("<h2>Distinct values</h2>" + _values_table(report))
        parts.append("<h2>What the analysis says</h2>" + _analysis(report))
    parts.append(
        "<h2>Raw data</h2><details><summary>The report as JSON (what <code>--json</code> "
        f"prints)</summary><pre>{escape(json.dumps(report, indent=2))}</pre></details>"
    )
    return "\n".join(parts)


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
        ("runs", ", ".join(m.get("run_ids") or [])),
        ("responses", f"{report['n']:,}"),
        ("measured token", repr(report.get("target")) if report.get("target") else ""),
        ("fingerprints", ", ".join(f"{k} ({v:,})" for k, v in report["fingerprints"].items())),
    ]
    for key in CONFIG_SHOWN:
        if key == "labels" and report.get("kind") == "generate":
            continue  # whole completions: no label is measured
        values = {json.dumps(c.get(key)) for c in configs if key in c}
        if values:
            rows.append((key.replace("_", " "), " / ".join(sorted(values))))
    cells = "".join(f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in rows if v)
    return f'<dl class="measured">{cells}</dl>'


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
            shown = f"{v['logprob']:.15f}" if in_logprobs else f"{v['prob_pct']:.10f}"
            fps = " ".join(f"{fp}:{c:,}" for fp, c in sorted(v["fingerprints"].items()))
            rows.append(
                f"<tr><td class=num>{shown}</td><td class=num>{v['count']:,}</td>"
                f"<td>{escape(fps)}</td></tr>"
            )
        bodies.append("<tbody>" + "".join(rows) + "</tbody>")
    unit = report["threshold_unit"]
    caption = (
        f"{report['distinct']:,} distinct values in {len(report['clusters'])} clusters at "
        f"{report['threshold']:g} {unit} (a thick line starts a cluster)"
    )
    return (
        f'<p>{escape(caption)}</p><div class="scroll"><table>{head}{"".join(bodies)}</table></div>'
    )


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
    """A matplotlib figure as inline SVG that scales with the page (text drawn as paths, so no
    font is needed)."""
    import io

    buffer = io.StringIO()
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
            head = "".join(f"<th>{_inline(c)}</th>" for c in header)
            body = "".join(
                "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in rows
            )
            parts.append(
                f'<div class="scroll"><table><thead><tr>{head}</tr></thead>{body}</table></div>'
            )
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


def _inline(text: str) -> str:
    """`code` and **strong**, the rest escaped."""
    out = escape(text)
    out = re.sub(r"`([^`]*)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]*)\*\*", r"<strong>\1</strong>", out)
