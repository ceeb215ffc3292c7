"""`detcheck compare`: two sets of runs, the drift findings, the markdown for CI."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from detcheck.errors import UsageError

Log = Callable[[str], None]


def compare_command(baseline, candidate, thresholds, token, fail_on, alpha, markdown, warn):
    """(markdown text, JSON dict, drifted?) for two sets of runs."""
    from detcheck.compare import FINDINGS, Distribution, compare, drift, render_markdown
    from detcheck.report import build_report, run_target
    from detcheck.store import display_uri, read_runs

    kinds = tuple(k.strip() for k in fail_on.split(",") if k.strip())
    unknown = [k for k in kinds if k not in FINDINGS]
    if unknown:
        raise UsageError(f"--fail-on: unknown finding {unknown[0]!r} (from: {', '.join(FINDINGS)})")
    if not 0 < alpha < 1:
        raise UsageError(f"--alpha must be between 0 and 1, got {alpha}")
    base_runs = read_runs([baseline], warn=warn)
    cand_runs = read_runs([candidate], warn=warn)
    target = token or run_target(base_runs, None)[0]
    base = build_report(base_runs, thresholds, token=target)
    cand = build_report(cand_runs, thresholds, token=target)
    result = compare(
        Distribution.from_report(base), Distribution.from_report(cand), thresholds, alpha
    )
    failing = drift(result, kinds)
    text = render_markdown(result, kinds, (display_uri(baseline), display_uri(candidate)))
    summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
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
    return text, data, bool(failing)
