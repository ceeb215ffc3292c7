"""The pure analysis functions, on the published data and on cases with known answers."""

from __future__ import annotations

import csv
import math

import numpy as np
import pyarrow as pa
import pytest

from conftest import SOURCE, target_logprobs
from detcheck.analysis.features import Codebook, extract, flatten, vector_hashes
from detcheck.analysis.values import (
    cluster_ids,
    clusters_of,
    count_clusters,
    distinct_coded,
    distinct_values,
)
from detcheck.store.schema import TOP_LOGPROB


def dv(logprobs, fps):
    """distinct_values over fingerprint names (None = missing)."""
    book = Codebook()
    codes = book.encode(pa.array(fps, pa.string()))
    return distinct_values(np.asarray(logprobs, dtype=float), codes, book.names)[0]


def published():
    """Every call of the publication as (logprob, fingerprint), the count split arbitrarily."""
    logprobs, fps = [], []
    with open(SOURCE / "gpt-4o-2024-08-06-coinflip-10000.csv") as f:
        for row in csv.DictReader(f):
            lp = math.log(float(row["heads_probability_pct"]) / 100)
            listed = row["fingerprints"].split()
            for k in range(int(row["count"])):
                logprobs.append(lp)
                fps.append(listed[k % len(listed)])
    return np.array(logprobs), fps


def test_published_data_gives_published_figures():
    logprobs, fps = published()
    d = dv(logprobs, fps)
    assert len(d) == 42
    assert int(d.count.sum()) == 10_000
    assert [count_clusters(d.prob_pct, t) for t in (0.01, 0.001, 0.0001)] == [12, 13, 17]
    assert d.prob_pct[0] == pytest.approx(85.1854379113, abs=1e-9)
    assert d.prob_pct[-1] == pytest.approx(98.9008786933, abs=1e-9)


def test_gap_equal_to_threshold_does_not_split():
    # strictly greater starts a new cluster
    values = np.array([1.0, 1.5, 2.0, 2.75])
    assert cluster_ids(values, 0.5).tolist() == [0, 0, 0, 1]
    assert count_clusters(values, 0.49) == 4
    assert count_clusters(values, 0.75) == 1


def test_bit_identical_floats_only_are_the_same_value():
    a = 0.1 + 0.2  # 0.30000000000000004
    d = dv(np.log([a, 0.3, a]), ["x", "x", "x"])
    assert len(d) == 2
    assert sorted(d.count.tolist()) == [1, 2]


def test_one_value_only():
    d = dv(np.full(5, -0.5), ["fp"] * 5)
    assert len(d) == 1
    clusters = clusters_of(d, 0.01)
    assert len(clusters) == 1 and clusters[0]["count"] == 5
    assert clusters[0]["min_pct"] == clusters[0]["max_pct"]


def test_all_distinct_and_null_fingerprint():
    lp = np.log(np.linspace(0.5, 0.9, 7))
    d = dv(lp, [None, "a", None, "a", "b", None, "a"])
    assert len(d) == 7 and d.count.tolist() == [1] * 7
    assert d.fingerprints[0] == {"null": 1}


def test_empty_input():
    d = dv(np.array([]), [])
    assert len(d) == 0
    assert clusters_of(d, 0.01) == []
    assert count_clusters(d.prob_pct, 0.01) == 0


def test_per_value_fingerprint_counts_add_up():
    d = dv(np.array([-1.0, -1.0, -2.0, -1.0]), ["a", "b", "a", "a"])
    assert d.logprob.tolist() == [-2.0, -1.0]
    assert d.fingerprints == [{"a": 1}, {"a": 2, "b": 1}]


def _tops(rows):
    return pa.array(rows, pa.list_(TOP_LOGPROB))


def test_target_logprobs_missing_and_duplicate_tokens():
    tops = _tops(
        [
            [{"token": "Heads", "logprob": -0.1, "bytes": None}, {"token": "T", "logprob": -2.0}],
            [{"token": "T", "logprob": -0.2}],  # no Heads
            [],
            None,
            # the same text twice (collisions on some servers): the first counts
            [{"token": "Heads", "logprob": -0.3}, {"token": "Heads", "logprob": -5.0}],
        ]
    )
    out = target_logprobs(tops, "Heads")
    assert out[0] == -0.1 and out[4] == -0.3
    assert np.isnan(out[1:4]).all()
    assert target_logprobs(tops, "T")[1] == -0.2


def test_target_is_exact_text_match():
    tops = _tops([[{"token": " Heads", "logprob": -0.1}, {"token": "heads", "logprob": -0.2}]])
    assert np.isnan(target_logprobs(tops, "Heads")[0])


def test_target_logprobs_on_chunked_array():
    tops = pa.chunked_array([_tops([[{"token": "a", "logprob": -1.0}]]), _tops([[]])])
    out = target_logprobs(tops, "a")
    assert out[0] == -1.0 and np.isnan(out[1])


