"""From stored runs to the report: one JSON-shaped dict, and its text rendering.

`build_report` is the only place that decides what the report says; `render_text` only formats
it, so `--json` and the human table cannot disagree.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import TypedDict

import numpy as np

from detcheck.analysis import stats
from detcheck.analysis.features import FEATURE_COLUMNS, READ_AS_DICTIONARY, extract
from detcheck.analysis.heap import keep_freed_memory
from detcheck.analysis.values import cluster_ids, clusters_of, count_clusters, distinct_coded
from detcheck.errors import DataError, UsageError
from detcheck.send.record import clip
from detcheck.spec import DEFAULT_THRESHOLD, PARAMS
from detcheck.store import Run, read_parallel, read_plan

SPACES = ("pct", "logprob")
UNITS = {"pct": "pp", "logprob": "nats"}  # a threshold's unit in each space

# Bump when a key of the --json report is added, removed, renamed or retyped (pinned by
# tests/test_json_schema.py). 1: `threshold` with `threshold_unit` replaced `threshold_pct`.
# 2: `first_call`. 3: `replayed`, `measured`, and `unseen.chao1_ci95`.
REPORT_VERSION = 3


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


# What makes two runs measure the same thing: runs that differ in any are not added up.
SETUP_KEYS = ("model", "prompt", "labels", "temperature", "top_logprobs", "api", "max_tokens")


def setup_of(run: Run) -> dict:
    config = run.meta.get("config") or {}
    setup = {key: config.get(key) for key in SETUP_KEYS}
    setup["labels"] = tuple(setup["labels"] or ())
    setup["api"] = setup["api"] or "chat"  # runs before --api were chat
    if config.get("kind") == "generate":  # a generate report keeps each prompt apart
        del setup["prompt"]
    else:  # a first-token measurement asks for 1 token (or a few, on the Responses API)
        del setup["max_tokens"]
    return setup


def setup_differences(runs: Sequence[Run]) -> list[str]:
    """What differs among the runs' setups, one phrase per parameter, with run counts:
    "model 'a' (2 runs), 'b' (1 run)". Empty if they measure the same thing."""
    counts: dict[str, Counter] = {}
    for run in runs:
        for key, value in setup_of(run).items():
            counts.setdefault(key, Counter())[value] += 1
    return [
        f"{key} "
        + ", ".join(
            f"{_setup_value(value)} ({count(n, 'run')})"
            for value, n in sorted(seen.items(), key=_by_count)
        )
        for key, seen in counts.items()
        if len(seen) > 1
    ]


def _by_count(item) -> tuple:
    return -item[1], repr(item[0])


def _setup_value(value) -> str:
    if isinstance(value, tuple):
        value = ",".join(value)
    return clip(repr(value), 60)


def require_one_setup(runs: Sequence[Run], override: str, what: str = "the runs") -> None:
    """Refuse (exit 2) to add up runs that measured different things, naming what differs."""
    differences = setup_differences(runs)
    if differences:
        raise UsageError(
            f"{what} measure different setups: {'; '.join(differences)}. Analyse them apart, "
            f"or pass {override} to add them up anyway"
        )


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
    }
    weights = np.bincount(a["vector"], minlength=len(f.vectors))
    out["decomposition"] = stats.decompose(f.vectors, weights.tolist())
    modal_lp = out["modal"]["logprob"] if out["modal"] else None
    out["spread"] = stats.spread(distinct.logprob, distinct.count, modal_lp)
    return out


def measured(runs: Sequence[Run]) -> dict:
    """What the runs measured, for a reader of the report or the figure: model, endpoint, the
    run ids and when they started."""
    starts = sorted(s for r in runs if (s := r.meta.get("started_at")))
    return {
        "models": sorted({m for r in runs if (m := (r.meta.get("config") or {}).get("model"))}),
        "endpoints": sorted({e for r in runs if (e := r.meta.get("endpoint"))}),
        "run_ids": [r.meta.get("run_id") or str(r.path) for r in runs],
        "via": sorted({r.meta.get("via") or "online" for r in runs}),  # the serving tier
        "first_started_at": starts[0] if starts else None,
        "last_started_at": starts[-1] if starts else None,
    }


def measured_line(r: dict) -> str | None:
    """'gpt-4o at https://api.openai.com/v1 on 2026-11-30, run <id>, n = 200'."""
    m = r.get("measured")
    if not m:
        return None
    first, last = (m["first_started_at"] or "")[:10], (m["last_started_at"] or "")[:10]
    when = f" on {first}" if first == last else f" from {first} to {last}"
    runs = m["run_ids"]
    which = f"run {runs[0]}" if len(runs) == 1 else f"{len(runs):,} runs"
    tier = " via the Batch API" if m.get("via") == ["batch"] else ""
    return (
        f"{', '.join(m['models']) or 'unknown model'} at {', '.join(m['endpoints']) or '?'}{tier}"
        f"{when if first else ''}, {which}, n = {r['n']:,}"
    )


def headline(r: dict) -> str:
    if r["n"] == 0:
        return "no successful responses to analyse"
    what = r["label"] if r.get("label_mass") else r["target"]
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
        parts.append(stats.association_verdict(subject, r["fingerprint_association"], plural=True))
    flips = r["top_token"]["flips"]
    parts.append(
        f"the top token changed in {count(flips, 'call')}"
        if flips
        else "the top token never changed"
    )
    return "; ".join(parts) + "."


def _interval(unseen: dict) -> str:
    lo, hi = unseen.get("chao1_ci95") or (None, None)
    return f" (95% {lo:,.1f} to {hi:,.1f})" if lo is not None and hi != lo else ""


def count(n: int, noun: str) -> str:
    """ "1 call", "2 calls", "10,000 calls"."""
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def fmt_pct(value: float) -> str:
    return f"{value:.10f}"


def render_text(report: dict) -> str:
    from tabulate import SEPARATING_LINE, tabulate

    if report.get("kind") == "generate":
        from detcheck.analysis.generations import render_text as render_generation

        return render_generation(report)

    from detcheck.send.record import printable

    lines = [report["headline"]]
    line = measured_line(report)
    if line:
        lines.append(f"measured      {printable(line)}")
    lines.append("")
    rows: list = []
    in_logprobs = report["space"] == "logprob"  # rare tokens: percentages all print alike
    for i, cluster in enumerate(report["clusters"]):
        if i:
            rows.append(SEPARATING_LINE)
        for value in cluster["values"]:
            fps = " ".join(
                f"{printable(fp)}:{c:,}" for fp, c in sorted(value["fingerprints"].items())
            )
            shown = f"{value['logprob']:.15f}" if in_logprobs else fmt_pct(value["prob_pct"])
            rows.append([shown, f"{value['count']:,}", fps])
    if rows:
        lines.append(
            tabulate(
                rows,
                headers=[
                    "Logprob (nats)" if in_logprobs else "Probability (%)",
                    "Count",
                    "Fingerprints",
                ],
                tablefmt="simple",
                disable_numparse=True,
                colalign=("right", "right", "left"),
            )
        )
        lines.append("")
    unit = report["threshold_unit"]
    by = ", ".join(f"{c} at {t} {unit}" for t, c in report["by_threshold"].items())
    fps = ", ".join(f"{printable(fp)} {c:,}" for fp, c in sorted(report["fingerprints"].items()))
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
        kinds = ", ".join(f"{k} {c:,}" for k, c in report["errors_by_type"].items())
        lines.append(f"failed attempts: {report['errors']:,} ({kinds})")
    if report["n"]:
        lines += ["", *_details(report)]
    return "\n".join(wrap(line) for line in lines)


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


def _details(r: dict) -> list[str]:
    out = []
    m = r["modal"]
    if m:
        lo, hi = m["share_ci95"]
        out.append(
            f"modal value   {fmt_pct(m['prob_pct'])}% in {count(m['count'], 'call')} = "
            f"{m['share']:.1%} "
            f"(95% CI {lo:.1%} to {hi:.1%})"
        )
    u = r["unseen"]
    curve = r["accumulation"]
    picks = [p for p in curve if p["calls"] in _decades(curve)]
    out.append(
        f"unseen        f1 = {u['singletons']} seen once, f2 = {u['doubletons']} seen twice; "
        f"Chao1 = {u['chao1']:,.1f} distinct values exist{_interval(u)}; "
        f"P(next call is new) = {u['p_new']:.4f}"
    )
    if picks:
        out.append(
            "accumulation  "
            + ", ".join(f"{count(p['calls'], 'call')} -> {p['distinct']:.1f}" for p in picks)
        )
    for name, key in (
        ("the fingerprint", "fingerprint_association"),
        ("the time of the call", "time_association"),
        ("the concurrency", "concurrency_association"),
    ):
        result = r[key]
        if key == "concurrency_association" and r.get("replayed"):
            out.append(
                "explains?     the concurrency: not tested (a replay: its in-flight counts are "
                "the replaying client's, not the endpoint's)"
            )
            continue
        mi = f" [MI {result['mutual_information_bits']:.3f} bits]" if result else ""
        out.append("explains?     " + stats.association_verdict(name, result) + mi)
    first = r.get("first_call")
    if first and not first["modal"]:
        others = first["calls_with_its_value"] - 1
        out.append(
            f"first call    {fmt_pct(first['prob_pct'])}%, "
            + (
                "a value no later call returned (a server's first call can differ: it "
                "evaluates the whole prompt, later calls reuse its cache)"
                if others == 0
                else f"returned by {others:,} later call(s) too"
            )
        )
    t = r["top_token"]
    risk = t["risk"]
    line = (
        f"top token     {t['modal_token']!r} in {1 - t['share']:.2%} of calls, {t['flips']:,} flips"
    )
    if risk["min_gap_logprob"] is not None:
        line += (
            f"; closest top-2 gap {risk['min_gap_logprob']:.4f} nats vs top-1 range "
            f"{risk['top1_range_logprob']:.4f}"
        )
    out.append(line)
    d = r["decomposition"]
    if d["absolute_vectors"]:
        grid = d["logit_grid_step"]
        out.append(
            f"top-{d['full_top_k']} lists  {d['absolute_vectors']:,} distinct vectors, "
            f"{d['relative_signatures']:,} distinct relative-logit signatures; vs the modal list: "
            f"{d['responses_normaliser_only']:,} responses only the normaliser moved, "
            f"{d['responses_logits_moved']:,} the logits moved"
            + (f"; logit gaps on a {grid:g} grid" if grid else "; no logit grid")
        )
    s = r["spread"]
    if s:
        steps = s.get("range_float32_steps")
        out.append(
            f"spread        {fmt_pct(s['min_pct'])}% to {fmt_pct(s['max_pct'])}% "
            f"(range {s['range_pct']:.6f} pp, sd {s['std_pct']:.6f} pp; logprob sd "
            f"{s['std_logprob']:.3g}" + (f", {steps:,.0f} float32 steps" if steps else "") + ")"
        )
    if s and s.get("min_gap_float32_steps"):
        out.append(
            f"closest two   values differ by {s['min_gap_float32_steps']:,.0f} float32 steps "
            "at the modal value"
        )
    return out


def _decades(curve: list[dict]) -> set[int]:
    calls = [p["calls"] for p in curve]
    wanted = {10**k for k in range(0, 9)} | {calls[-1]} if calls else set()
    return {min(calls, key=lambda c: abs(c - w)) for w in wanted if w <= calls[-1]}


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
