"""Render: what analysis decided, as something to read. The flip report's text (text.py), the
generate report's (generations.py), compare's markdown (markdown.py), history lines (history.py),
the HTML page (html.py; whole generations on it: html_generations.py; its tables, cards on a
phone: html_table.py), the figure (plot.py, matplotlib imported when drawn), tables and prose
fitted to 80 columns (table.py), the progress bar on stderr (progress.py).

May import: the vocabulary, detcheck.store and detcheck.analysis. Never send/ or commands/;
nothing here decides a number, so `--json` and the text always agree.
"""
