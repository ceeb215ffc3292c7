"""Is the candidate the reference's model? Each prompt's answers (the first token's top logprobs)
from both sides, judged against the reference's own variation: the spread of its answers alone
and batched is what a change must exceed before it is called a difference, so batching noise is
never read as another model.

The numbers, per prompt: the anchors (the top ANCHORS tokens of the reference's most common
answer); an answer's vector (its logprob of each anchor; an anchor it does not list counts as
the least it lists, which bounds it); the distance of two answers (the mean absolute difference
of their vectors, in nats); the reference's spread (the largest distance between two of its
answers); how far the candidate moved (each candidate answer's distance to the nearest reference
answer: the largest, and the median).

The verdict: `identical` when every candidate answer is one the reference gave (bit for bit);
`differs` when more prompts moved beyond the reference's own variation than the reference does
against itself (its answers split in two halves, each judged against the other), by a one-sided
Fisher exact test at the level given; `consistent` otherwise. Pure functions: answers in, numbers
out."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median

ANCHORS = 5  # top tokens of the reference's answer whose logprobs are compared
ALPHA = 0.01  # the chance of `differs` for a candidate that is the reference's model
IDENTICAL, CONSISTENT, DIFFERS = "identical", "consistent", "differs"
# below this share of the candidate's top tokens that the reference lists too, the candidate
# speaks another vocabulary: another model family (seen here: a quantized copy shares >90%)
SAME_VOCABULARY = 0.5


@dataclass(frozen=True)
class Answer:
    """One answered call: the first token's top logprobs, ranked, as the endpoint gave them."""

    top: tuple[tuple[str, float], ...]
    condition: str = ""  # how it was measured: "alone" or "batched"
    order: int = 0  # its place among its side's answers to the prompt (rounds, then calls)
    ids: tuple[int, ...] | None = None  # the tokens' ids, where the endpoint gives them


def _modal(answers: Sequence[Answer]) -> Answer:
    counts = Counter(a.top for a in answers)
    top = counts.most_common(1)[0][0]
    return next(a for a in answers if a.top == top)


def anchors_of(reference: Sequence[Answer]) -> tuple[str, ...]:
    return tuple(token for token, _ in _modal(reference).top[:ANCHORS])


def vector(answer: Answer, anchors: Sequence[str]) -> tuple[float, ...]:
    listed = dict(answer.top)
    least = min(listed.values()) if listed else 0.0
    return tuple(listed.get(token, least) for token in anchors)


def distance(a: Sequence[float], b: Sequence[float]) -> float:
    """Mean absolute difference of two answers' anchor logprobs, in nats."""
    return sum(abs(x - y) for x, y in zip(a, b)) / len(a) if a else 0.0


def spread(vectors: Sequence[Sequence[float]]) -> float:
    """The largest distance between two of the answers (0 for one distinct answer)."""
    distinct = list(dict.fromkeys(map(tuple, vectors)))
    return max(
        (distance(a, b) for i, a in enumerate(distinct) for b in distinct[i + 1 :]), default=0.0
    )


def nearest(candidate: Sequence[Sequence[float]], reference: Sequence[Sequence[float]]):
    """Each candidate answer's distance to the nearest reference answer."""
    known = list(dict.fromkeys(map(tuple, reference)))
    return [min(distance(c, r) for r in known) for c in candidate]


def _common_k(*sides: Sequence[Answer]) -> int:
    return min(len(a.top) for side in sides for a in side)


def compare_prompt(reference: Sequence[Answer], candidate: Sequence[Answer]) -> dict:
    """One prompt's numbers: the reference's spread, how far the candidate moved, whether its
    answers are the reference's own, whether the top token agrees, the vocabulary shared."""
    k = _common_k(reference, candidate)
    # the anchors both sides list: a provider that caps top_logprobs at 3 is compared on the
    # reference's top 3 (a token it does not list would count as its least listed logprob,
    # and move every prompt)
    anchors = anchors_of(reference)[:k]
    ref = [vector(a, anchors) for a in reference]
    cand = [vector(a, anchors) for a in candidate]
    gaps = nearest(cand, ref)
    known = {a.top[:k] for a in reference}
    listed = {token for a in reference for token, _ in a.top}
    theirs = [token for token, _ in _modal(candidate).top]
    return {
        "anchors": list(anchors),
        "spread_nats": spread(ref),
        "moved_nats": max(gaps),
        "distance_nats": median(gaps),
        "identical": all(a.top[:k] in known for a in candidate),
        "new_answers": sum(1 for a in candidate if a.top[:k] not in known),
        "top_token": {
            "reference": anchors[0] if anchors else None,
            "candidate": theirs[0] if theirs else None,
        },  # fmt: skip
        "vocabulary_shared": sum(1 for t in theirs if t in listed) / len(theirs) if theirs else 1.0,
        "reference_answers": len(reference),
        "candidate_answers": len(candidate),
    }


def _allowances(spreads: Sequence[float]) -> list[float]:
    """What a prompt may move before it counts as moved: the reference's own spread there, or
    its typical spread over every prompt if larger (an engine that varies by 1e-4 on most
    prompts may do so on one where a few calls happened to agree)."""
    typical = median(spreads) if spreads else 0.0
    return [max(s, typical) for s in spreads]


def moved_count(reference: dict, candidate: dict) -> int:
    """Prompts whose candidate answers moved beyond the reference's own variation."""
    per = [compare_prompt(reference[p], candidate[p]) for p in reference if p in candidate]
    allowed = _allowances([x["spread_nats"] for x in per])
    return sum(1 for x, a in zip(per, allowed) if x["moved_nats"] > a)


