"""Send: the requests of a Plan, and every attempt as a stored row.

Owns the online measurement (online.py: Flip, concurrency, rate cap), when to try again
(retry.py), the SDK client and its whole-request timeout (client.py), transports handed to it
(transport.py: replay, body caps), the Batch API (batch_api.py: its calls; batch.py: the
measurement through it), probes (probe.py), what an endpoint says it serves (models.py), which
token a label arrives as and what it costs (tokens.py), and turning one exchange into one
redacted row (record.py).

May import: the vocabulary (detcheck.spec, config, plan, errors, text, shapes) and detcheck.store
(rows are written as they arrive). Never analysis/, render/, commands/ or the edges.
"""
