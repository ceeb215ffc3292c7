"""From stored runs to the report: one JSON-shaped dict, and its text rendering.

`build_report` is the only place that decides what the report says; `render_text` only formats
it, so `--json` and the human table cannot disagree.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from detcheck.analysis import (
    clusters_of,
    count_clusters,
    distinct_values,
    fingerprint_counts,
    target_logprobs,
)
from detcheck.errors import DataError, UsageError
from detcheck.store import Run

# Analysis reads only these columns: never the raw bodies.
ANALYSIS_COLUMNS = ("ok", "error_type", "system_fingerprint", "token", "top_logprobs")


def run_target(runs: Sequence[Run], token: str | None) -> tuple[str, str | None]:
    """The token to analyse and its label: --token, else what the runs were measuring."""
    if token:
        return token, None
    seen = {(r.meta.get("target"), r.meta.get("label")) for r in runs}
    seen.discard((None, None))
    if not seen:
        raise DataError("the runs do not say which token they measured; name one with --token")
    if len(seen) > 1:
        names = ", ".join(sorted(repr(t) for t, _ in seen))
        raise UsageError(f"the runs measured different tokens ({names}); pick one with --token")
    return next(iter(seen))


def combined_table(runs: Sequence[Run]) -> pa.Table:
    tables = [r.table.select(list(ANALYSIS_COLUMNS)) for r in runs]
    return pa.concat_tables(tables, promote_options="permissive") if tables else None


def build_report(
    runs: Sequence[Run],
    thresholds_pct: Sequence[float] = (0.01,),
    token: str | None = None,
) -> dict:
    for threshold in thresholds_pct:
        if not threshold >= 0:
            raise UsageError(f"--threshold must be >= 0 percentage points, got {threshold}")
    thresholds_pct = list(thresholds_pct) or [0.01]
    target, label = run_target(runs, token)
    table = combined_table(runs)
    ok = table.column("ok").to_numpy(zero_copy_only=False).astype(bool)
    errors_by_type = _error_counts(table.filter(pc.invert(table.column("ok"))))
    good = table.filter(table.column("ok"))
    fps = good.column("system_fingerprint").to_pylist()
    logprobs = target_logprobs(good.column("top_logprobs"), target)
    present = np.isfinite(logprobs)
    distinct = distinct_values(logprobs[present], [f for f, p in zip(fps, present) if p])
    models = sorted({m for r in runs for m in [r.meta.get("config", {}).get("model")] if m})
    return {
        "n": int(ok.sum()),
        "target": target,
        "label": label,
        "models": models,
        "runs": [str(r.path) for r in runs],
        "distinct": len(distinct),
        "threshold_pct": thresholds_pct[0],
        "clusters": clusters_of(distinct, thresholds_pct[0]),
        "by_threshold": {_key(t): count_clusters(distinct.prob_pct, t) for t in thresholds_pct},
        "fingerprints": fingerprint_counts(fps),
        "missing_target": int((~present).sum()),
        "errors": int((~ok).sum()),
        "errors_by_type": errors_by_type,
    }


def _key(threshold: float) -> str:
    return format(threshold, "g")


def _error_counts(failed: pa.Table) -> dict[str, int]:
    if failed.num_rows == 0:
        return {}
    kinds = failed.column("error_type").to_pylist()
    names, counts = np.unique([k or "unknown" for k in kinds], return_counts=True)
    return {str(k): int(v) for k, v in zip(names, counts)}


def fmt_pct(value: float) -> str:
    return f"{value:.10f}"


def render_text(report: dict) -> str:
    from tabulate import SEPARATING_LINE, tabulate

    rows: list = []
    for i, cluster in enumerate(report["clusters"]):
        if i:
            rows.append(SEPARATING_LINE)
        for value in cluster["values"]:
            fps = " ".join(f"{fp}:{c:,}" for fp, c in sorted(value["fingerprints"].items()))
            rows.append([fmt_pct(value["prob_pct"]), f"{value['count']:,}", fps])
    what = (
        report["target"]
        if not report["label"] or report["label"] == report["target"]
        else (f"{report['label']} (token {report['target']!r})")
    )
    lines = [
        f"{what}: {report['distinct']:,} distinct probabilities in {report['n']:,} responses"
        + (f" from {', '.join(report['models'])}" if report["models"] else ""),
        "",
    ]
    if rows:
        lines.append(
            tabulate(
                rows,
                headers=["Probability (%)", "Count", "Fingerprints"],
                tablefmt="simple",
                disable_numparse=True,
                colalign=("right", "right", "left"),
            )
        )
        lines.append("")
    by = ", ".join(f"{c} at {t} pp" for t, c in report["by_threshold"].items())
    fps = ", ".join(f"{fp} {c:,}" for fp, c in sorted(report["fingerprints"].items()))
    lines += [
        f"responses {report['n']:,} | distinct values {report['distinct']:,} | clusters: {by}",
        f"calls per fingerprint: {fps or 'none'}",
    ]
    if report["missing_target"]:
        lines.append(
            f"{report['missing_target']:,} response(s) had no {report['target']!r} in their "
            "top list (not counted above)"
        )
    if report["errors"]:
        kinds = ", ".join(f"{k} {c:,}" for k, c in sorted(report["errors_by_type"].items()))
        lines.append(f"failed attempts: {report['errors']:,} ({kinds})")
    return "\n".join(lines)
