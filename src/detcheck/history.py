"""`detcheck history`: one line per run across a dataset, newest last.

Each run is read as analysis reads it (nested top-k fields only, tokens dictionary-encoded), and
only what a history line needs is computed: no association tests, no decomposition.
"""

from __future__ import annotations

import numpy as np

from detcheck import stats
from detcheck.analysis import count_clusters, distinct_coded, logprob_to_pct
from detcheck.features import FEATURE_COLUMNS, READ_AS_DICTIONARY, extract
from detcheck.store import Run, read_plan


def run_line(run: Run, threshold_pct: float = 0.01) -> dict:
    meta = run.meta
    target = meta.get("target") or meta.get("label") or "?"
    rows = run.num_rows()
    batch_size, workers = read_plan(rows)
    f = extract(run.batches(FEATURE_COLUMNS, batch_size, READ_AS_DICTIONARY, workers), target, rows)
    a = f.arrays()
    present = a["target"] >= 0
    distinct, _ = distinct_coded(
        a["target"][present], f.target_table, a["fingerprint"][present], f.fingerprints.names
    )
    values, counts = distinct.logprob, distinct.count
    fps = np.bincount(a["fingerprint"], minlength=len(f.fingerprints.names))
    modal = int(np.argmax(counts)) if counts.size else None
    return {
        "run": str(run.path),
        "run_id": meta.get("run_id"),
        "started_at": meta.get("started_at"),
        "status": meta.get("status"),
        "endpoint": meta.get("endpoint"),
        "model": (meta.get("config") or {}).get("model"),
        "target": target,
        "fingerprints": {f.fingerprints.names[i]: int(c) for i, c in enumerate(fps) if c},
        "n": int(a["fingerprint"].size),
        "errors": int(sum(f.errors_by_type.values())),
        "distinct": int(values.size),
        "clusters": count_clusters(logprob_to_pct(values), threshold_pct),
        "modal_pct": float(logprob_to_pct(values[modal])) if modal is not None else None,
        "modal_share": float(counts[modal] / counts.sum()) if modal is not None else None,
        "chao1": stats.unseen(counts)["chao1"],
    }


def history(runs: list[Run], threshold_pct: float = 0.01) -> list[dict]:
    lines = [run_line(r, threshold_pct) for r in runs]
    return sorted(lines, key=lambda x: (x["started_at"] or "", x["run_id"] or ""))


def render(lines: list[dict]) -> str:
    from tabulate import tabulate

    from detcheck.record import printable

    rows = [
        [
            (x["started_at"] or "")[:19].replace("T", " "),
            printable(x["endpoint"]),
            printable(x["model"]),
            " ".join(printable(fp) for fp in sorted(x["fingerprints"])),
            f"{x['n']:,}",
            x["distinct"],
            x["clusters"],
            f"{x['modal_pct']:.6f}" if x["modal_pct"] is not None else "",
            f"{x['modal_share']:.1%}" if x["modal_share"] is not None else "",
            f"{x['chao1']:,.1f}",
        ]
        for x in lines
    ]
    return tabulate(
        rows,
        headers=[
            "started (UTC)",
            "endpoint",
            "model",
            "fingerprints",
            "n",
            "distinct",
            "clusters",
            "modal %",
            "modal share",
            "Chao1",
        ],
        disable_numparse=True,
    )
