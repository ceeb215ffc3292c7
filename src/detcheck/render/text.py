"""The flip report as text: the headline, the table of distinct values by cluster, and the detail
lines (modal value, accumulation, what explains the variation, spread), folded to 80 columns.
It only formats what `detcheck.analysis.report` decided, so `--json` and the text agree."""

from __future__ import annotations

from detcheck.analysis import stats
from detcheck.analysis.report import untested
from detcheck.render.table import LABEL_WIDTH, wrap
from detcheck.text import count

__all__ = ["LABEL_WIDTH", "measured_line", "render_text", "wrap"]


def measured_line(r: dict) -> str | None:
    """'gpt-4o at https://api.openai.com/v1 on 2026-11-30, run <id>, n = 200'. A replay names
    the recording it replayed; a run detcheck did not measure says how it came to be (its
    provenance), next to the endpoint it names."""
    m = r.get("measured")
    if not m:
        return None
    first, last = (m["first_started_at"] or "")[:10], (m["last_started_at"] or "")[:10]
    when = f" on {first}" if first == last else f" from {first} to {last}"
    runs = m["run_ids"]
    which = f"run {runs[0]}" if len(runs) == 1 else f"{len(runs):,} runs"
    tier = " via the Batch API" if m.get("via") == ["batch"] else ""
    at = f"at {', '.join(m['endpoints']) or '?'}"
    if _replayed(m):
        at = f"from {', '.join(m['replayed_from'])}"
    if m.get("imported"):
        from detcheck.render.generations import named_files

        at = f"imported from {named_files(m['imported']['files'])}"
    source = "; ".join(provenance_phrases(m))
    return (
        f"{', '.join(m['models']) or 'unknown model'} {at}"
        + (f" ({source})" if source else "")
        + f"{tier}{when if first else ''}, {which}, n = {r['n']:,}"
    )


def measured_label(r: dict) -> str:
    """The label of the measured line: what kind of data this is."""
    m = r.get("measured") or {}
    if _replayed(m):
        return "replayed"
    return "source" if m.get("provenance") else "measured"


def _replayed(m: dict) -> bool:
    endpoints = m.get("endpoints") or []
    return bool(m.get("replayed_from")) and all(e.startswith("replay:") for e in endpoints)


def provenance_phrases(m: dict) -> list[str]:
    """Each run's provenance as a phrase (its first clause: run.json keeps the whole)."""
    return [p.split("; ")[0] for p in m.get("provenance") or []]


def _interval(unseen: dict) -> str:
    lo, hi = unseen.get("chao1_ci95") or (None, None)
    return f" (95% {lo:,.1f} to {hi:,.1f})" if lo is not None and hi != lo else ""


def fmt_pct(value: float) -> str:
    return f"{value:.10f}"


def render_text(report: dict) -> str:
    from tabulate import SEPARATING_LINE, tabulate

    if report.get("kind") == "generate":
        from detcheck.render.generations import render_text as render_generation

        return render_generation(report)

    from detcheck.text import printable

    lines = [report["headline"]]
    line = measured_line(report)
    if line:
        lines.append(f"{measured_label(report):<{LABEL_WIDTH}}{printable(line)}")
    from detcheck.render.generations import imported_lines

    lines += [printable(x) for x in imported_lines(report)]
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
    imported = (r.get("measured") or {}).get("imported")
    for name, key in (
        ("the fingerprint", "fingerprint_association"),
        ("the time of the call", "time_association"),
        ("the concurrency", "concurrency_association"),
    ):
        result = r[key]
        if imported and key != "fingerprint_association":  # no format carries the times
            out.append(f"explains?     {name}: not tested (imported data: timing unknown)")
            continue
        if key == "concurrency_association" and r.get("replayed"):
            out.append(
                "explains?     the concurrency: not tested (a replay: its in-flight counts are "
                "the replaying client's, not the endpoint's)"
            )
            continue
        mi = f" [MI {result['mutual_information_bits']:.3f} bits]" if result else ""
        why = untested(r, key)
        out.append("explains?     " + stats.association_verdict(name, result, untested=why) + mi)
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
            f"{count(d['responses_normaliser_only'], 'response')} only the normaliser moved, "
            f"{count(d['responses_logits_moved'], 'response')} the logits moved"
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
