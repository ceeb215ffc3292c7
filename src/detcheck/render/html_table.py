"""The page's tables and values: a table whose rows become cards on a phone, and what a page
shows where the data has nothing ("unknown", never null). Shared by the report, generations and
audit pages (detcheck.render.html, html_generations, audit)."""

from __future__ import annotations

from html import escape

UNKNOWN = "unknown"  # what a page says where the data has nothing (JSON's null)


def shown(value) -> str:
    """A value as a page shows it: None (JSON null) as "unknown"."""
    return UNKNOWN if value is None or value == "null" else str(value)


def table(
    headers: list[str],
    rows: list[list],
    numeric: set[int] = frozenset(),
    css: str = "",
    cells_css: dict[int, str] | None = None,
    html_cells: bool = False,
) -> str:
    """A table whose rows become cards on a phone (each cell labelled with its column); every
    cell escaped, None shown as "unknown". `numeric` columns align right and never wrap;
    `cells_css` gives a column's cells a class; `html_cells`: the cells are HTML already."""
    cells_css = cells_css or {}

    def cls(i):
        names = ["num"] * (i in numeric) + ([cells_css[i]] if i in cells_css else [])
        return f' class="{" ".join(names)}"' if names else ""

    head = "".join(f"<th{cls(i)}>{escape(h)}</th>" for i, h in enumerate(headers))
    body = "".join(
        "<tr>"
        + "".join(
            f'<td{cls(i)} data-label="{escape(headers[i])}">'
            f"{c if html_cells else escape(shown(c))}</td>"
            for i, c in enumerate(r)
        )
        + "</tr>"
        for r in rows
    )
    return (
        f'<table class="cards{" " + css if css else ""}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )
