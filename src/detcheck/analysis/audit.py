"""The audit's verdicts: each check compares a treatment arm with its control, both plain counts
of what came back (a first token's logprob, or a whole completion), so an endpoint that varies
in every arm is judged by whether the treatment varies *more*, not by whether it varies.

Pure functions: counts in, a verdict and the numbers behind it out."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence

ALPHA = 0.01  # the false-alarm rate of one check's verdict

HOLDS, BROKEN, NOT_TESTED = "holds", "broken", "not tested"


def arm_summary(values: Sequence[Hashable]) -> dict:
    """n, distinct values, and the modal value's share of one arm."""
    counts = Counter(values)
    if not counts:
        return {"n": 0, "distinct": 0, "modal_share": None}
    top = counts.most_common(1)[0][1]
    return {"n": len(values), "distinct": len(counts), "modal_share": top / len(values)}


def more_varied(control: Sequence[Hashable], treatment: Sequence[Hashable]) -> dict:
    """Does the treatment stray from the control's modal value more than the control does?
    Fisher's exact test, one-sided, on [[control at its mode, control elsewhere], [treatment at
    the control's mode, treatment elsewhere]]. The effect is the difference of the two shares
    away from that mode, in percentage points; `new_values` counts treatment calls whose value
    the control never gave."""
    from scipy.stats import fisher_exact

    mode, _ = Counter(control).most_common(1)[0]
    c_at = sum(1 for v in control if v == mode)
    t_at = sum(1 for v in treatment if v == mode)
    table = [[c_at, len(control) - c_at], [t_at, len(treatment) - t_at]]
    # treatment elsewhere more often: the odds c_at*t_else / (c_else*t_at) above 1
    p_value = float(fisher_exact(table, alternative="greater").pvalue)
    seen = set(control)
    return {
        "p_value": p_value,
        "effect_pp": 100 * (table[1][1] / len(treatment) - table[0][1] / len(control)),
        "new_values": sum(1 for v in treatment if v not in seen),
    }


def differs(name: str, control: Sequence, treatment: Sequence, alpha: float = ALPHA) -> dict:
    """A check broken when the treatment varies beyond the control's own variation."""
    out = {"name": name, "control": arm_summary(control), "treatment": arm_summary(treatment)}
    if not control or not treatment:
        return {**out, "verdict": NOT_TESTED, "reason": "an arm holds no usable response"}
    test = more_varied(control, treatment)
    verdict = BROKEN if test["p_value"] < alpha else HOLDS
    return {**out, **test, "verdict": verdict, "alpha": alpha}


def has_effect(
    name: str, fixed: Sequence, varied: Sequence, alpha: float = ALPHA, *, cannot_tell: str
) -> dict:
    """A check broken when a factor that should matter does not: `fixed` (one seed, or
    temperature 0) must be more concentrated on its mode than `varied` (a seed per call, or
    temperature 1). When `varied` itself gives one answer, nothing can be told (`cannot_tell`
    says why)."""
    out = {"name": name, "control": arm_summary(fixed), "treatment": arm_summary(varied)}
    if not fixed or not varied:
        return {**out, "verdict": NOT_TESTED, "reason": "an arm holds no usable response"}
    if len(set(varied)) == 1:
        return {**out, "verdict": NOT_TESTED, "reason": cannot_tell}
    test = more_varied(fixed, varied)
    verdict = HOLDS if test["p_value"] < alpha else BROKEN
    return {**out, **test, "verdict": verdict, "alpha": alpha}


# One call against n later ones can be no less likely than 1 / (n + 1) under exchangeability,
# so at 0.01 a first_call verdict would need 99 later calls: it has its own level
FIRST_CALL_ALPHA = 0.05


def first_call(
    first: Hashable | None, later: Sequence[Hashable], alpha: float = FIRST_CALL_ALPHA
) -> dict:
    """Is the first call's value one the later calls give? If not, how surprising that is if
    the first call were just one more like them (exchangeable): the share of the n + 1 calls
    whose value is seen once, (f1 + 1) / (n + 1), f1 counting the later values seen once. An
    endpoint that varies on every call makes a new first value unsurprising."""
    out = {"name": "first_call", "control": arm_summary([first] if first is not None else [])}
    out["treatment"] = arm_summary(later)
    if first is None or not later:
        return {**out, "verdict": NOT_TESTED, "reason": "no usable first or later response"}
    counts = Counter(later)
    if first in counts:
        share = counts[first] / len(later)
        return {**out, "verdict": HOLDS, "p_value": None, "first_value_share": share}
    singletons = sum(1 for c in counts.values() if c == 1)
    p_value = (singletons + 1) / (len(later) + 1)
    verdict = BROKEN if p_value < alpha else HOLDS
    return {**out, "verdict": verdict, "p_value": p_value, "first_value_share": 0.0, "alpha": alpha}


