"""Statistics over per-response arrays: modal share, unseen variants, association, flips,
normaliser-versus-logits decomposition, spread. Pure functions; no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

# Logprobs come back as float32 widened to float64: differences between tokens carry ~1e-6 noise.
RELATIVE_TOLERANCE = 1e-4
GRID_CANDIDATES = tuple(2.0**-k for k in range(0, 11))  # 1, 0.5, ..., 1/1024


def import_scipy_in_background() -> None:
    """Start importing scipy.special on another thread. It takes ~0.35 s here (it rewrites its
    functions' docstrings at import), most of it holding the GIL only between numpy calls; the
    first use waits for it on the import lock. Callers start it where they have numpy work (or
    requests in flight) to overlap it with."""
    import importlib
    import sys
    import threading

    if "scipy.special" in sys.modules:  # a history of 1,000 runs asks 1,000 times
        return
    threading.Thread(target=importlib.import_module, args=("scipy.special",), daemon=True).start()


def wilson_ci95(successes: int, n: int) -> tuple[float, float]:
    """Wilson score interval (scipy.special for the quantile: scipy.stats costs ~0.8 s to import
    and the interval is this closed form)."""
    if n == 0:
        return (0.0, 1.0)
    from scipy.special import ndtri

    z = float(ndtri(0.975))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def modal(counts: np.ndarray) -> int:
    """Index of the most common value (the smallest index among ties)."""
    return int(np.argmax(counts))


def unseen(counts: np.ndarray) -> dict:
    """Good-Turing chance that the next call returns a never-seen value, and Chao1's estimate of
    how many distinct values exist (bias-corrected form when no value was seen twice)."""
    counts = np.asarray(counts)
    n = int(counts.sum())
    observed = int(counts.size)
    f1 = int((counts == 1).sum())
    f2 = int((counts == 2).sum())
    chao1 = observed + (f1 * f1 / (2 * f2) if f2 else f1 * (f1 - 1) / 2)
    return {
        "observed": observed,
        "singletons": f1,
        "doubletons": f2,
        "chao1": float(chao1),
        "p_new": f1 / n if n else 0.0,
    }


def chao1_ci95(counts: np.ndarray) -> tuple[float, float]:
    """The 95% interval of Chao1 (Chao 1987: its variance, and a log-normal interval for the
    unseen part, so the lower end is never below what was seen)."""
    counts = np.asarray(counts)
    observed = int(counts.size)
    f1 = int((counts == 1).sum())
    f2 = int((counts == 2).sum())
    chao1 = unseen(counts)["chao1"]
    unseen_part = chao1 - observed
    if unseen_part <= 0:
        return (float(observed), float(observed))
    if f2:
        r = f1 / f2
        variance = f2 * (r**4 / 4 + r**3 + r**2 / 2)
    else:
        variance = f1 * (f1 - 1) / 2 + f1 * (2 * f1 - 1) ** 2 / 4 - f1**4 / (4 * chao1)
    k = math.exp(1.96 * math.sqrt(math.log(1 + max(variance, 0.0) / unseen_part**2)))
    return (observed + unseen_part / k, observed + unseen_part * k)


def accumulation_curve(counts: np.ndarray) -> list[tuple[int, float]]:
    """Expected distinct values among the first m calls, averaged over every ordering of the
    calls (exact rarefaction: sum over values of 1 - C(n - c, m) / C(n, m))."""
    counts = np.asarray(counts, dtype=float)
    n = int(counts.sum())
    if n == 0:
        return []
    from scipy.special import gammaln

    # a 1-2-5 series up to n, and n itself
    series = [m * 10**k for k in range(0, 13) for m in (1, 2, 5) if m * 10**k < n]
    sizes = np.array(series + [n])
    curve = []
    for m in sizes:
        # log C(n-c, m) - log C(n, m); zero probability of missing a value once n - c < m
        with np.errstate(invalid="ignore"):
            log_miss = (
                gammaln(n - counts + 1)
                - gammaln(n - counts - m + 1)
                - gammaln(n + 1)
                + gammaln(n - m + 1)
            )
        miss = np.where(n - counts >= m, np.exp(log_miss), 0.0)
        curve.append((int(m), float((1 - miss).sum())))
    return curve


def _dense_codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes 0..k-1 for the categories present, and their counts. Small non-negative integers
    (cluster ids, fingerprint codes, time buckets, in-flight counts) are counted directly,
    without sorting or hashing 10^7 values."""
    values = np.asarray(values)
    if values.dtype.kind in "iu" and values.size and values.min() >= 0 and values.max() < 1 << 20:
        counts = np.bincount(values)
        used = np.flatnonzero(counts)
        if used.size == counts.size:
            return values, counts
        remap = np.zeros(counts.size, dtype=np.int64)
        remap[used] = np.arange(used.size)
        return remap[values], counts[used]
    from detcheck.analysis.values import unique_inverse

    _, codes, counts = unique_inverse(values)
    return codes, counts


def association(groups: np.ndarray, labels: np.ndarray) -> dict | None:
    """How much `labels` (fingerprint, time bucket, ...) tell about `groups` (clusters):
    chi-square test of independence on the contingency table and mutual information in bits.
    None when either side has a single category (nothing to test)."""
    g, g_counts = _dense_codes(groups)
    lab, lab_counts = _dense_codes(labels)
    if g_counts.size < 2 or lab_counts.size < 2:
        return None
    shape = (g_counts.size, lab_counts.size)
    table = np.bincount(g.astype(np.int64) * shape[1] + lab, minlength=shape[0] * shape[1]).reshape(
        shape
    )
    table = table.astype(float)
    from scipy.special import chdtrc  # chi-square survival function

    n = table.sum()
    expected = table.sum(1, keepdims=True) @ table.sum(0, keepdims=True) / n
    chi2 = float(((table - expected) ** 2 / expected).sum())
    dof = (table.shape[0] - 1) * (table.shape[1] - 1)
    joint = table / n
    outer = joint.sum(1, keepdims=True) @ joint.sum(0, keepdims=True)
    nz = joint > 0
    mi = float((joint[nz] * np.log2(joint[nz] / outer[nz])).sum())
    h_groups = float(-(p := joint.sum(1)[joint.sum(1) > 0]) @ np.log2(p))
    return {
        "chi2": chi2,
        "dof": int(dof),
        "p_value": float(chdtrc(dof, chi2)),
        "mutual_information_bits": mi,
        # share of the cluster entropy the labels account for (0 = none, 1 = all)
        "explained_share": mi / h_groups if h_groups > 0 else 0.0,
        "sparse_cells_share": float((expected < 5).mean()),
        "categories": int(table.shape[1]),
    }


def association_verdict(
    subject: str,
    result: dict | None,
    plural: bool = False,
    alpha: float = 0.01,
    small_share: float = 0.05,
    untested: str = "one value on a side, nothing to compare",
) -> str:
    """Plain words: not significant / significant but small / explains part; not tested
    (`untested` says why: one cluster, one fingerprint ...) when there was nothing to test."""
    if result is None:
        return f"{subject}: not tested ({untested})"
    p, share = result["p_value"], result["explained_share"]
    does, is_ = ("do", "are") if plural else ("does", "is")
    if p >= alpha:
        return f"{subject} {does} not explain the clusters (p = {p:.3g})"
    if share < small_share:
        return (
            f"{subject} {is_} linked to the clusters beyond chance (p = {p:.3g}) but "
            f"account{'' if plural else 's'} for only {share:.1%} of the cluster information"
        )
    return (
        f"{subject} explain{'' if plural else 's'} part of the clusters (p = {p:.3g}; "
        f"{share:.1%} of the cluster information)"
    )


def time_buckets(started_at_us: np.ndarray, buckets: int = 10) -> np.ndarray:
    """Buckets of request start time holding (about) equal numbers of calls."""
    if started_at_us.size == 0:
        return np.zeros(0, dtype=int)
    # edges from at most ~100,000 evenly strided calls: buckets stay about equal, and 10^7
    # start times need no partial sort
    sample = started_at_us[:: max(1, started_at_us.size // 100_000)]
    edges = np.quantile(sample, np.linspace(0, 1, buckets + 1)[1:-1])
    # the bucket is how many edges a start time reaches: one comparison pass per edge is ~8x
    # faster than a binary search per call; integer edges keep the comparisons in int64
    out = np.zeros(started_at_us.size, dtype=np.int32)
    for edge in np.ceil(edges).astype(np.int64).tolist():
        out += started_at_us >= edge
    return out


def top_token_flips(top_tokens: np.ndarray) -> dict:
    """How often the generated (top-1) token differed from the most common one."""
    from detcheck.analysis.values import unique_inverse

    codes, _, counts = unique_inverse(np.asarray(top_tokens))
    if counts.size == 0:
        return {"modal_code": None, "flips": 0, "share": 0.0}
    i = modal(counts)
    n = int(counts.sum())
    return {
        "modal_code": int(codes[i]),
        "flips": n - int(counts[i]),
        "share": (n - int(counts[i])) / n,
    }


def flip_risk(top1: np.ndarray, top2: np.ndarray) -> dict:
    """The closest the top two tokens came, against how far the top logprob moved."""
    ok = np.isfinite(top1) & np.isfinite(top2)
    if not ok.any():
        return {"min_gap_logprob": None, "top1_range_logprob": None, "gap_over_range": None}
    gap = float((top1[ok] - top2[ok]).min())
    spread = float(np.ptp(top1[ok]))
    return {
        "min_gap_logprob": gap,
        "top1_range_logprob": spread,
        "gap_over_range": gap / spread if spread > 0 else None,
    }


def spread(values: np.ndarray, counts: np.ndarray, modal_logprob: float | None) -> dict:
    """Range and spread of the target's logprob, from its distinct values (ascending) and their
    counts: the same figures as from every response, without a per-response array."""
    values = np.asarray(values, dtype=float)
    counts = np.asarray(counts, dtype=float)
    finite = np.isfinite(values)
    values, counts = values[finite], counts[finite]
    if values.size == 0:
        return {}
    pct = np.exp(values) * 100
    # float32 steps say nothing of a value past float32's range (-1e308 is usable, but extreme)
    in_range = modal_logprob is not None and abs(modal_logprob) <= np.finfo(np.float32).max
    ulp = abs(float(np.spacing(np.float32(modal_logprob)))) if in_range else None
    gaps = np.diff(values)

    def sd(x: np.ndarray) -> float:
        deviation = x - np.average(x, weights=counts)
        # scaled first: a -1e308 logprob is usable, and its square would overflow
        scale = float(np.max(np.abs(deviation)))
        if scale == 0.0:
            return 0.0
        return scale * float(np.sqrt(np.average((deviation / scale) ** 2, weights=counts)))

    return {
        "min_pct": float(pct[0]),
        "max_pct": float(pct[-1]),
        "range_pct": float(pct[-1] - pct[0]),
        "std_pct": sd(pct),
        "min_logprob": float(values[0]),
        "max_logprob": float(values[-1]),
        "std_logprob": sd(values),
        # in float32 steps at the modal value: the whole range, and the closest two values
        "range_float32_steps": _steps(values[-1] - values[0], ulp),
        "min_gap_float32_steps": _steps(gaps.min(), ulp) if gaps.size else None,
    }


def _steps(difference: float, ulp: float | None) -> float | None:
    """`difference` in float32 steps of `ulp`; None where that means nothing (no step, or more
    steps than a float holds: a -1e308 value beside ordinary ones)."""
    if not ulp:
        return None
    with np.errstate(over="ignore"):
        steps = float(difference / ulp)
    return steps if math.isfinite(steps) else None


def grid_step(differences: np.ndarray, tolerance: float = RELATIVE_TOLERANCE) -> float | None:
    """The coarsest step of which every difference is a multiple (within tolerance), if any.

    Only steps of at least 8 x tolerance count: a finer grid would fit any number."""
    d = np.asarray(differences, dtype=float)
    # gaps beyond 1e6 nats (a -1e308 sentinel) say nothing of a grid, and would overflow d/step
    d = d[np.isfinite(d) & (np.abs(d) > tolerance) & (np.abs(d) < 1e6)]
    if d.size == 0:
        return None
    for step in (s for s in GRID_CANDIDATES if s >= 8 * tolerance):
        if np.all(np.abs(d / step - np.round(d / step)) * step < tolerance):
            return step
    return None


def decompose(
    vectors: Sequence[Sequence[tuple[str, float]]],
    weights: Sequence[int],
    tolerance: float = RELATIVE_TOLERANCE,
) -> dict:
    """Split each distinct top-k vector's difference from the modal one into a common shift (same
    logits, different normaliser) and a change of the gaps between tokens (the logits moved).

    `vectors` are the distinct top-k lists, `weights` how many responses returned each.
    """
    full = max((len(v) for v in vectors), default=0)
    # Grouping within a tolerance depends on which vector is met first (a ~ b and b ~ c without
    # a ~ c), so meet them in an order of their own: most common first, then by content. The
    # order they arrive in (by hash) says nothing about the data.
    keep = sorted(
        (i for i, v in enumerate(vectors) if len(v) == full and full > 0),
        key=lambda i: (-weights[i], [(t, lp) for t, lp in vectors[i]]),
    )
    if not keep:
        return {"absolute_vectors": 0, "relative_signatures": 0, "logit_grid_step": None}
    # relative signature: tokens in order and their gaps to the top token; two signatures are
    # the same if every gap agrees within `tolerance` (the float32 noise, not a rounding grid)
    signatures: list[tuple[tuple[str, ...], np.ndarray]] = []
    relatives = []
    for i in keep:
        tokens = tuple(t for t, _ in vectors[i])
        gaps = np.array([lp for _, lp in vectors[i]]) - vectors[i][0][1]
        relatives.extend(gaps[1:])
        if not any(
            tokens == seen_tokens and np.max(np.abs(gaps - seen_gaps)) < tolerance
            for seen_tokens, seen_gaps in signatures
        ):
            signatures.append((tokens, gaps))
    ref = keep[0]  # the most common vector
    ref_map = dict(vectors[ref])
    same, normaliser_only, logits_moved = 0, 0, 0
    for i in keep:
        shared = [(lp, ref_map[t]) for t, lp in vectors[i] if t in ref_map]
        diffs = np.array([a - b for a, b in shared]) if shared else np.array([math.inf])
        if i == ref:
            same += weights[i]
        elif len(shared) == full and np.ptp(diffs) < tolerance:
            normaliser_only += weights[i]
        else:
            logits_moved += weights[i]
    return {
        "absolute_vectors": len(keep),
        "relative_signatures": len(signatures),
        "logit_grid_step": grid_step(np.array(relatives)),
        "responses_like_modal": same,
        "responses_normaliser_only": normaliser_only,
        "responses_logits_moved": logits_moved,
        "full_top_k": full,
    }