def self_moved(reference: dict) -> int:
    """The same count for the reference against itself: each prompt's answers split in two
    halves (alternating in order, so each holds alone and batched answers), each half judged
    against the other; the larger count (half the answers make the spread smaller, so this
    errs toward seeing the reference move: the test is conservative)."""
    halves = [{}, {}]
    for prompt, answers in reference.items():
        ordered = sorted(answers, key=lambda a: (a.order, a.condition))
        for h in (0, 1):
            part = ordered[h::2]
            if part:
                halves[h][prompt] = part
    both = [p for p in halves[0] if p in halves[1]]
    a = {p: halves[0][p] for p in both}
    b = {p: halves[1][p] for p in both}
    return max(moved_count(a, b), moved_count(b, a)) if both else 0


def fisher_greater(moved: int, self_count: int, prompts: int) -> float:
    from scipy.stats import fisher_exact

    table = [[moved, prompts - moved], [self_count, prompts - self_count]]
    return float(fisher_exact(table, alternative="greater").pvalue)


def least_to_tell(self_count: int, prompts: int, alpha: float) -> int | None:
    """The fewest moved prompts that the test calls a difference (None: not even all)."""
    for k in range(prompts + 1):
        if fisher_greater(k, self_count, prompts) < alpha:
            return k
    return None


def vocabulary(reference: dict, candidate: dict) -> dict:
    """Whether the two sides speak the same vocabulary: token ids where both give them (the
    same text as another id: another tokenizer), else the share of the candidate's top tokens
    the reference lists for the same prompt."""
    ids: dict[str, set] = {}
    for side, answers_by_prompt in (("reference", reference), ("candidate", candidate)):
        for answers in answers_by_prompt.values():
            for a in answers:
                if a.ids is not None:
                    for (token, _), i in zip(a.top, a.ids):
                        ids.setdefault(token, set()).add((side, i))
    # a text both sides give under ids that never coincide (one vocabulary may hold a text
    # twice: byte pieces that decode alike)
    clash = [t for t, seen in ids.items()
             if not {i for s, i in seen if s == "reference"}
             & {i for s, i in seen if s == "candidate"}
             and {s for s, _ in seen} == {"reference", "candidate"}]  # fmt: skip
    shares = [compare_prompt(reference[p], candidate[p])["vocabulary_shared"]
              for p in reference if p in candidate]  # fmt: skip
    shared = sum(shares) / len(shares) if shares else 1.0
    other = bool(clash) or shared < SAME_VOCABULARY
    if clash:
        why = (f"the same token text has other ids on the two sides ({len(clash)} tokens, e.g. "
               f"{clash[0]!r}): another tokenizer")  # fmt: skip
    elif other:
        why = (f"only {shared:.0%} of the candidate's top tokens are ones the reference lists "
               "for the same prompt: another vocabulary")  # fmt: skip
    else:
        why = None
    return {"shared": shared, "id_clashes": len(clash), "other_family": other, "why": why}


def verdict(reference: dict, candidate: dict, alpha: float = ALPHA) -> dict:
    """The verification's verdict and every number behind it. `reference` and `candidate` map a
    prompt id to its answers; prompts one side lacks are left out (and counted)."""
    prompts = [p for p in reference if p in candidate and reference[p] and candidate[p]]
    ref = {p: reference[p] for p in prompts}
    cand = {p: candidate[p] for p in prompts}
    per = {p: compare_prompt(ref[p], cand[p]) for p in prompts}
    allowed = dict(zip(prompts, _allowances([per[p]["spread_nats"] for p in prompts])))
    for p in prompts:
        per[p]["allowance_nats"] = allowed[p]
        per[p]["moved"] = per[p]["moved_nats"] > allowed[p]
    moved = sum(1 for p in prompts if per[p]["moved"])
    own = self_moved(ref)
    total = len(prompts)
    p_value = fisher_greater(moved, own, total) if total else 1.0
    need = least_to_tell(own, total, alpha) if total else None
    floors = sorted(allowed.values())
    family = vocabulary(ref, cand)
    if p_value < alpha or family["other_family"]:  # another tokenizer is another model
        verdict_ = DIFFERS
    elif all(per[p]["identical"] for p in prompts):
        verdict_ = IDENTICAL
    else:
        verdict_ = CONSISTENT
    spreads = [per[p]["spread_nats"] for p in prompts]
    distances = [per[p]["distance_nats"] for p in prompts]
    noise = median(spreads) if spreads else 0.0
    distance_ = median(distances) if distances else 0.0
    agree = sum(1 for p in prompts if per[p]["top_token"]["reference"]
                == per[p]["top_token"]["candidate"])  # fmt: skip
    ranked = sorted(prompts, key=lambda p: per[p]["distance_nats"], reverse=True)
    return {
        "verdict": verdict_,
        "alpha": alpha,
        "p_value": p_value,
        "prompts": total,
        # prompts one side has no usable answer to: not compared
        "left_out": sorted((set(reference) | set(candidate)) - set(prompts)),
        "moved_prompts": moved,
        "reference_moved_against_itself": own,
        "distance_nats": distance_,
        "reference_spread_nats": noise,
        # the distance as a multiple of the reference's own variation (None: it never varied)
        "distance_x_spread": distance_ / noise if noise else None,
        "top_token_agrees": agree / total if total else None,
        "most_moved": ranked[:5],
        # the least distance that, on every prompt, this measurement tells from the noise
        "floor_nats": floors[need - 1] if need else None,
        "floor_prompts": need,
        "vocabulary": family,
        "per_prompt": per,
    }
