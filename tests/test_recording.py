"""The shipped recording says what the publication says, and carries no secrets."""

from __future__ import annotations

import csv
import math
import re
from collections import Counter

from conftest import ROOT, SOURCE, target_logprobs
from detcheck.store import read_run

KEY_LIKE = [
    re.compile(rb"sk-[A-Za-z0-9_\-]{16,}"),  # OpenAI-style keys (sk-, sk-proj-...)
    re.compile(rb"(?i)bearer\s+[A-Za-z0-9._\-]{12,}"),
    re.compile(rb"(?i)authorization"),
    re.compile(rb"(?i)api[_-]?key\W{1,4}[A-Za-z0-9]{12,}"),
    re.compile(rb"AKIA[0-9A-Z]{16}"),  # AWS access key ids
    re.compile(rb"(?i)://[^/\s:@]+:[^/\s@]+@"),  # user:password in a URL
]


def test_recording_matches_published_distribution(recording):
    run = read_run(recording, columns=["ok", "seq", "system_fingerprint", "top_logprobs"])
    table = run.table.sort_by("seq")
    assert table.num_rows == 10_000 and all(table.column("ok").to_pylist())
    lps = target_logprobs(table.column("top_logprobs"), "Heads")
    fps = table.column("system_fingerprint").to_pylist()
    by_value = Counter(f"{math.exp(lp) * 100:.10f}" for lp in lps)
    fp_by_value: dict[str, set] = {}
    for lp, fp in zip(lps, fps):
        fp_by_value.setdefault(f"{math.exp(lp) * 100:.10f}", set()).add(fp)
    with open(SOURCE / "gpt-4o-2024-08-06-coinflip-10000.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(by_value) == len(rows) == 42
    for row in rows:
        pct = row["heads_probability_pct"]
        assert by_value[pct] == int(row["count"]), pct
        # every fingerprint the publication lists for the value is there, and no other
        assert fp_by_value[pct] == set(row["fingerprints"].split()), pct
    assert Counter(fps) == {"fp_f9f4fb6dbf": 4488, "fp_eb9dce56a8": 5512}


def test_recording_starts_with_the_ten_published_consecutive_calls(recording):
    run = read_run(recording, columns=["seq", "system_fingerprint", "top_logprobs"])
    table = run.table.sort_by("seq").slice(0, 10)
    lps = target_logprobs(table.column("top_logprobs"), "Heads")
    with open(SOURCE / "ten-calls-fingerprint.csv") as f:
        rows = list(csv.DictReader(f))
    assert [f"{math.exp(lp) * 100:.10f}" for lp in lps] == [
        r["heads_probability_pct"] for r in rows
    ]
    assert table.column("system_fingerprint").to_pylist() == [r["system_fingerprint"] for r in rows]


def test_recording_metadata_names_its_parameters(recording):
    meta = read_run(recording, columns=["ok"]).meta
    assert meta["request"] == {
        "model": "gpt-4o-2024-08-06",
        "messages": [{"role": "user", "content": "Flip a coin. Return Heads or Tails only."}],
        "temperature": 0.0,
        "logprobs": True,
        "top_logprobs": 20,
        "max_tokens": 1,
        "seed": 42,
    }
    assert meta["targets"] == {"Heads": "Heads", "Tails": "T"}
    assert "reconstructed" in meta["provenance"]


def test_no_shipped_file_contains_a_key_like_string():
    files = [p for p in (ROOT / "recordings").rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in files)
    for path in files:
        data = path.read_bytes()
        if path.suffix == ".parquet":
            # the pages are zstd-compressed: scan the decoded text columns too
            table = read_run(path.parent).table
            for name in ("raw_body", "error", "response_id", "request_id"):
                data += "\n".join(v or "" for v in table.column(name).to_pylist()).encode()
        for pattern in KEY_LIKE:
            assert not pattern.search(data), f"{path}: matches {pattern.pattern!r}"


def test_key_scan_catches_a_planted_key():
    # the scan above must be able to fail
    planted = b'{"error": "bad key sk-proj-abcdefghijklmnop1234"}'
    assert any(p.search(planted) for p in KEY_LIKE)


def test_the_llama_server_recording_replays_its_batch_variance(tmp_path):
    """A real engine's run (recordings/llama-server-c8-300): llama.cpp's server with 8 slots
    and continuous batching gave two values of one logprob in 300 identical calls."""
    import json

    from typer.testing import CliRunner

    from detcheck.cli import app

    recording = ROOT / "recordings" / "llama-server-c8-300"
    result = CliRunner().invoke(
        app,
        ["flip", "--n", "300", "--replay", str(recording), "--out", str(tmp_path), "--json"],
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["n"] == 300 and data["distinct"] == 2
    assert data["fingerprints"] == {"b0-unknown": 300}
    assert read_run(recording).meta["concurrency"] == 8


def test_the_real_model_recordings_replay_what_was_measured(tmp_path):
    """SmolLM2-135M-Instruct under llama-server, 8 slots (recordings/README.md): Q4_1 gave one
    Heads probability in 300 calls at concurrency 8, the F32 copy of the same weights several,
    and the top token never changed in either."""
    import json

    from typer.testing import CliRunner

    from detcheck.cli import app

    distinct = {}
    for name in ("q4_1", "f32"):
        recording = ROOT / "recordings" / f"smollm2-{name}-coinflip-c8-300"
        meta = read_run(recording).meta
        assert (meta["api"], meta["concurrency"]) == ("completions", 8)
        assert meta["targets"] == {"Heads": " Heads", "Tails": " T"}
        result = CliRunner().invoke(
            app,
            ["flip", "--n", "300", "--replay", str(recording), "--out", str(tmp_path / name),
             "--json"],
        )  # fmt: skip
        assert result.exit_code == 0, result.stderr
        data = json.loads(result.stdout)
        assert data["n"] == 300 and data["top_token"]["flips"] == 0
        assert 40 < data["modal"]["prob_pct"] < 50  # a real near coin flip
        distinct[name] = data["distinct"]
    assert distinct["q4_1"] == 1 and distinct["f32"] > 1


def test_the_real_model_prompt_set_is_22_prompts_each_one_completion():
    import json

    from typer.testing import CliRunner

    from detcheck.cli import app

    recording = ROOT / "recordings" / "smollm2-f32-prompts-c8"
    result = CliRunner().invoke(app, ["analyze", str(recording), "--json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert len(data["prompts"]) == 22 and data["n"] == 176
    assert {p["n"] for p in data["prompts"]} == {8}
    assert data["agreement"]["raw"] == 1.0  # no natural split at temperature 0, 8 slots
