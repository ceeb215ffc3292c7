"""Text for a terminal of 80 columns: tables (tabulate's, with the columns whose text may wrap
narrowed, widest first, until every line fits: a number never wraps, a word longer than its
column is split, as a terminal would) and prose, folded at word boundaries."""

from __future__ import annotations

WIDTH = 80


def fit(rows: list, headers: list[str], wrap, width: int = WIDTH, **options) -> str:
    """`tabulate(rows, headers, **options)`, the columns in `wrap` narrowed so the table fits
    `width` (as far as they can: each keeps its longest word, up to 24 characters, whole; or,
    if `wrap` maps columns to widths, down to those)."""
    import tabulate as tabulate_module
    from tabulate import tabulate

    # tabulate pads every header by 2 (MIN_PADDING): columns two wider than their text
    padding, tabulate_module.MIN_PADDING = tabulate_module.MIN_PADDING, 0
    try:
        return _fit(tabulate, rows, headers, wrap, width, options)
    finally:
        tabulate_module.MIN_PADDING = padding


def words(cells: list[str]) -> list[str]:
    return [w for c in cells for w in c.split()]


def _fit(tabulate, rows, headers, wrap, width, options) -> str:
    options.setdefault("disable_numparse", True)
    cells = [[str(r[i]) for r in rows if isinstance(r, list)] for i in range(len(headers))]
    natural = [max([len(headers[i])] + [len(c) for c in cells[i]]) for i in range(len(headers))]
    # a wrapped column keeps its longest word whole, where it can (up to 24 characters), or
    # the width the caller gives
    least = {
        i: wrap[i] if isinstance(wrap, dict) else min(24, max([6, *map(len, words(cells[i]))]))
        for i in wrap
    }
    limits: list[int | None] = [None] * len(headers)
    text = tabulate(rows, headers=headers, **options)
    for _ in range(200):
        over = max(map(len, text.splitlines())) - width
        narrowing = [i for i in wrap if (limits[i] or natural[i]) > least[i]]
        if over <= 0 or not narrowing:
            return text
        # the widest column gives first, down to the next widest: widths even out
        now = sorted(((limits[i] or natural[i]), i) for i in narrowing)
        width_now, widest = now[-1]
        runner_up = now[-2][0] if len(now) > 1 else least[widest]
        step = max(1, min(over, width_now - runner_up))
        limits[widest] = max(least[widest], width_now - step)
        text = tabulate(
            rows, headers=headers, maxcolwidths=limits, maxheadercolwidths=limits, **options
        )
    return text


LABEL_WIDTH = 14  # "explains?     ": the labels of the detail lines


def wrap(line: str, width: int = 80) -> str:
    """A line of text folded at word boundaries to fit a terminal of `width` columns: a labelled
    detail line under its label, other prose flush left. Tables are left as they are."""
    if len(line) <= width or "\n" in line:
        return line
    import re
    import textwrap

    labelled = re.match(r"^[a-z][a-z0-9?-]*(?: [a-z0-9?-]+)? +(?=\S)", line)
    if labelled and len(labelled.group()) == LABEL_WIDTH:
        indent = " " * LABEL_WIDTH
    elif "  " in line.strip():  # aligned columns: a table row
        return line
    else:
        indent = ""
    return textwrap.fill(
        line, width, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False
    )
