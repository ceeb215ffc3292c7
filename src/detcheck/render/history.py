"""`detcheck history`: one line per run across a dataset, newest last.

Each line is the run's own report (the one `analyze` prints, `report.summary` of it) with when,
where and what the run measured: history computes nothing of its own.
"""

from __future__ import annotations

from collections.abc import Sequence

from detcheck.analysis.report import build_report, summary
from detcheck.spec import DEFAULT_THRESHOLD
from detcheck.store import Run


def run_line(run: Run, thresholds: Sequence[float] = (DEFAULT_THRESHOLD,)) -> dict:
    meta = run.meta
    if (meta.get("config") or {}).get("kind") == "generate":
        return _generate_line(run)
    target = meta.get("target") or meta.get("label") or "?"
    report = build_report([run], thresholds, token=target)
    return {**_where(run), "target": target, **summary(report)}


def _where(run: Run) -> dict:
    """When and where a run was made, as every history line starts."""
    meta = run.meta
    return {
        "run": str(run.path),
        "run_id": meta.get("run_id"),
        "started_at": meta.get("started_at"),
        "status": meta.get("status"),
        "endpoint": meta.get("endpoint"),
        "model": (meta.get("config") or {}).get("model"),
    }


def _generate_line(run: Run) -> dict:
    """A generate run's line: its completions where a flip run has its distinct values."""
    from detcheck.analysis.generations import build_generation_report

    r = build_generation_report([run])
    modal = r.get("modal_completion") or {}
    return {
        **_where(run),
        "kind": "generate",
        "n": r["n"],
        "unique_completions": r["unique_completions"],
        "modal_share": modal.get("share"),
        "common_prefix_tokens": r.get("common_prefix_tokens"),
        "fingerprints": r["fingerprints"],
        "errors": r["errors"],
    }


def history(runs: list[Run], thresholds: Sequence[float] = (DEFAULT_THRESHOLD,)) -> list[dict]:
    lines = [run_line(r, thresholds) for r in runs]
    return sorted(lines, key=lambda x: (x["started_at"] or "", x["run_id"] or ""))


def render(lines: list[dict]) -> str:
    """The lines as a table that fits 80 columns: what all runs share (endpoint, model) said
    once above it, the rest in columns, long names wrapped."""
    import textwrap

    from detcheck.render.table import fit
    from detcheck.text import count, printable

    flips = [x for x in lines if x.get("kind") != "generate"]
    thresholds = list(flips[0]["by_threshold"]) if flips else []
    unit = flips[0]["threshold_unit"] if flips else "pp"
    endpoints = {x["endpoint"] for x in lines}
    models = {x["model"] for x in lines}
    shared = [count(len(lines), "run")]
    if len(models) == 1:
        shared.append(f"of {printable(next(iter(models)) or 'an unknown model')}")
    if len(endpoints) == 1:
        shared.append(f"at {printable(next(iter(endpoints)) or 'an unknown endpoint')}")

    def started(x: dict) -> str:  # a run that did not complete says so under its start
        when = (x["started_at"] or "")[:16].replace("T", " ")
        status = x["status"] or "unknown"
        return when if status == "complete" else f"{when}\n({printable(status)})"

    columns = {
        "started (UTC)": started,
        "endpoint": lambda x: printable(x["endpoint"] or ""),
        "model": lambda x: printable(x["model"] or ""),
        "n": lambda x: f"{x['n']:,}",
        "distinct": lambda x: (
            f"{x['distinct']:,}" if "distinct" in x else f"{x['unique_completions']:,} texts"
        ),
        **{
            ("clusters" if len(thresholds) == 1 else f"clusters at {t}"): (
                lambda x, t=t: x.get("by_threshold", {}).get(t, "")
            )
            for t in thresholds
        },
        "modal %": lambda x: f"{x['modal_pct']:.6f}" if x.get("modal_pct") is not None else "",
        "share": lambda x: f"{x['modal_share']:.1%}" if x["modal_share"] is not None else "",
        "fingerprints": lambda x: " ".join(printable(fp) for fp in sorted(x["fingerprints"])),
    }
    if len(endpoints) == 1:
        del columns["endpoint"]
    if len(models) == 1:
        del columns["model"]
    if thresholds:
        shared.append(f"(clusters at {', '.join(thresholds)} {unit}; share: of the modal value)")
    headers = list(columns)
    rows = [[cell(x) for cell in columns.values()] for x in lines]
    wrap = {i for i, h in enumerate(headers) if h in ("endpoint", "model", "fingerprints")}
    text_columns = ("started (UTC)", "endpoint", "model", "fingerprints")
    align = ["left" if h in text_columns else "right" for h in headers]
    head = textwrap.fill(" ".join(shared) + ":", 80, break_on_hyphens=False)
    return head + "\n\n" + fit(rows, headers, wrap, colalign=align)


CSV_COLUMNS = (
    "started_at", "status", "endpoint", "model", "kind", "n", "distinct", "unique_completions",
    "modal_pct", "modal_share", "chao1", "flips", "errors", "fingerprints", "run_id", "run",
)  # fmt: skip


def to_csv(lines: list[dict]) -> str:
    """The lines as CSV, one row per run (as `llm logs` and promptfoo export them): the
    fingerprints as `fp:calls` separated by spaces, one `clusters_at_<t>_<unit>` column per
    threshold."""
    import csv
    import io

    thresholds = sorted(
        {(t, x["threshold_unit"]) for x in lines for t in x.get("by_threshold", {})}
    )
    cluster_columns = [f"clusters_at_{t}_{unit}" for t, unit in thresholds]
    out = io.StringIO()
    writer = csv.DictWriter(out, [*CSV_COLUMNS, *cluster_columns], lineterminator="\n")
    writer.writeheader()
    for x in lines:
        row = {k: x.get(k) for k in CSV_COLUMNS}
        row["kind"] = x.get("kind", "flip")
        row["fingerprints"] = " ".join(f"{fp}:{c}" for fp, c in sorted(x["fingerprints"].items()))
        for (t, unit), name in zip(thresholds, cluster_columns):
            row[name] = (
                x.get("by_threshold", {}).get(t) if x.get("threshold_unit") == unit else None
            )
        writer.writerow(row)
    return out.getvalue()
