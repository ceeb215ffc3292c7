"""From stored runs to the flip report: one JSON-shaped dict (`Report`), and `report_of`, which
picks the flip or the generate report the runs call for.

`build_report` is the only place that decides what the report says; detcheck.render.text only
formats it, so `--json` and the human table cannot disagree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypedDict

import numpy as np

from detcheck.analysis import stats
from detcheck.analysis.features import FEATURE_COLUMNS, READ_AS_DICTIONARY, extract
from detcheck.analysis.heap import keep_freed_memory
from detcheck.analysis.runs import measured, require_one_setup, run_target
from detcheck.analysis.values import cluster_ids, clusters_of, count_clusters, distinct_coded
from detcheck.errors import UsageError
from detcheck.spec import DEFAULT_THRESHOLD, PARAMS
from detcheck.store import Run, read_parallel, read_plan
from detcheck.text import count

SPACES = ("pct", "logprob")
UNITS = {"pct": "pp", "logprob": "nats"}  # a threshold's unit in each space

# Bump when a key of the --json report is added, removed, renamed or retyped (pinned by
# tests/test_json_schema.py). 1: `threshold` with `threshold_unit` replaced `threshold_pct`.
# 2: `first_call`. 3: `replayed`, `measured`, and `unseen.chao1_ci95`. 4: `top_token.common`.
REPORT_VERSION = 4


class Report(TypedDict):
    """The --json report (`report_version` REPORT_VERSION). analyze, flip, compare, history,
    plot, run and sweep all read this one shape."""

    report_version: int
    n: int
    target: str
    label: str | None
    label_mass: bool
    space: str
    models: list[str]
    runs: list[str]
    distinct: int
    threshold: float
    threshold_unit: str
    clusters: list[dict]
    by_threshold: dict[str, int]
    fingerprints: dict[str, int]
    missing_target: int
    errors: int
    errors_by_type: dict[str, int]
    modal: dict | None
    unseen: dict
    accumulation: list[dict]
    fingerprint_association: dict | None
    time_association: dict | None
    concurrency_association: dict | None
    top_token: dict
    decomposition: dict
    spread: dict | None
    first_call: dict | None
    replayed: bool  # any run a replay: its in-flight counts are the replaying client's
    measured: dict  # what was measured: models, endpoints, run ids, first and last start
    headline: str


def report_of(
    runs: Sequence[Run], thresholds=(DEFAULT_THRESHOLD,), allow_mixed: bool = False, **options
) -> dict:
    """The report the runs call for: a flip report (the first token), or a generate report
    (whole answers: detcheck.analysis.generations). `answer_regex` is for generate runs only.
    Runs of different setups are refused unless `allow_mixed`."""
    kinds = {(r.meta.get("config") or {}).get("kind", "flip") for r in runs}
    answer_regex = options.pop("answer_regex", None)
    if len(kinds) == 1 and not allow_mixed:
        require_one_setup(runs, "--allow-mixed")
    if kinds == {"generate"}:
        from detcheck.analysis.generations import build_generation_report

        return build_generation_report(runs, answer_regex)
    if len(kinds) > 1:
        raise UsageError("the runs mix flip and generate measurements: analyse them apart")
    if answer_regex is not None:
        raise UsageError("--answer-regex is for generate runs (whole answers)")
    return build_report(runs, thresholds, **options)


def build_report(
    runs: Sequence[Run],
    thresholds: Sequence[float] = (DEFAULT_THRESHOLD,),
    token: str | None = None,
    label_mass: bool = False,
    space: str = "pct",
) -> Report:
    with keep_freed_memory():
        return _build_report(runs, thresholds, token, label_mass, space)


def _build_report(
    runs: Sequence[Run],
    thresholds: Sequence[float],
    token: str | None,
    label_mass: bool,
    space: str,
) -> dict:
    PARAMS["thresholds"].validate(list(thresholds))
    if space not in SPACES:
        raise UsageError(f"--space must be one of {', '.join(SPACES)}, got {space!r}")
    thresholds = list(thresholds) or [DEFAULT_THRESHOLD]
    target, label = run_target(runs, token)
    if label_mass and not label:
        label = target
    capacity = sum(r.num_rows() for r in runs)
    batch_size, workers = read_plan(capacity)
    batches = read_parallel(
        (
            task
            for r in runs
            for task in r.read_tasks(FEATURE_COLUMNS, batch_size, READ_AS_DICTIONARY)
        ),
        workers,
    )
    f = extract(batches, target, capacity, label_mass=label if label_mass else None)
    stats.import_scipy_in_background()  # reading is over: a core is free for it
    a = f.arrays()
    present = a["target"] >= 0
    if token and present.size and not present.any():  # asked for by name, and never there
        raise UsageError(
            f"--token {token!r} is not among the top logprobs of any of the "
            f"{present.size:,} responses (a leading space is part of a token: ' {token}'?)"
        )
    everywhere = bool(present.all())  # the usual case: views, not 10^7-element copies

    def where_present(values: np.ndarray) -> np.ndarray:
        return values if everywhere else values[present]

    distinct, inverse = distinct_coded(
        where_present(a["target"]),
        f.target_table,
        where_present(a["fingerprint"]),
        f.fingerprints.names,
    )
    axis = distinct.prob_pct if space == "pct" else distinct.logprob
    value_cluster = cluster_ids(axis, thresholds[0]).astype(np.int32)
    response_cluster = value_cluster[inverse] if len(distinct) else np.zeros(0, np.int32)
    first_call = _first_call(distinct, inverse, where_present(a["started_at_us"]))
    del inverse
    n = int(a["fingerprint"].size)
    report = {
        "report_version": REPORT_VERSION,
        "n": n,
        "target": target,
        "label": label,
        "label_mass": label_mass,
        "space": space,
        "models": sorted({m for r in runs for m in [r.meta.get("config", {}).get("model")] if m}),
        "runs": [str(r.path) for r in runs],
        "distinct": len(distinct),
        "threshold": thresholds[0],
        "threshold_unit": UNITS[space],
        "clusters": clusters_of(distinct, thresholds[0], space),
        "by_threshold": {format(t, "g"): count_clusters(axis, t) for t in thresholds},
        "fingerprints": {
            f.fingerprints.names[c]: int(k)
            for c, k in enumerate(np.bincount(a["fingerprint"], minlength=1).tolist())
            if k
        },
        "missing_target": int((~present).sum()),
        "errors": int(sum(f.errors_by_type.values())),
        "errors_by_type": dict(sorted(f.errors_by_type.items())),
    }
    report.update(_more(f, a, distinct, where_present, response_cluster))
    report["first_call"] = first_call
    report["replayed"] = any(r.meta.get("replay_of") for r in runs)
    report["measured"] = measured(runs)
    if report["replayed"]:  # what was in flight at the endpoint then is not known
        report["concurrency_association"] = None
    if not a["started_at_us"].any():  # imported data without times: no order, no load
        report["first_call"] = report["time_association"] = None
        report["concurrency_association"] = None
    report["headline"] = headline(report)
    return report


def _first_call(distinct, inverse: np.ndarray, started_at_us: np.ndarray) -> dict | None:
    """The value of the call that started first, and how many calls share it: a server's first
    call can differ from every later one (llama.cpp evaluates the whole prompt then, and reuses
    its cache after)."""
    if not len(distinct) or inverse.size < 2:
        return None
    value = int(inverse[int(np.argmin(started_at_us))])
    count = int(distinct.count[value])
    return {
        "prob_pct": float(distinct.prob_pct[value]),
        "logprob": float(distinct.logprob[value]),
        "calls_with_its_value": count,
        "alone": count == 1,
        "modal": value == int(stats.modal(distinct.count)),
    }


def _more(f, a, distinct, where_present, response_cluster) -> dict:
    """What the publication could not say: modal share, unseen values, explanations, flips."""
    out: dict = {}
    # numpy work first, while scipy is still being imported on the other core
    time_bucket = stats.time_buckets(where_present(a["started_at_us"]))
    flips = stats.top_token_flips(a["top_token"])
    risk = stats.flip_risk(a["top1_logprob"], a["top2_logprob"])
    n_present = int(distinct.count.sum())
    if n_present:
        i = stats.modal(distinct.count)
        count = int(distinct.count[i])
        out["modal"] = {
            "prob_pct": float(distinct.prob_pct[i]),
            "logprob": float(distinct.logprob[i]),
            "count": count,
            "share": count / n_present,
            "share_ci95": list(stats.wilson_ci95(count, n_present)),
        }
    else:
        out["modal"] = None
    out["unseen"] = stats.unseen(distinct.count)
    out["unseen"]["chao1_ci95"] = list(stats.chao1_ci95(distinct.count))
    out["accumulation"] = [
        {"calls": m, "distinct": d} for m, d in stats.accumulation_curve(distinct.count)
    ]
    out["fingerprint_association"] = stats.association(
        response_cluster, where_present(a["fingerprint"])
    )
    out["time_association"] = stats.association(response_cluster, time_bucket)
    in_flight = where_present(a["in_flight"])
    out["concurrency_association"] = stats.association(
        response_cluster,
        np.minimum(in_flight, 64),  # beyond 64 in flight: one bucket
    )
    out["top_token"] = {
        "modal_token": f.tokens.names[flips["modal_code"]]
        if flips["modal_code"] is not None
        else None,
        "flips": flips["flips"],
        "share": flips["share"],
        "risk": risk,
        "common": _common_top_tokens(f, a),
    }
    weights = np.bincount(a["vector"], minlength=len(f.vectors))
    out["decomposition"] = stats.decompose(f.vectors, weights.tolist())
    modal_lp = out["modal"]["logprob"] if out["modal"] else None
    out["spread"] = stats.spread(distinct.logprob, distinct.count, modal_lp)
    return out


def _common_top_tokens(f, a, most: int = 5) -> list[dict]:
    """The tokens the endpoint answered with most, how often, and their median probability:
    what there is to measure when the target is not."""
    codes, top1 = a["top_token"], a["top1_logprob"]
    calls = np.bincount(codes, minlength=len(f.tokens.names))
    out = []
    for code in np.argsort(-calls, kind="stable")[:most]:
        name = f.tokens.names[code]
        if not calls[code] or not name:
            continue
        lp = top1[(codes == code) & np.isfinite(top1)]
        prob = float(100 * np.exp(np.median(lp.astype(np.float64)))) if lp.size else None
        out.append({"token": name, "calls": int(calls[code]), "prob_pct": prob})
    return out


def headline(r: dict) -> str:
    if r["n"] == 0:
        return "no successful responses to analyse"
    if r["distinct"] == 0 and not r.get("label_mass"):
        return _absent_headline(r)
    what = token_shown(r["label"] if r.get("label_mass") else r["target"])
    if r["distinct"] == 1 and r["n"] > 1 and not r.get("label_mass"):
        flips = r["top_token"]["flips"]
        return (
            f"Deterministic: all {count(r['n'], 'call')} returned the same {what} probability"
            + (f", though the top token changed in {count(flips, 'call')}." if flips else ".")
        )
    kind = "probability mass" if r.get("label_mass") else "probabilities"
    if r["distinct"] == 1 and not r.get("label_mass"):
        kind = "probability"
    parts = [
        f"{r['distinct']:,} distinct {what} {kind} in {count(r['n'], 'call')}"
        + (
            f" (about {math.floor(r['unseen']['chao1'] + 0.5):,} exist by Chao1)"
            if r["distinct"] > 1
            else ""
        )
    ]
    if r["modal"]:
        parts.append(f"the most common value came back in {r['modal']['share']:.1%} of calls")
    fps = [k for k in r["fingerprints"] if k != "null"]
    if len(fps) > 1:
        subject = "the two fingerprints" if len(fps) == 2 else f"the {len(fps)} fingerprints"
        parts.append(
            stats.association_verdict(
                subject, r["fingerprint_association"], plural=True, untested=untested(r, "")
            )
        )
    flips = r["top_token"]["flips"]
    parts.append(
        f"the top token changed in {count(flips, 'call')}"
        if flips
        else "the top token never changed"
    )
    return "; ".join(parts) + "."


def token_shown(token: str) -> str:
    """A token as a sentence names it: bare, or quoted when spaces around it would vanish
    (" Heads" would read as a double space)."""
    return token if token and token == token.strip() and token.isprintable() else repr(token)


# why an association could not be tested, by what it would have compared the clusters with
_ONE = {
    "fingerprint_association": "one fingerprint",
    "time_association": "all calls at one time",
    "concurrency_association": "one concurrency",
}


def untested(r: dict, key: str) -> str:
    """Why an association was not tested: one cluster (nothing to explain), else one value of
    what would explain it."""
    if len(r["clusters"]) < 2:
        return "one cluster: nothing to explain"
    return f"{_ONE.get(key, 'one value')}: nothing to compare"


def _absent_headline(r: dict) -> str:
    """The target came back in no response: say so, and name the tokens that did come back."""
    what = r["target"]
    n = r["n"]
    among = "the only response" if n == 1 else f"any of the {n:,} responses"
    line = (
        f"{what!r} was not among the top tokens of {among}: there is no {what!r} probability "
        "to measure"
    )
    common = r["top_token"].get("common") or []
    if not common:
        return line + "."
    shown = ", ".join(
        f"{c['token']!r} ({count(c['calls'], 'call')}"
        + (f", {c['prob_pct']:.3g}%" if c["prob_pct"] is not None else "")
        + ")"
        for c in common[:3]
    )
    first = common[0]["token"]
    return (
        f"{line}; the top token was {shown}. Measure one that is there "
        f"(detcheck analyze RUN --token {first!r}), or a prompt the model answers with {what!r}."
    )


def summary(report: Report) -> dict:
    """The one-line view of a report (run, sweep and history lines)."""
    modal = report["modal"] or {}
    return {
        "n": report["n"],
        "distinct": report["distinct"],
        "clusters": len(report["clusters"]),
        "threshold": report["threshold"],
        "threshold_unit": report["threshold_unit"],
        "by_threshold": report["by_threshold"],
        "modal_pct": modal.get("prob_pct"),
        "modal_share": modal.get("share"),
        "chao1": report["unseen"]["chao1"],
        "fingerprints": report["fingerprints"],
        "errors": report["errors"],
        "flips": report["top_token"]["flips"],
    }
