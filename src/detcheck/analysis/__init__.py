"""Analyse: stored runs in, plain data out, no request and no printing.

Owns what a set of runs measured (runs.py), per-response features (features.py), distinct values
and clusters (values.py), statistics (stats.py), whole generations (generation_arrays.py, then
generations.py), drift between two sets (drift.py), the flip report as data (report.py) and the
allocator setting for large analyses (heap.py).

May import: the vocabulary (detcheck.spec, config, plan, errors, text, shapes) and detcheck.store.
Never send/, render/, commands/ or the edges: a report is decided here and formatted in render/.
"""
