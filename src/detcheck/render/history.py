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
    from tabulate import tabulate

    from detcheck.text import printable

    flips = [x for x in lines if x.get("kind") != "generate"]
    thresholds = list(flips[0]["by_threshold"]) if flips else []
    unit = flips[0]["threshold_unit"] if flips else "pp"
    rows = [
        [
            (x["started_at"] or "")[:19].replace("T", " "),
            printable(x["status"] or ""),
            printable(x["endpoint"]),
            printable(x["model"]),
            " ".join(printable(fp) for fp in sorted(x["fingerprints"])),
            f"{x['n']:,}",
            x["distinct"] if "distinct" in x else f"{x['unique_completions']} completions",
            *(x.get("by_threshold", {}).get(t, "") for t in thresholds),
            f"{x['modal_pct']:.6f}" if x.get("modal_pct") is not None else "",
            f"{x['modal_share']:.1%}" if x["modal_share"] is not None else "",
            f"{x['chao1']:,.1f}" if "chao1" in x else "",
        ]
        for x in lines
    ]
    return tabulate(
        rows,
        headers=[
            "started (UTC)",
            "status",
            "endpoint",
            "model",
            "fingerprints",
            "n",
            "distinct",
            *(f"clusters at {t} {unit}" for t in thresholds),
            "modal %",
            "modal share",
            "Chao1",
        ],
        disable_numparse=True,
    )
