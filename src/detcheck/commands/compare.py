"""`detcheck compare`: two sets of runs, the drift findings, the markdown for CI."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from detcheck.errors import UsageError

Log = Callable[[str], None]


def compare_command(
    baseline,
    candidate,
    *,
    thresholds,
    token=None,
    fail_on,
    alpha,
    markdown=None,
    warn,
    allow_setup_change=False,
    step_summary=True,
    html=None,
):
    """(markdown text, JSON dict, drifted?) for two sets of runs."""
    from detcheck.analysis.drift import FINDINGS, Distribution, compare
    from detcheck.analysis.report import build_report
    from detcheck.analysis.runs import require_one_setup, run_target
    from detcheck.render.markdown import render_markdown
    from detcheck.store import display_uri, read_runs

    kinds = tuple(k.strip() for k in fail_on.split(",") if k.strip())
    unknown = [k for k in kinds if k not in FINDINGS]
    if unknown:
        raise UsageError(f"--fail-on: unknown finding {unknown[0]!r} (from: {', '.join(FINDINGS)})")
    if not 0 < alpha < 1:
        raise UsageError(f"--alpha must be between 0 and 1, got {alpha}")
    base_runs = read_runs([baseline], warn=warn)
    cand_runs = read_runs([candidate], warn=warn)
    names = (display_uri(baseline), display_uri(candidate))
    if not allow_setup_change:  # a different prompt is not "no drift": it is another question
        require_one_setup(
            base_runs + cand_runs, "--allow-setup-change", "the baseline and candidate"
        )
    if all((r.meta.get("config") or {}).get("kind") == "generate" for r in base_runs + cand_runs):
        result, text = _compare_generations(base_runs, cand_runs, alpha, kinds, names)
        return _finish(
            result, text, kinds, markdown, None, step_summary=step_summary, html=html, names=names
        )
    target = token or run_target(base_runs, None)[0]
    base = build_report(base_runs, thresholds, token=target)
    cand = build_report(cand_runs, thresholds, token=target)
    result = compare(
        Distribution.from_report(base), Distribution.from_report(cand), thresholds, alpha
    )
    text = render_markdown(result, kinds, names)
    return _finish(
        result, text, kinds, markdown, target, step_summary=step_summary, html=html, names=names
    )


def _compare_generations(base_runs, cand_runs, alpha, kinds, names):
    from detcheck.analysis.drift import compare_completions
    from detcheck.analysis.generation_arrays import read_generations
    from detcheck.analysis.generations import completion_counts
    from detcheck.render.markdown import render_completions_markdown

    base, cand = read_generations(base_runs), read_generations(cand_runs)
    result = compare_completions(
        completion_counts(base),
        completion_counts(cand),
        Counter(f or "null" for f in base.fingerprints),
        Counter(f or "null" for f in cand.fingerprints),
        alpha,
    )
    return result, render_completions_markdown(result, kinds, names)


def _finish(result, text, kinds, markdown, target, *, step_summary=True, html=None, names=("", "")):
    from detcheck.analysis.drift import drift
    from detcheck.render.markdown import plain_text

    failing = drift(result, kinds)
    summary_file = os.environ.get("GITHUB_STEP_SUMMARY") if step_summary else None
    if summary_file:
        with open(summary_file, "a", encoding="utf-8") as f:
            f.write(text + "\n")
    if markdown:
        Path(markdown).write_text(text, encoding="utf-8")
    data = {
        **result,
        "target": target,
        "fail_on": list(kinds),
        "drift": bool(failing),
        "failing_findings": failing,
    }
    if html:
        from detcheck.commands.report import write_compare_page

        write_compare_page(text, data, Path(html), names)
    return plain_text(text), data, bool(failing)
