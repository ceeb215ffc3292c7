"""The audit's verdicts: each check compares a treatment arm with its control, both plain counts
of what came back (a first token's logprob, or a whole completion), so an endpoint that varies
in every arm is judged by whether the treatment's answers differ from the control's, not by
whether they vary.

Pure functions: counts in, a verdict and the numbers behind it out."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

ALPHA = 0.01  # the false-alarm rate of one check's verdict

HOLDS, BROKEN, NOT_TESTED = "holds", "broken", "not tested"


def arm_summary(values: Sequence[Hashable]) -> dict:
    """n, distinct values, and the modal value's share of one arm."""
    counts = Counter(values)
    if not counts:
        return {"n": 0, "distinct": 0, "modal_share": None}
    top = counts.most_common(1)[0][1]
    return {"n": len(values), "distinct": len(counts), "modal_share": top / len(values)}


def _at_mode(control: Sequence[Hashable], treatment: Sequence[Hashable]) -> list[list[int]]:
    """[[control at the mode, control elsewhere], [treatment at the mode, treatment elsewhere]]
    for the pooled arms' modal value (ties: the first given). Pooled, the mode depends on the
    data and not on which arm a call is in, so when both arms draw alike a test on this table
    keeps its level (the control's own mode favoured the control: 2.2% false alarms at 1% with
    four equally likely values)."""
    mode, _ = Counter([*control, *treatment]).most_common(1)[0]
    c_at = sum(1 for v in control if v == mode)
    t_at = sum(1 for v in treatment if v == mode)
    return [[c_at, len(control) - c_at], [t_at, len(treatment) - t_at]]


def _fisher(table, alternative: str) -> float:
    from scipy.stats import fisher_exact

    return float(fisher_exact(table, alternative=alternative).pvalue)


def _two_sided(table) -> float:
    """Either arm more at the mode: twice the smaller one-sided p (the drift test's too)."""
    return min(1.0, 2 * min(_fisher(table, "greater"), _fisher(table, "less")))


def _numbers(control: Sequence[Hashable], treatment: Sequence[Hashable], p_value: float) -> dict:
    """The p-value, the effect (the treatment's share away from the pooled mode minus the
    control's, in percentage points) and `new_values`: treatment calls whose value the control
    never gave."""
    table = _at_mode(control, treatment)
    seen = set(control)
    return {
        "p_value": p_value,
        "effect_pp": 100 * (table[1][1] / len(treatment) - table[0][1] / len(control)),
        "new_values": sum(1 for v in treatment if v not in seen),
    }


def differs(name: str, control: Sequence, treatment: Sequence, alpha: float = ALPHA) -> dict:
    """A check broken when the treatment's answers differ from the control's beyond the
    control's own variation: Fisher's exact test, two-sided, of the share at the pooled modal
    value (a treatment that always gives another value, or strays from the mode more often,
    or settles where the control wanders, all differ)."""
    out = {"name": name, "control": arm_summary(control), "treatment": arm_summary(treatment)}
    if not control or not treatment:
        return {**out, "verdict": NOT_TESTED, "reason": "an arm holds no usable response"}
    test = _numbers(control, treatment, _two_sided(_at_mode(control, treatment)))
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
    # one-sided: the varied arm strays from the mode more often than the fixed one
    test = _numbers(fixed, varied, _fisher(_at_mode(fixed, varied), "greater"))
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
    p_value = _two_sided(_at_mode(rounds[0], rounds[-1]))  # either way
    return {"p_value": p_value, "drifted": p_value < alpha}


def p_range(
    control: Sequence[Hashable], treatment: Sequence[Hashable], more_control: int,
    more_treatment: int, two_sided: bool = False,
) -> tuple[float, float]:  # fmt: skip
    """The least p-value a check's test can give once each arm has had its remaining calls,
    whatever they return, and a bound the greatest cannot pass (one-sided: the treatment
    strays more; `two_sided`: either arm). For each value that may end as the pooled mode, two
    corners: every remaining control call on it and the treatment's only as many as keep it
    the mode (A), or the reverse (B); calls not on it go to values never seen, which lift no
    rival. A one-sided p only falls as a table moves toward [[more, fewer], [fewer, more]], so
    its least is at A and its greatest at B (the other side's the reverse); the least of the
    two-sided p is then exact and its greatest bounded (tests/test_audit.py enumerates)."""
    c, t = Counter(control), Counter(treatment)
    pooled = c + t
    n_c, n_t = len(control), len(treatment)
    fresh = object()  # a value neither arm has given yet
    low = {"greater": 1.0, "less": 1.0}
    high_one = high_two = 0.0

    def table(at_c: int, at_t: int) -> list[list[int]]:
        return [[at_c, n_c + more_control - at_c], [at_t, n_t + more_treatment - at_t]]

    for v in [*dict.fromkeys([*c, *t]), fresh]:
        c_v, t_v = c.get(v, 0), t.get(v, 0)
        rival = max((k for u, k in pooled.items() if u != v), default=0)
        high = {"greater": 0.0, "less": 0.0}  # over the outcomes whose mode is v
        need = max(0, rival - (c_v + t_v + more_control))
        if need <= more_treatment and c_v + t_v + more_control + need > 0:
            a = table(c_v + more_control, t_v + need)
            low["greater"] = min(low["greater"], _fisher(a, "greater"))
            high["less"] = _fisher(a, "less")
        need = max(0, rival - (c_v + t_v + more_treatment))
        if need <= more_control and c_v + t_v + more_treatment + need > 0:
            b = table(c_v + need, t_v + more_treatment)
            high["greater"] = _fisher(b, "greater")
            low["less"] = min(low["less"], _fisher(b, "less"))
        high_one = max(high_one, high["greater"])
        high_two = max(high_two, min(1.0, 2 * min(high.values())))
    if not two_sided:
        return low["greater"], high_one
    return min(1.0, 2 * min(low.values())), high_two


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
    low, high = p_range(control, treatment, more_control, more_treatment, test == "differs")
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