def test_label_mass_sums_prefix_tokens():
    tops = _tops(
        [
            [
                {"token": "Heads", "logprob": math.log(0.5)},
                {"token": " Head", "logprob": math.log(0.2)},
                {"token": "He", "logprob": math.log(0.1)},
                {"token": "heads", "logprob": math.log(0.05)},  # case differs: not a prefix
                {"token": "T", "logprob": math.log(0.15)},
            ],
            [{"token": "T", "logprob": -0.1}],
        ]
    )
    out = target_logprobs(tops, "Heads", label_mass="Heads")
    assert out[0] == pytest.approx(math.log(0.8))
    assert np.isnan(out[1])


def test_vector_hash_tells_lists_apart_by_token_value_and_order():
    a = [{"token": "x", "logprob": -1.0}, {"token": "y", "logprob": -2.0}]
    b = [{"token": "x", "logprob": -1.0}, {"token": "y", "logprob": -2.0000000001}]
    c = [{"token": "y", "logprob": -2.0}, {"token": "x", "logprob": -1.0}]
    d = [{"token": "z", "logprob": -1.0}, {"token": "y", "logprob": -2.0}]
    book = Codebook()
    hashes = vector_hashes(flatten(_tops([a, b, c, d, a, []]), book), 6)
    assert len(set(hashes[:4].tolist())) == 4
    assert hashes[0] == hashes[4]
    assert hashes[5] == 0  # an empty list
    # a sliced array (offsets not starting at 0, as in batches) hashes the same list the same
    sliced = _tops([b, a]).slice(1)
    assert vector_hashes(flatten(sliced, book), 1)[0] == hashes[0]


def test_coded_values_give_the_same_distinct_values_as_floats():
    rng = np.random.default_rng(7)
    pool = np.log([0.9, 0.8, 0.1 + 0.2, 0.3, 1.0]).tolist() + [-0.0]  # log(1) = 0.0 vs -0.0
    logprobs = np.array(pool)[rng.integers(0, len(pool), 500)]
    book = Codebook()
    fps = book.encode(pa.array(rng.choice(["a", "b", None], 500).tolist(), pa.string()))
    # the table in another order, with an entry no response holds
    table = np.array(pool[::-1] + [-7.0])
    position = {v.view(np.int64).item(): i for i, v in enumerate(table)}
    codes = np.array([position[v.view(np.int64).item()] for v in logprobs])
    expected, expected_inverse = distinct_values(logprobs, fps, book.names)
    got, inverse = distinct_coded(codes, table, fps, book.names)
    assert got.logprob.view(np.int64).tolist() == expected.logprob.view(np.int64).tolist()
    assert got.count.tolist() == expected.count.tolist()
    assert got.fingerprints == expected.fingerprints
    assert inverse.tolist() == expected_inverse.tolist()
    assert len(got) == 6  # 0.0 and -0.0 are two values (bit-identical only); -7.0 is none
    assert got.logprob[inverse].view(np.int64).tolist() == logprobs.view(np.int64).tolist()


def _batch(tops):
    n = len(tops)
    return pa.RecordBatch.from_pydict(
        {
            "ok": [True] * n,
            "error_type": pa.array([None] * n, pa.string()),
            "system_fingerprint": ["fp"] * n,
            "token": ["Heads"] * n,
            "top_logprobs": _tops(tops),
            "started_at": pa.array(range(n), pa.timestamp("us", tz="UTC")),
            "in_flight": pa.array([1] * n, pa.int32()),
        }
    )


def test_extract_numbers_values_and_vectors_once_across_batches():
    def top(heads):
        return [{"token": "Heads", "logprob": heads}, {"token": "T", "logprob": -3.0}]

    first = [top(-0.1), top(-0.2), [{"token": "T", "logprob": -0.5}], top(-0.1)]
    second = [top(-0.2), top(-0.0), top(0.0), [{"token": "T", "logprob": -0.5}]]
    f = extract([_batch(first), _batch(second)], "Heads", capacity=8)
    a = f.arrays()
    table = np.append(f.target_table, np.nan)
    got = table[a["target"]]  # -1 (absent) picks the NaN
    expected = np.concatenate([target_logprobs(_tops(t), "Heads") for t in (first, second)])
    assert got.view(np.int64).tolist() == expected.view(np.int64).tolist()
    assert (a["target"] == -1).sum() == 2
    assert len(f.target_table) == 4  # -0.1, -0.2, -0.0, 0.0: each numbered once
    # the same top-k list in both batches is one vector; the list kept is the one returned
    assert len(f.vectors) == 5
    assert a["vector"][1] == a["vector"][4]
    assert a["vector"][2] == a["vector"][7]
    assert f.vectors[a["vector"][0]] == [("Heads", -0.1), ("T", -3.0)]
