"""Comparing two distributions (baseline and candidate): what changed, and is it beyond chance.

Rare values come and go by chance (one in 10,000 seen in one sample, not the other), so single
values never count as drift by default. What counts: a cluster whose share moved (two-sided Fisher
exact test per cluster, Bonferroni-corrected over clusters), the cluster shares as a whole
(chi-square test of homogeneity, sparse clusters pooled), a modal value that moved (confirmed by a
two-proportion test), a fingerprint the baseline never saw, and top-token flips. Pure functions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from detcheck.analysis.values import cluster_ids, logprob_to_pct
from detcheck.spec import DEFAULT_THRESHOLD

FINDINGS = ("clusters", "shares", "modal", "fingerprints", "flips", "values")
DEFAULT_FAIL_ON = ("clusters", "shares", "modal", "fingerprints", "flips")
DEFAULT_ALPHA = 0.001  # nightly monitoring: a false alarm costs a person's morning


@dataclass
class Distribution:
    """What compare needs of a set of runs: distinct values with counts, fingerprints, flips."""

    logprob: np.ndarray  # distinct values, ascending
    count: np.ndarray
    fingerprints: dict[str, int]
    flips: int
    n: int

    @classmethod
    def from_report(cls, report: dict) -> Distribution:
        values = [v for c in report["clusters"] for v in c["values"]]
        return cls(
            np.array([v["logprob"] for v in values], dtype=float),
            np.array([v["count"] for v in values], dtype=np.int64),
            dict(report["fingerprints"]),
            int(report["top_token"]["flips"]),
            int(report["n"]),
        )


def _fisher_p(a: int, b: int, c: int, d: int) -> float:
    from scipy.stats import fisher_exact

    return float(fisher_exact([[a, b], [c, d]]).pvalue)


def _two_proportion_p(x1: int, n1: int, x2: int, n2: int) -> float:
    from scipy.special import ndtr

    if n1 == 0 or n2 == 0:
        return 1.0
    p = (x1 + x2) / (n1 + n2)
    se = math.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0 if x1 / n1 == x2 / n2 else 0.0
    z = abs(x1 / n1 - x2 / n2) / se
    return float(2 * ndtr(-z))


def compare(
    base: Distribution,
    cand: Distribution,
    thresholds_pct: Sequence[float] = (DEFAULT_THRESHOLD,),
    alpha: float = DEFAULT_ALPHA,
) -> dict:
    """Every finding between two distributions; the cluster findings at each threshold (the
    first is the report's main one)."""
    thresholds_pct = list(thresholds_pct) or [DEFAULT_THRESHOLD]
    pooled = np.union1d(base.logprob, cand.logprob)
    by_threshold, findings = {}, []
    for threshold in thresholds_pct:
        clusters, shares, found = _cluster_findings(pooled, base, cand, threshold, alpha)
        by_threshold[format(threshold, "g")] = {"clusters": clusters, "shares_test": shares}
        findings += found
    main = by_threshold[format(thresholds_pct[0], "g")]
    clusters, shares = main["clusters"], main["shares_test"]
    findings += _modal(base, cand, alpha)
    new_fps = sorted(set(cand.fingerprints) - set(base.fingerprints))
    gone_fps = sorted(set(base.fingerprints) - set(cand.fingerprints))
    for fp in new_fps:
        findings.append(
            {
                "kind": "fingerprints",
                "detail": f"new fingerprint {fp} on {cand.fingerprints[fp]:,} calls",
                "p_value": None,
            }
        )
    if (
        cand.flips
        and _two_proportion_p(base.flips, base.n, cand.flips, cand.n) < alpha
        or (cand.flips and not base.flips)
    ):
        findings.append(
            {
                "kind": "flips",
                "detail": f"top token changed in {cand.flips:,} of "
                f"{cand.n:,} calls (baseline {base.flips:,} of {base.n:,})",
                "p_value": None,
            }
        )
    appeared = np.setdiff1d(cand.logprob, base.logprob)
    vanished = np.setdiff1d(base.logprob, cand.logprob)
    if appeared.size or vanished.size:
        findings.append(
            {
                "kind": "values",
                "detail": f"{appeared.size} value(s) only in the "
                f"candidate, {vanished.size} only in the baseline (single values come "
                "and go by chance)",
                "p_value": None,
            }
        )
    return {
        "baseline_n": base.n,
        "candidate_n": cand.n,
        "threshold_pct": thresholds_pct[0],
        "alpha": alpha,
        "clusters": clusters,
        "shares_test": shares,
        "by_threshold": by_threshold,
        "new_fingerprints": new_fps,
        "vanished_fingerprints": gone_fps,
        "values_only_in_candidate": [float(x) for x in logprob_to_pct(appeared)],
        "values_only_in_baseline": [float(x) for x in logprob_to_pct(vanished)],
        "findings": findings,
    }


def _cluster_findings(pooled, base: Distribution, cand: Distribution, threshold_pct, alpha):
    """The clusters of the pooled values at one gap, each one's shares compared (Fisher,
    Bonferroni over the clusters), and the shares compared as a whole."""
    findings: list[dict] = []
    pooled_pct = logprob_to_pct(pooled)
    ids = cluster_ids(pooled_pct, threshold_pct)
    k = int(ids[-1]) + 1 if ids.size else 0
    b_counts = _counts_on(pooled, ids, k, base)
    c_counts = _counts_on(pooled, ids, k, cand)
    at = f" at {threshold_pct:g} pp"
    clusters = []
    for cid in range(k):
        members = pooled_pct[ids == cid]
        b, c = int(b_counts[cid]), int(c_counts[cid])
        p = _fisher_p(b, base.n - b, c, cand.n - c) if base.n and cand.n else 1.0
        p_adj = min(1.0, p * k)  # Bonferroni over the clusters
        row = {
            "min_pct": float(members[0]),
            "max_pct": float(members[-1]),
            "baseline": b,
            "candidate": c,
            "baseline_share": b / base.n if base.n else 0.0,
            "candidate_share": c / cand.n if cand.n else 0.0,
            "p_adjusted": p_adj,
        }
        clusters.append(row)
        if p_adj < alpha:
            what = "vanished" if c == 0 else "appeared" if b == 0 else "share moved"
            findings.append(
                {
                    "kind": "clusters",
                    "detail": f"cluster {members[0]:.6f}-{members[-1]:.6f}%{at} {what}: "
                    f"{row['baseline_share']:.2%} -> {row['candidate_share']:.2%} "
                    f"(p = {p_adj:.2g}, Bonferroni over {k})",
                    "p_value": p_adj,
                    "threshold_pct": threshold_pct,
                }
            )
    shares = _homogeneity(b_counts, c_counts)
    if shares and shares["p_value"] < alpha:
        findings.append(
            {
                "kind": "shares",
                "detail": f"cluster shares{at} differ as a whole "
                f"(chi2 = {shares['chi2']:.1f}, dof {shares['dof']}, "
                f"p = {shares['p_value']:.2g})",
                "p_value": shares["p_value"],
                "threshold_pct": threshold_pct,
            }
        )
    return clusters, shares, findings


def _counts_on(pooled: np.ndarray, ids: np.ndarray, k: int, d: Distribution) -> np.ndarray:
    where = np.searchsorted(pooled, d.logprob)
    return np.bincount(ids[where], weights=d.count, minlength=k).astype(np.int64)


def _homogeneity(b: np.ndarray, c: np.ndarray) -> dict | None:
    """Chi-square test that both samples share cluster proportions; clusters expected to hold
    fewer than 5 calls in either sample are pooled into one bin first."""
    from scipy.special import chdtrc

    nb, nc = b.sum(), c.sum()
    if nb == 0 or nc == 0:
        return None
    total = b + c
    small = (total * min(nb, nc) / (nb + nc)) < 5
    bins_b = np.append(b[~small], b[small].sum())
    bins_c = np.append(c[~small], c[small].sum())
    keep = (bins_b + bins_c) > 0
    table = np.vstack([bins_b[keep], bins_c[keep]]).astype(float)
    if table.shape[1] < 2:
        return None
    expected = table.sum(1, keepdims=True) @ table.sum(0, keepdims=True) / table.sum()
    chi2 = float(((table - expected) ** 2 / expected).sum())
    dof = table.shape[1] - 1
    return {"chi2": chi2, "dof": dof, "p_value": float(chdtrc(dof, chi2))}


def _modal(base: Distribution, cand: Distribution, alpha: float) -> list[dict]:
    if not base.count.size or not cand.count.size:
        return []
    b_modal = base.logprob[int(np.argmax(base.count))]
    c_modal = cand.logprob[int(np.argmax(cand.count))]
    if b_modal == c_modal:
        return []
    # confirmed only if the baseline's modal value lost share beyond chance
    b_in_cand = int(cand.count[cand.logprob == b_modal].sum())
    p = _two_proportion_p(int(base.count.max()), base.n, b_in_cand, cand.n)
    if p >= alpha:
        return []
    return [
        {
            "kind": "modal",
            "detail": f"modal value moved from {logprob_to_pct(b_modal):.10f}% "
            f"to {logprob_to_pct(c_modal):.10f}% (p = {p:.2g})",
            "p_value": p,
        }
    ]


def drift(result: dict, fail_on: tuple[str, ...]) -> list[dict]:
    return [f for f in result["findings"] if f["kind"] in fail_on]


def compare_completions(
    base: dict[tuple, int],
    cand: dict[tuple, int],
    base_fps: dict[str, int],
    cand_fps: dict[str, int],
    alpha: float = DEFAULT_ALPHA,
) -> dict:
    """Whole generations compared: each side as {completion (its tokens): count}. Findings:
    the modal completion changed, or its share moved beyond chance (two-proportion test;
    `modal`); completions the baseline never gave (`values`: single ones come and go); a new
    fingerprint (`fingerprints`)."""
    n_base, n_cand = sum(base.values()), sum(cand.values())
    findings: list[dict] = []
    modal = max(base, key=base.get) if base else None
    if modal is not None:
        kept = cand.get(modal, 0)
        p = _two_proportion_p(base[modal], n_base, kept, n_cand)
        cand_modal = max(cand, key=cand.get) if cand else None
        if cand_modal != modal or p < alpha:
            findings.append(
                {
                    "kind": "modal",
                    "detail": f"the baseline's most common completion came back in "
                    f"{base[modal] / n_base:.1%} of baseline calls, {kept / max(n_cand, 1):.1%} "
                    f"of candidate calls (p = {p:.2g})"
                    + ("; the candidate's most common is another" if cand_modal != modal else ""),
                    "p_value": p,
                }
            )
    new = {k: c for k, c in cand.items() if k not in base}
    if new:
        findings.append(
            {
                "kind": "values",
                "detail": f"{len(new)} completion(s) the baseline never gave, in "
                f"{sum(new.values()):,} of {n_cand:,} candidate calls",
                "p_value": None,
            }
        )
    for fp in sorted(set(cand_fps) - set(base_fps)):
        findings.append(
            {
                "kind": "fingerprints",
                "detail": f"new fingerprint {fp} on {cand_fps[fp]:,} calls",
                "p_value": None,
            }
        )
    return {
        "kind": "generate",
        "baseline_n": n_base,
        "candidate_n": n_cand,
        "alpha": alpha,
        "baseline_completions": len(base),
        "candidate_completions": len(cand),
        "baseline_modal_share": base[modal] / n_base if modal is not None else None,
        "candidate_modal_share": cand.get(modal, 0) / n_cand
        if modal is not None and n_cand
        else None,
        "findings": findings,
    }