@dataclass(frozen=True)
class Call:
    """One answered call of an arm: what it gave, who answered, and where it stands."""

    value: Hashable  # (first token, its logprob) of a flip arm; the text of a generate arm
    backend: tuple  # (system_fingerprint, the model the response named)
    started_us: int  # when it was sent (microseconds since the epoch)
    in_flight: int  # requests in flight when it was sent, background included
    arm: str
    round: int | None
    call: int


def _backend_name(backend: tuple) -> str:
    fingerprint, model = backend
    return f"fingerprint {fingerprint or 'none'}, model {model or 'unnamed'}"


def judged(
    control: Sequence[Call], treatment: Sequence[Call], *, shares: bool
) -> tuple[list, list, str | None, str | None]:
    """The values a check compares, and why it cannot (a reason) or how it was restricted (a
    note). A treatment about sharing a batch tells nothing unless most of its calls were sent
    beside another request.
    When the endpoint answered as more than one backend, both arms are restricted to the one
    backend they share most calls of: a change of backend is named, not read as the factor."""
    if shares:
        shared = sum(1 for c in treatment if c.in_flight >= 2)
        if 2 * shared < len(treatment):  # (the first call of a round starts alone)
            why = (
                f"only {shared} of the treatment's {len(treatment)} calls shared a batch (429s "
                "or the server cut the concurrency, or rounds of one call: raise --n)"
            )
            return [], [], why, None
    backends = list(dict.fromkeys(c.backend for c in [*control, *treatment]))  # first seen first
    note = None
    if len(backends) > 1:
        c_count = Counter(c.backend for c in control)
        t_count = Counter(c.backend for c in treatment)
        best = max(backends, key=lambda b: (min(c_count[b], t_count[b]), c_count[b] + t_count[b]))
        if not min(c_count[best], t_count[best]):
            shown = " / ".join(_backend_name(b) for b in backends)
            return [], [], f"the endpoint changed between this check's arms ({shown})", None
        control = [c for c in control if c.backend == best]
        treatment = [c for c in treatment if c.backend == best]
        note = f"judged on the calls answered as {_backend_name(best)} only"
    return [c.value for c in control], [c.value for c in treatment], None, note


LISTED_CHANGES = 10  # an endpoint that alternates between backends is summed up, not listed


def endpoint_changes(calls: Sequence[Call]) -> dict | None:
    """Whether the endpoint answered as more than one backend (system_fingerprint, or the model
    the response named) over the audit, in the order calls were sent: each backend with its
    calls and where it was first and last seen, and the changes from one to the next (the
    first LISTED_CHANGES of them). None when it stayed one backend."""
    ordered = sorted(calls, key=lambda c: (c.started_us, c.arm, c.call))
    if len({c.backend for c in ordered}) < 2:
        return None

    def named(backend: tuple) -> dict:
        return {"system_fingerprint": backend[0], "model": backend[1]}

    def where(c: Call) -> dict:
        from datetime import datetime, timezone

        at = datetime.fromtimestamp(c.started_us / 1e6, tz=timezone.utc).isoformat()
        return {"arm": c.arm, "round": c.round, "call": c.call, "at": at}

    seen: dict[tuple, dict] = {}
    changes = []
    for before, c in zip([None, *ordered], ordered):
        entry = seen.setdefault(c.backend, {**named(c.backend), "calls": 0, "first": where(c)})
        entry["calls"] += 1
        entry["last"] = where(c)
        if before is not None and before.backend != c.backend:
            changes.append({"from": named(before.backend), "to": named(c.backend), "at": where(c)})
    return {
        "identities": list(seen.values()),
        "changes": changes[:LISTED_CHANGES],
        "switches": len(changes),
    }
