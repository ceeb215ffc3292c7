"""compare: two samples of one distribution are not drift; real changes are, and are named."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import reference_calls, write_run
from detcheck.cli import app

runner = CliRunner()
N = 3000


@pytest.fixture(scope="module")
def reference():
    return reference_calls()


def sample(reference, seed, n=N, mask=None, weights=None):
    lps, fps = reference
    idx = np.arange(lps.size) if mask is None else np.flatnonzero(mask)
    p = None if weights is None else weights[idx] / weights[idx].sum()
    pick = np.random.default_rng(seed).choice(idx, size=n, replace=True, p=p)
    return lps[pick], fps[pick]


def compare(tmp_path, base, cand, *args, base_tokens=None, cand_tokens=None):
    b = write_run(tmp_path / "base", *base, tokens=base_tokens)
    c = write_run(tmp_path / "cand", *cand, tokens=cand_tokens)
    return runner.invoke(app, ["compare", str(b), str(c), "--json", *args])


@pytest.mark.parametrize("seed", range(8))
def test_two_samples_of_the_reference_distribution_are_not_drift(reference, tmp_path, seed):
    result = compare(tmp_path, sample(reference, 2 * seed), sample(reference, 2 * seed + 1))
    data = json.loads(result.stdout)
    assert result.exit_code == 0, data["failing_findings"]
    assert data["drift"] is False
    # rare values do come and go by chance: reported, not failing
    kinds = {f["kind"] for f in data["findings"]}
    assert kinds <= {"values"}


def test_a_vanished_cluster_is_drift(reference, tmp_path):
    lps, _ = reference
    without_low = np.exp(lps) * 100 > 86  # drop the 85.185% cluster (2.6% of calls)
    result = compare(tmp_path, sample(reference, 1), sample(reference, 2, mask=without_low))
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    details = [f["detail"] for f in data["failing_findings"] if f["kind"] == "clusters"]
    assert any("85.18" in d and "vanished" in d for d in details), details


def test_a_moved_modal_value_is_drift(reference, tmp_path):
    lps, _ = reference
    weights = np.where(np.isclose(np.exp(lps) * 100, 98.9008786933, atol=1e-9), 3.0, 1.0)
    result = compare(tmp_path, sample(reference, 1), sample(reference, 2, weights=weights))
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    modal = [f["detail"] for f in data["failing_findings"] if f["kind"] == "modal"]
    assert modal and "96.2660836887% to 98.9008786933%" in modal[0]


def test_a_new_fingerprint_is_drift(reference, tmp_path):
    lps, fps = sample(reference, 2)
    fps = fps.copy()
    fps[:300] = "fp_new0000001"
    result = compare(tmp_path, sample(reference, 1), (lps, fps))
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["new_fingerprints"] == ["fp_new0000001"]
    assert any(
        "new fingerprint fp_new0000001 on 300 calls" in f["detail"]
        for f in data["failing_findings"]
    )


def test_top_token_flips_are_drift(reference, tmp_path):
    cand = sample(reference, 2)
    tokens = ["Heads"] * N
    tokens[:5] = ["T"] * 5
    result = compare(tmp_path, sample(reference, 1), cand, cand_tokens=tokens)
    assert result.exit_code == 1
    assert any(
        f["kind"] == "flips" and "5 of 3,000" in f["detail"]
        for f in json.loads(result.stdout)["failing_findings"]
    )


def test_fail_on_selects_what_fails_and_markdown_goes_to_the_step_summary(
    reference, tmp_path, monkeypatch
):
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    lps, fps = sample(reference, 2)
    fps = fps.copy()
    fps[:10] = "fp_new"
    quiet = compare(tmp_path, sample(reference, 1), (lps, fps), "--fail-on", "clusters,modal")
    assert quiet.exit_code == 0  # the new fingerprint is reported, but does not fail
    assert "### detcheck compare: no drift" in summary.read_text()
    assert "| fingerprints | no | new fingerprint fp_new" in summary.read_text()
    bad = runner.invoke(
        app, ["compare", str(tmp_path / "base"), str(tmp_path / "cand"), "--fail-on", "vibes"]
    )
    assert bad.exit_code == 2 and "unknown finding 'vibes'" in bad.stderr
    missing = runner.invoke(app, ["compare", str(tmp_path / "nope"), str(tmp_path / "cand")])
    assert missing.exit_code == 2
