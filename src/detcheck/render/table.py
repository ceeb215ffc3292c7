"""Tables for a terminal of 80 columns: tabulate's, with the columns whose text may wrap
narrowed (widest first) until every line fits. A number never wraps; a word longer than its
column is split, as a terminal would."""

from __future__ import annotations

WIDTH = 80


def fit(rows: list, headers: list[str], wrap: set[int], width: int = WIDTH, **options) -> str:
    """`tabulate(rows, headers, **options)`, the columns in `wrap` narrowed so the table fits
    `width` (as far as they can: each keeps its longest word, up to 24 characters, whole)."""
    import tabulate as tabulate_module
    from tabulate import tabulate

    # tabulate pads every header by 2 (MIN_PADDING): columns two wider than their text
    padding, tabulate_module.MIN_PADDING = tabulate_module.MIN_PADDING, 0
    try:
        return _fit(tabulate, rows, headers, wrap, width, options)
    finally:
        tabulate_module.MIN_PADDING = padding


def _fit(tabulate, rows, headers, wrap, width, options) -> str:
    options.setdefault("disable_numparse", True)
    cells = [[str(r[i]) for r in rows if isinstance(r, list)] for i in range(len(headers))]
    natural = [max([len(headers[i])] + [len(c) for c in cells[i]]) for i in range(len(headers))]
    # a wrapped column keeps its longest word whole, where it can (up to 24 characters)
    least = [min(24, max([6] + [len(w) for c in cells[i] for w in c.split()])) for i in wrap]
    least = dict(zip(wrap, least))
    limits: list[int | None] = [None] * len(headers)
    text = tabulate(rows, headers=headers, **options)
    for _ in range(50):
        over = max(map(len, text.splitlines())) - width
        narrowing = [i for i in wrap if (limits[i] or natural[i]) > least[i]]
        if over <= 0 or not narrowing:
            return text
        widest = max(narrowing, key=lambda i: limits[i] or natural[i])
        limits[widest] = max(least[widest], (limits[widest] or natural[widest]) - over)
        text = tabulate(
            rows, headers=headers, maxcolwidths=limits, maxheadercolwidths=limits, **options
        )
    return text
