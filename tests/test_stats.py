"""Statistics with known answers: the published data and hand-checkable cases."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from conftest import SOURCE
from detcheck.analysis import stats


def published_counts():
    with open(SOURCE / "gpt-4o-2024-08-06-coinflip-10000.csv") as f:
        return np.array([int(r["count"]) for r in csv.DictReader(f)])


def test_unseen_on_published_data():
    u = stats.unseen(published_counts())
    assert (u["singletons"], u["doubletons"]) == (9, 1)
    assert u["chao1"] == 82.5
    assert u["p_new"] == 0.0009


def test_chao1_bias_corrected_when_no_doubletons():
    u = stats.unseen(np.array([1, 1, 1, 5]))
    assert u["doubletons"] == 0
    assert u["chao1"] == 4 + 3 * 2 / 2
    assert stats.unseen(np.array([7]))["chao1"] == 1 and stats.unseen(np.array([7]))["p_new"] == 0


def test_accumulation_curve_is_exact_rarefaction():
    # two values seen 1 and 3 times in 4 calls: after 1 call, 1 value; after 2 calls the chance
    # the singleton is among them is 1/2 -> 1.5 expected; all 4 calls -> 2
    curve = dict(stats.accumulation_curve(np.array([1, 3])))
    assert curve[1] == pytest.approx(1.0)
    assert curve[2] == pytest.approx(1.5)
    assert curve[4] == pytest.approx(2.0)


def test_accumulation_matches_random_orderings():
    counts = np.array([50, 20, 5, 1, 1, 3])
    calls = np.repeat(np.arange(counts.size), counts)
    rng = np.random.default_rng(0)
    m = 20
    simulated = np.mean([len(set(rng.permutation(calls)[:m])) for _ in range(4000)])
    assert dict(stats.accumulation_curve(counts))[m] == pytest.approx(simulated, abs=0.05)


def test_wilson_interval():
    lo, hi = stats.wilson_ci95(3391, 10000)
    assert lo < 0.3391 < hi
    assert (lo, hi) == pytest.approx((0.3299, 0.3484), abs=2e-4)
    assert stats.wilson_ci95(0, 0) == (0.0, 1.0)


def test_chi_square_matches_a_hand_computed_table():
    # table [[10, 20], [30, 40]]: chi2 = 0.7937, p = 0.3730 (dof 1, no continuity correction)
    groups = np.repeat([0, 0, 1, 1], [10, 20, 30, 40])
    labels = np.repeat([0, 1, 0, 1], [10, 20, 30, 40])
    result = stats.association(groups, labels)
    assert result["chi2"] == pytest.approx(0.7937, abs=1e-4)
    assert result["p_value"] == pytest.approx(0.3730, abs=1e-4)
    assert result["dof"] == 1


def test_association_independent_versus_determined():
    rng = np.random.default_rng(1)
    clusters = rng.integers(0, 3, 6000)
    independent = stats.association(clusters, rng.integers(0, 2, 6000))
    assert independent["p_value"] > 0.001
    assert independent["mutual_information_bits"] < 0.01
    determined = stats.association(clusters, clusters)  # the label is the cluster
    assert determined["p_value"] < 1e-100
    assert determined["explained_share"] == pytest.approx(1.0)
    assert determined["dof"] == 4
    assert stats.association(clusters, np.zeros(6000)) is None  # one label: nothing to test
    assert "does not explain" in stats.association_verdict("x", independent)
    assert "explains part" in stats.association_verdict("x", determined)
    untested = stats.association_verdict("x", None, untested="one cluster")
    assert untested == "x: not tested (one cluster)"


def test_top_token_flips_and_risk():
    flips = stats.top_token_flips(np.array([0, 0, 1, 0, 2]))
    assert flips == {"modal_code": 0, "flips": 2, "share": 0.4}
    risk = stats.flip_risk(np.array([-0.1, -0.2, np.nan]), np.array([-3.0, -2.0, -1.0]))
    assert risk["min_gap_logprob"] == pytest.approx(1.8)
    assert risk["top1_range_logprob"] == pytest.approx(0.1)


def test_spread_in_float32_steps():
    modal = -0.04
    step = abs(float(np.spacing(np.float32(modal))))
    values = np.array([modal, modal + 3 * step, modal + 10 * step])
    counts = np.array([5, 1, 2])
    s = stats.spread(values, counts, modal)
    assert s["range_float32_steps"] == pytest.approx(10)
    assert s["min_gap_float32_steps"] == pytest.approx(3)
    assert s["min_pct"] == pytest.approx(math.exp(modal) * 100)
    # from counts, the same spread as over every response
    every = np.repeat(values, counts)
    assert s["std_logprob"] == pytest.approx(every.std(), rel=1e-9)
    assert s["std_pct"] == pytest.approx((np.exp(every) * 100).std(), rel=1e-9)
    assert s["range_pct"] == pytest.approx(np.ptp(np.exp(every) * 100))


def published_top20():
    lists: dict[str, list] = {}
    with open(SOURCE / "top20-two-calls.csv") as f:
        for r in csv.DictReader(f):
            lists.setdefault(r["call"], []).append((r["token"], float(r["logprob"])))
    return lists["1"], lists["2"]


def test_published_top20_lists_sit_on_a_one_eighth_grid_and_differ_in_logits():
    a, b = published_top20()
    d = stats.decompose([a, b], [3, 1])
    assert d["logit_grid_step"] == 0.125
    assert d["absolute_vectors"] == 2
    assert d["relative_signatures"] == 2  # the T gap is -3.25 in one and -4.5 in the other
    assert d["responses_logits_moved"] == 1 and d["responses_like_modal"] == 3


def test_normaliser_only_shift_is_recognised():
    a, _ = published_top20()
    shifted = [(t, lp - 0.0123) for t, lp in a]  # same logits, different log-sum-exp
    d = stats.decompose([a, shifted], [5, 2])
    assert d["relative_signatures"] == 1
    assert d["responses_normaliser_only"] == 2 and d["responses_logits_moved"] == 0


def test_decomposition_does_not_depend_on_the_order_vectors_arrive_in():
    import itertools

    # gaps that chain within the tolerance: a ~ b and b ~ c, but a and c are too far apart
    step = 0.6 * stats.RELATIVE_TOLERANCE

    def top(shift: float) -> list[tuple[str, float]]:
        return [("Heads", -0.04), ("T", -3.29 + shift), ("Sure", -12.54)]

    a, b, c = top(0.0), top(step), top(2 * step)
    results = [
        stats.decompose([v for v, _ in order], [w for _, w in order])
        for order in itertools.permutations([(a, 2), (b, 5), (c, 1)])
    ]
    assert all(r == results[0] for r in results)
    # the most common list is met first: both neighbours are within tolerance of it
    assert results[0]["relative_signatures"] == 1
    assert results[0]["responses_like_modal"] == 5


def test_grid_step():
    assert stats.grid_step(np.array([-0.25, -3.5, -1.0])) == 0.25
    assert stats.grid_step(np.array([-1.0, -2.0])) == 1.0
    assert stats.grid_step(np.array([-0.3333])) is None
    assert stats.grid_step(np.array([])) is None
    # float32 noise on a 1/8 grid still reads as the grid
    assert stats.grid_step(np.array([-3.2500001043, -14.8750003427, -4.500000069])) == 0.125


def test_time_buckets_hold_about_equal_calls_and_agree_with_a_binary_search():
    rng = np.random.default_rng(3)
    # microsecond start times with bursts: many calls share a time, some at the edges
    started = np.sort(rng.integers(0, 50_000, 20_000) * 1_000 + 1_700_000_000_000_000)
    buckets = stats.time_buckets(started, buckets=10)
    sample = started[:: max(1, started.size // 100_000)]
    edges = np.quantile(sample, np.linspace(0, 1, 11)[1:-1])
    assert buckets.tolist() == np.searchsorted(edges, started, side="right").tolist()
    counts = np.bincount(buckets)
    assert counts.size == 10 and counts.min() > 0.8 * started.size / 10
    assert (np.diff(buckets) >= 0).all()  # later calls never in an earlier bucket
