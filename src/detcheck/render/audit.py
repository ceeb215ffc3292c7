"""An audit as text: one row per check (control, treatment, verdict, the numbers behind it) and
one line each of what it means for a user."""

from __future__ import annotations

import textwrap


def _arm(summary: dict | None) -> str:
    if not summary or not summary.get("n"):
        return ""
    share = summary.get("modal_share")
    modal = f", modal {share:.0%}" if share is not None else ""
    calls = "1 call" if summary["n"] == 1 else f"{summary['n']} calls"
    return f"{calls}: {summary['distinct']} distinct{modal}"


def _numbers(check: dict) -> str:
    if check["verdict"] == "not tested":
        return check.get("reason", "")
    parts = []
    if check.get("p_value") is not None:
        parts.append(f"p = {check['p_value']:.3g}")
    if check.get("effect_pp") is not None:
        parts.append(f"effect {check['effect_pp']:+.1f} pp")
    if check.get("new_values"):
        parts.append(f"{check['new_values']} calls with a value the control never gave")
    if check["name"] == "first_call" and check.get("first_value_share") is not None:
        parts.append(f"first value in {check['first_value_share']:.0%} of later calls")
    if check.get("note"):
        parts.append(check["note"])
    return "; ".join(parts)


def _backend(named: dict) -> str:
    return (
        f"fingerprint {named.get('system_fingerprint') or 'none'}, model "
        f"{named.get('model') or 'unnamed'}"
    )


def changed_lines(result: dict) -> list[str]:
    """What the audit says when the endpoint answered as more than one backend: each change
    (old and new, from which call), shown wherever the verdicts are."""
    changes = result.get("endpoint_changes")
    if not changes:
        return []
    lines = [
        f"warning: the endpoint changed during the audit ({len(changes['identities'])} "
        f"backends, {changes['switches']} change{'s' if changes['switches'] != 1 else ''}); "
        "each check is judged on the calls of one backend only:"
    ]
    for change in changes["changes"]:
        at = change["at"]
        where = f"arm {at['arm']}" + (f", round {at['round']}" if at["round"] else "")
        lines.append(
            f"  {_backend(change['from'])} -> {_backend(change['to'])} from call {at['call']} "
            f"of {where} ({at['at']})"
        )
    if changes["switches"] > len(changes["changes"]):
        lines.append(f"  ... and {changes['switches'] - len(changes['changes'])} more")
    return lines


def render(result: dict) -> str:
    """The audit for a terminal of 80 columns: the table's words wrap in their cells, the lines
    under it at word boundaries."""

    from detcheck.render.table import fit

    rows = [
        [c["name"], _arm(c.get("control")), _arm(c.get("treatment")), c["verdict"], _numbers(c)]
        for c in result["checks"]
    ]
    table = fit(rows, ["check", "control", "treatment", "verdict", "numbers"], wrap={1, 2, 4})
    lines = [
        f"audit of {result['model']} at {result['endpoint']}: {result['n']} calls per arm, "
        f"concurrency {result['concurrency']}, {result['rounds']} rounds",
        "",
        table,
        "",
    ]
    for c in result["checks"]:
        if c.get("meaning"):
            lines.append(f"{c['name']}: {c['meaning']}")
    drift = result.get("drift")
    if drift and drift["drifted"]:
        lines.append(
            f"warning: the control arm changed between the first and last rounds (p = "
            f"{drift['p_value']:.3g}): the endpoint drifted during the audit, so read every "
            "verdict with care"
        )
    for line in changed_lines(result):  # folded to a terminal's 80 columns
        lines.append(textwrap.fill(line, 80, subsequent_indent="    "))
    broken = [c["name"] for c in result["checks"] if c["verdict"] == "broken"]
    lines.append(f"broken: {', '.join(broken)}" if broken else "no check broken")
    lines.append(f"every arm is a run under {result['out']}")
    return "\n".join(
        line if line is table else textwrap.fill(line, 80, break_on_hyphens=False) or line
        for line in lines
    )


def html_page(result: dict, title: str | None = None) -> str:
    """The audit as one self-contained page: the verdicts table, what each means, the drift
    warning, the arms and their runs, and the JSON. Every text is escaped."""
    import json
    from html import escape

    from detcheck.render.html import page
    from detcheck.render.html_table import table

    heading = title or f"detcheck audit: {result['model']}"
    broken = [c["name"] for c in result["checks"] if c["verdict"] == "broken"]
    headline = f"broken: {', '.join(broken)}" if broken else "no check broken"
    drifted = bool(result.get("drift") and result["drift"]["drifted"])
    rows = [
        [c["name"], _arm(c.get("control")), _arm(c.get("treatment")), c["verdict"], _numbers(c)]
        for c in result["checks"]
    ]
    # on a phone each check is a card, its verdict on screen without scrolling sideways
    checks = table(["check", "control", "treatment", "verdict", "numbers"], rows,
                   cells_css={3: "verdict"})  # fmt: skip
    meanings = "".join(
        f"<li><b>{escape(c['name'])}</b>: {escape(c['meaning'])}</li>"
        for c in result["checks"]
        if c.get("meaning")
    )
    arms = "".join(
        f"<li><b>{escape(name)}</b>: {escape(arm['what'])} "
        f"({len(arm['runs'])} run{'s' if len(arm['runs']) != 1 else ''})</li>"
        for name, arm in result["arms"].items()
    )
    parts = [
        f"<h1>{escape(heading)}</h1>",
        f'<p class="headline{" drift" if broken else ""}">{escape(headline)}</p>',
        f"<p>{escape(result['endpoint'])}: {result['n']} calls per arm, concurrency "
        f"{result['concurrency']}, {result['rounds']} rounds, audit {escape(result['audit_id'])}"
        "</p>",
        f"<h2>Checks</h2>{checks}",
    ]
    parts.append(f'<h2>What it means</h2><ul class="lines">{meanings}</ul>')
    if drifted:
        parts.append(
            '<p class="headline drift">The control arm changed between the first and last '
            f"rounds (p = {result['drift']['p_value']:.3g}): the endpoint drifted during the "
            "audit, so read every verdict with care.</p>"
        )
    changed = changed_lines(result)
    if changed:
        said = changed[0].removeprefix("warning: ")
        items = "".join(f"<li>{escape(line.strip())}</li>" for line in changed[1:])
        parts.append(
            f'<p class="headline drift">{escape(said[0].upper() + said[1:])}</p>'
            f'<ul class="lines">{items}</ul>'
        )
    parts.append(f'<h2>Arms</h2><ul class="lines">{arms}</ul>')
    parts.append(
        "<h2>Raw data</h2><details><summary>The audit as JSON (what <code>--json</code> "
        f"prints)</summary><pre>{escape(json.dumps(result, indent=2))}</pre></details>"
    )
    return page(heading, "\n".join(parts))
