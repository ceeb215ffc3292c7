"""Whole generations from a hostile endpoint: a key split over tokens, completions that differ
only in their bytes, unusable logprobs mid-answer, answers longer than asked, long rows in the
journal. Each test failed on 20a5643 (the code before issue 25)."""

from __future__ import annotations

import json
import math

import pyarrow.parquet as pq
from typer.testing import CliRunner

from detcheck.analysis.generation_arrays import read_generations
from detcheck.cli import app
from detcheck.store import RunWriter, read_run
from fake_openai import FakeOpenAI, Reply

runner = CliRunner()
KEY = "sk-test-generate-hostile-0123456789"


def answer(i: int, tokens: list, logprobs: list | None = None, raw: list | None = None, text=None):
    """A chat completion generating `tokens` (their `bytes` as given, else their UTF-8)."""
    logprobs = logprobs or [-0.25] * len(tokens)
    entries = []
    for k, (t, lp) in enumerate(zip(tokens, logprobs)):
        entry = {"token": t, "logprob": lp}
        if raw is not None:
            entry["bytes"] = raw[k]
        entry["top_logprobs"] = [dict(entry)]
        entries.append(entry)
    body = {
        "id": f"chatcmpl-{i}", "object": "chat.completion", "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant",
                                 "content": "".join(tokens) if text is None else text},
                     "logprobs": {"content": entries}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": len(tokens)},
    }  # fmt: skip
    # NaN and Infinity as JSON literals, as Python's json and some servers write them
    return Reply(200, json.dumps(body).encode())


def generate(server, out, *args, key: str = KEY):
    return runner.invoke(
        app,
        ["generate", "-o", str(out), "-q", "--json", "--max-tokens", "8", *map(str, args)],
        env={"OPENAI_API_KEY": key, "OPENAI_BASE_URL": server.base_url},
    )


def test_a_key_split_over_two_tokens_never_comes_back_whole(tmp_path):
    """Before: redacted in the stored text, but whole again in parting_text (table, --json,
    the HTML page)."""

    def respond(i, request):
        end = " one" if i % 2 else " two"
        return answer(i, ["The", " key", " is", " sk-test-generate", "-hostile-0123456789", end])

    with FakeOpenAI(respond) as server:
        result = generate(server, tmp_path / "runs", "-n", 6)
    assert result.exit_code == 0, result.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
            assert b"-hostile-0123456789" not in path.read_bytes(), path
    # analysed later, by someone without the key in the environment
    page = tmp_path / "page.html"
    for args in (["analyze", str(run_dir), "--json"], ["analyze", str(run_dir)],
                 ["report", str(run_dir), "-o", str(page)]):  # fmt: skip
        shown = runner.invoke(app, args)
        assert shown.exit_code == 0, shown.stderr
        assert KEY not in shown.stdout + shown.stderr
    assert KEY not in page.read_text() and "-hostile-0123456789" not in page.read_text()
    data = json.loads(runner.invoke(app, ["analyze", str(run_dir), "--json"]).stdout)
    assert data["unique_completions"] == 2
    assert "[REDACTED]" in data["completions"][1]["parting_text"]


def test_completions_that_differ_only_in_their_bytes_are_different(tmp_path):
    """Before: invalid UTF-8 (and lone surrogates) became U+FFFD, and the two answers one."""

    def respond(i, request):
        if i % 2:
            return answer(i, ["A", "\ufffd"], raw=[[65], [0xE2, 0x80]])
        return answer(i, ["A", "\ufffd"], raw=[[65], [0xE2, 0x81]])

    with FakeOpenAI(respond) as server:
        result = generate(server, tmp_path / "a", "-n", 4)
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["unique_completions"] == 2
    assert data["flags"]["text_mismatch"] == 4  # the message text is not what the bytes say

    def surrogates(i, request):
        return Reply(200, json.dumps(json.loads(answer(i, ["B", "X"]).body)).replace(
            '"X"', '"\\ud800"' if i % 2 else '"\\ud801"').encode())  # fmt: skip

    with FakeOpenAI(surrogates) as server:
        result = generate(server, tmp_path / "b", "-n", 4)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["unique_completions"] == 2


def test_an_unusable_logprob_mid_answer_is_retried_never_counted(tmp_path):
    """Before: a NaN (stored as null) or a positive logprob at position 2 counted as a success."""
    bad = [math.nan, 0.5, math.inf]

    def respond(i, request):
        lps = [-0.1, -0.2, bad[i] if i < len(bad) else -0.3, -0.4]
        return answer(i, ["w", "x", "y", "z"], logprobs=lps)

    with FakeOpenAI(respond) as server:
        result = generate(server, tmp_path, "-n", 3, "--concurrency", 1)
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["n"] == 3 and data["errors_by_type"] == {"unusable_logprob": 3}
    (run_dir,) = tmp_path.iterdir()
    table = read_run(run_dir).table.to_pylist()
    assert all(None not in r["gen_logprobs"] for r in table if r["ok"])
    assert "position 2" in [r for r in table if not r["ok"]][0]["error"]


def test_an_answer_longer_than_asked_is_flagged_and_does_not_widen_the_analysis(tmp_path):
    """Before: one 5,000-token answer among 20 padded every response to 5,000 positions."""
    words = [f" w{k}" for k in range(8)]

    def respond(i, request):  # the server ignores max_tokens for call 3
        return answer(i, words + [" more"] * 5000 if i == 3 else words)

    with FakeOpenAI(respond) as server:
        result = generate(server, tmp_path, "-n", 20, "--concurrency", 1)
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["flags"]["over_length"] == 1
    assert data["unique_completions"] == 2  # the same 8 tokens, then more: another answer
    (run_dir,) = tmp_path.iterdir()
    g = read_generations([read_run(run_dir)])
    assert g.width == 8 and g.lengths.max() == 8  # read to max_tokens, not widened
    text = runner.invoke(app, ["analyze", str(run_dir)]).stdout
    assert "longer than the 8 tokens asked for" in " ".join(text.split())


def test_long_rows_are_compacted_in_bounded_groups(tmp_path):
    """Before: a journal was read whole to compact it (200 answers of 10,000 tokens: 3.3 GB)."""
    meta = {"run_id": "r", "schema_version": 4, "config": {"kind": "generate"}}
    writer = RunWriter(tmp_path / "run", meta)
    tokens = [f" t{k}" for k in range(20_000)]
    tops = [[t, " other", " third"] for t in tokens]
    for call in range(60):  # ~1.2 MB of JSON a row, ~80 MB in Arrow
        writer.append({
            "run_id": "r", "seq": call, "call": call, "attempt": 1, "ok": True,
            "gen_tokens": tokens, "gen_logprobs": [-0.5] * len(tokens),
            "gen_top_tokens": tops, "gen_top_logprobs": [[-0.5, -1.0, -2.0]] * len(tokens),
        })  # fmt: skip
    writer.close(status="complete")
    (part,) = (tmp_path / "run").glob("*.parquet")
    groups = pq.ParquetFile(part).metadata.num_row_groups
    assert groups >= 2  # not one group of all 60
    assert read_run(tmp_path / "run").table.num_rows == 60