def drift(rounds: Sequence[Sequence[Hashable]], alpha: float = ALPHA) -> dict | None:
    """Did the control arm itself change between the audit's first and last rounds? Arms are
    interleaved round by round, so a drift shows here and not as an effect of one factor."""
    if len(rounds) < 2 or not rounds[0] or not rounds[-1]:
        return None
    test = more_varied(rounds[0], rounds[-1])
    reverse = more_varied(rounds[-1], rounds[0])
    p_value = min(1.0, 2 * min(test["p_value"], reverse["p_value"]))  # either way
    return {"p_value": p_value, "drifted": p_value < alpha}


def _fisher_greater(table) -> float:
    from scipy.stats import fisher_exact

    return float(fisher_exact(table, alternative="greater").pvalue)


def p_range(
    control: Sequence[Hashable], treatment: Sequence[Hashable], more_control: int,
    more_treatment: int,
) -> tuple[float, float]:  # fmt: skip
    """The least and the greatest p-value more_varied can give once each arm has had its
    remaining calls, whatever they return. For each value that may end as the control's mode,
    the extremes: every remaining control call on it and every remaining treatment call
    elsewhere (the least p), or the control only as much on it as keeps it the mode and every
    remaining treatment call on it (the greatest); the one-sided p only falls as a table moves
    toward [[more, fewer], [fewer, more]] (tests/test_audit.py checks that by enumeration)."""
    c, t = Counter(control), Counter(treatment)
    n_c, n_t = len(control), len(treatment)
    fresh = object()  # a value neither arm has given yet
    low, high = 1.0, 0.0
    for v in [*dict.fromkeys([*c, *t]), fresh]:
        c_v, t_v = c.get(v, 0), t.get(v, 0)
        rival = max((k for u, k in c.items() if u != v), default=0)
        if c_v + more_control >= rival and c_v + more_control > 0:
            at = c_v + more_control
            table = [[at, n_c - c_v], [t_v, n_t + more_treatment - t_v]]
            low = min(low, _fisher_greater(table))
        lift = max(0, rival - c_v)  # control calls it needs to be the mode
        if lift <= more_control and c_v + lift > 0:
            at = c_v + lift
            table = [[at, n_c + more_control - at], [t_v + more_treatment, n_t - t_v]]
            high = max(high, _fisher_greater(table))
    return low, high


def possible_verdicts(
    test: str, control: Sequence[Hashable], treatment: Sequence[Hashable], more_control: int,
    more_treatment: int, alpha: float = ALPHA,
) -> set[str]:  # fmt: skip
    """Every verdict a check could still end with after the arms' remaining calls (at most
    `more_*` each, whatever they return). One verdict: the check is settled, and its arms
    need not be sent on for it."""
    if not more_control and not more_treatment:
        return {verdict_of(test, control, treatment, alpha)["verdict"]}
    if test == "first_call":
        if control and control[0] in set(treatment):
            return {HOLDS}  # it is one of theirs, and stays so
        return {HOLDS, BROKEN}
    if not control or not treatment:
        return {HOLDS, BROKEN, NOT_TESTED}
    low, high = p_range(control, treatment, more_control, more_treatment)
    out = set()
    if low < alpha:
        out.add(BROKEN if test == "differs" else HOLDS)
    if high >= alpha:
        out.add(HOLDS if test == "differs" else BROKEN)
    if test == "concentrated" and len(set(treatment)) == 1:
        out.add(NOT_TESTED)  # the treatment may go on giving its one answer
    return out


def verdict_of(test: str, control, treatment, alpha: float = ALPHA, *, name: str = "",
               cannot_tell: str = "") -> dict:  # fmt: skip
    """The verdict of a check's test on its arms' values (the control first; first_call's
    control is the one first call, judged at its own FIRST_CALL_ALPHA, not `alpha`)."""
    if test == "first_call":
        return first_call(control[0] if control else None, treatment)
    if test == "concentrated":
        return has_effect(name, control, treatment, alpha, cannot_tell=cannot_tell)
    return differs(name, control, treatment, alpha)
