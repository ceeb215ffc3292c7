"""An audit as text: one row per check (control, treatment, verdict, the numbers behind it) and
one line each of what it means for a user."""

from __future__ import annotations


def _arm(summary: dict | None) -> str:
    if not summary or not summary.get("n"):
        return ""
    share = summary.get("modal_share")
    modal = f", modal {share:.0%}" if share is not None else ""
    return f"{summary['n']} calls: {summary['distinct']} distinct{modal}"


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
    return "; ".join(parts)


def render(result: dict) -> str:
    from tabulate import tabulate

    rows = [
        [c["name"], _arm(c.get("control")), _arm(c.get("treatment")), c["verdict"], _numbers(c)]
        for c in result["checks"]
    ]
    table = tabulate(
        rows, headers=["check", "control", "treatment", "verdict", "numbers"], maxcolwidths=40
    )
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
    broken = [c["name"] for c in result["checks"] if c["verdict"] == "broken"]
    lines.append(f"broken: {', '.join(broken)}" if broken else "no check broken")
    lines.append(f"every arm is a run under {result['out']}")
    return "\n".join(lines)
