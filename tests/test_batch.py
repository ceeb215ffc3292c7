"""--via batch against a fake Batch API on 127.0.0.1 (tests/fake_batch.py), through the real SDK:
the requests go up as JSONL, the batch is polled, its lines come back as rows; failed and
expired lines are sent again in a follow-up batch; a killed run resumes without a second batch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from detcheck.cli import app
from detcheck.send.batch_api import MAX_BYTES, MAX_LINES, into_files
from detcheck.store import read_run
from fake_batch import FakeBatchAPI

runner = CliRunner()
ENV = {"OPENAI_API_KEY": "sk-batch-test"}


def flip(api, out, *args, quiet=True):
    result = runner.invoke(
        app,
        ["flip", "--via", "batch", "--base-url", api.base_url, "-o", str(out), "--json",
         "--batch-poll-s", "0.1", *(["-q"] if quiet else []), *map(str, args)],
        env=ENV,
    )  # fmt: skip
    return result


def start_flip(api, out, n: int, *extra) -> subprocess.Popen:
    """A real `detcheck flip --via batch` process, to kill or interrupt."""
    args = ["flip", "--via", "batch", "--base-url", api.base_url, "-n", str(n), "-o", str(out),
            "-q", "--batch-poll-s", "0.2", *extra]  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "detcheck", *args],
        env={**os.environ, **ENV},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_batch_run_stores_one_row_per_line_at_batch_prices(tmp_path):
    with FakeBatchAPI(seconds=0.5) as api:
        result = flip(api, tmp_path, "-n", 20, quiet=False)  # -q would silence the cost note
        assert result.exit_code == 0, result.stderr
        assert api.created == 1
        (batch,) = api.batches.values()
        line = batch["lines"][0]
    # the online request body, exactly, on the chat path
    assert batch["endpoint"] == "/v1/chat/completions" and line["url"] == batch["endpoint"]
    body = line["body"]
    assert (body["max_tokens"], body["top_logprobs"], body["seed"], body["logprobs"]) == (
        1,
        20,
        42,
        True,
    )
    assert len({x["custom_id"] for x in batch["lines"]}) == 20
    report = json.loads(result.stdout)
    assert report["n"] == 20 and report["measured"]["via"] == ["batch"]
    assert "via the Batch API" in " ".join(result.stderr.split())
    assert "at Batch API prices (half the list price)" in result.stderr
    run = read_run(report["run_path"])
    assert run.meta["via"] == "batch" and run.meta["batches"][0]["collected"] is True
    table = run.table
    assert set(table.column("batch_id").to_pylist()) == {batch["id"]}
    assert table.column("request_id").null_count == 0 and all(table.column("ok").to_pylist())


def test_failed_lines_go_again_in_a_follow_up_batch_and_are_kept(tmp_path):
    with FakeBatchAPI(seconds=0.3, fail=lambda i: i % 5 == 0) as api:
        result = flip(api, tmp_path, "-n", 20)
        assert result.exit_code == 0, result.stderr
        assert api.created >= 2  # the failed lines, sent again
    run = read_run(json.loads(result.stdout)["run_path"])
    table = run.table
    ok = table.column("ok").to_pylist()
    assert sum(ok) == 20  # exactly n
    failed = [e for e, good in zip(table.column("error_type").to_pylist(), ok) if not good]
    assert failed and set(failed) == {"http_500"}  # recorded, not dropped
    calls = [c for c, good in zip(table.column("call").to_pylist(), ok) if good]
    assert sorted(calls) == list(range(20))


def test_an_expired_batch_keeps_what_completed(tmp_path):
    with FakeBatchAPI(seconds=0.3, expire_after=12) as api:
        result = flip(api, tmp_path, "-n", 20)
        assert result.exit_code == 0, result.stderr
        assert api.created == 2
    table = read_run(json.loads(result.stdout)["run_path"]).table
    kinds = table.column("error_type").to_pylist()
    assert kinds.count("batch_expired") == 8 and sum(table.column("ok").to_pylist()) == 20


def test_a_killed_batch_run_resumes_without_a_second_batch(tmp_path):
    with FakeBatchAPI(seconds=4.0) as api:
        proc = start_flip(api, tmp_path, 30)
        deadline = time.monotonic() + 30
        meta = None
        while time.monotonic() < deadline:
            found = list(tmp_path.glob("*/_run.json"))
            if found:
                meta = json.loads(found[0].read_text())
                if any(b.get("id") for b in meta.get("batches", [])):
                    break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)  # mid-batch, the worst moment
        proc.wait()
        assert meta and api.created == 1
        run_dir = found[0].parent
        resumed = runner.invoke(app, ["flip", "--resume", str(run_dir), "-q", "--json"], env=ENV)
        assert resumed.exit_code == 0, resumed.stderr
        assert api.created == 1  # re-attached, not paid for twice
    assert json.loads(resumed.stdout)["n"] == 30
    assert read_run(run_dir).meta["status"] == "complete"


def test_ctrl_c_can_cancel_the_batch_and_resume_collects_what_it_did(tmp_path):
    with FakeBatchAPI(seconds=3.0) as api:
        proc = start_flip(api, tmp_path, 30, "--cancel-on-interrupt")
        while not api.batches:
            time.sleep(0.05)
        time.sleep(1.5)  # about half done
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 130, stderr
        assert api.cancelled == 1 and "cancelled the open batch" in stderr
        (run_dir,) = [p.parent for p in tmp_path.glob("*/_run.json")]
        resumed = runner.invoke(app, ["flip", "--resume", str(run_dir), "-q", "--json"], env=ENV)
        assert resumed.exit_code == 0, resumed.stderr
        assert api.created == 2  # the cancelled lines, in a follow-up batch
    table = read_run(run_dir).table
    assert "batch_cancelled" in table.column("error_type").to_pylist()
    assert sum(table.column("ok").to_pylist()) == 30


def test_a_recorded_batch_run_replays_offline(tmp_path):
    with FakeBatchAPI(seconds=0.2) as api:
        recorded = json.loads(flip(api, tmp_path / "rec", "-n", 12).stdout)["run_path"]
    replay = runner.invoke(
        app, ["flip", "-n", "12", "--replay", recorded, "-o", str(tmp_path / "r"), "-q", "--json"]
    )
    assert replay.exit_code == 0, replay.stderr
    assert json.loads(replay.stdout)["distinct"] == 2  # the fake's two values, as recorded


def test_requests_are_split_into_files_within_the_batch_limits():
    assert [len(c) for c in into_files(list(range(120_000)), 100)] == [MAX_LINES, MAX_LINES, 20_000]
    per_file = MAX_BYTES // 10_000  # a generate request with a long prompt: bytes decide
    files = into_files(list(range(50_000)), 10_000)
    assert all(len(c) <= per_file for c in files) and sum(map(len, files)) == 50_000


def test_batch_and_replay_or_background_load_are_refused(tmp_path, recording):
    a = runner.invoke(app, ["flip", "--via", "batch", "--replay", str(recording)], env=ENV)
    assert a.exit_code == 2 and "a replay sends nothing" in a.stderr
    b = runner.invoke(app, ["flip", "--via", "batch", "--background-load", "2"], env=ENV)
    assert b.exit_code == 2 and "--background-load" in b.stderr
    c = runner.invoke(app, ["flip", "--via", "bulk"], env=ENV)
    assert c.exit_code == 2 and "must be online or batch" in c.stderr


def test_experiment_files_take_via(tmp_path):
    with FakeBatchAPI(seconds=0.2) as api:
        exp = tmp_path / "e.toml"
        exp.write_text(
            f'[[measurement]]\nname = "batch"\nbase_url = "{api.base_url}"\nn = 6\n'
            'via = "batch"\nbatch_poll_s = 0.1\n'
        )
        result = runner.invoke(app, ["run", str(exp), "-o", str(tmp_path / "runs"), "-q"], env=ENV)
        assert result.exit_code == 0, result.stderr
        assert api.created == 1
    assert Path(tmp_path / "runs").exists()


def test_probe_via_batch_says_what_the_batch_output_carries(tmp_path):
    with FakeBatchAPI(seconds=0.3) as api:
        args = ["probe", "--via", "batch", "--base-url", api.base_url, "--batch-poll-s", "0.1"]
        result = runner.invoke(app, [*args, "--json"], env=ENV)
        assert result.exit_code == 0, result.stderr
        assert api.created == 1 and len(next(iter(api.batches.values()))["lines"]) == 1
    data = json.loads(result.stdout)
    assert data["via"] == "batch" and data["batch_status"] == "completed"
    assert data["logprobs"] is True and data["top_logprobs_returned"] == 20
    assert data["fingerprint_value"] == "fp_test"
    assert "chat API via the Batch API" in result.stderr


def test_generate_goes_through_the_batch_api_too(tmp_path):
    with FakeBatchAPI(seconds=0.2) as api:
        args = ["generate", "--via", "batch", "--base-url", api.base_url, "-n", "6"]
        args += ["-o", str(tmp_path), "-q", "--json", "--batch-poll-s", "0.1"]
        result = runner.invoke(app, args, env=ENV)
        assert result.exit_code == 0, result.stderr
        (batch,) = api.batches.values()
    assert batch["lines"][0]["body"]["max_tokens"] == 128  # generate's own request
    data = json.loads(result.stdout)
    assert data["kind"] == "generate" and data["n"] == 6


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_leaves_the_batch_running_by_default_and_resume_collects_it(tmp_path, sig):
    """SIGTERM as SIGINT (before issue 25 it killed the process at once, _run.json "running")."""
    with FakeBatchAPI(seconds=2.0) as api:
        proc = start_flip(api, tmp_path, 15)
        while not api.batches:
            time.sleep(0.05)
        time.sleep(0.3)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 130, stderr
        assert api.cancelled == 0 and "keeps running at the provider" in stderr
        assert "continue with: detcheck flip --resume" in stderr
        (run_dir,) = [p.parent for p in tmp_path.glob("*/_run.json")]
        assert read_run(run_dir).meta["status"] == "interrupted"
        resumed = runner.invoke(app, ["flip", "--resume", str(run_dir), "-q", "--json"], env=ENV)
        assert resumed.exit_code == 0, resumed.stderr
        assert api.created == 1  # collected, not sent again
    assert json.loads(resumed.stdout)["n"] == 15


def test_a_line_with_only_an_error_object_is_a_failed_attempt(tmp_path):
    with FakeBatchAPI(seconds=0.2, fail=lambda i: i == 3, fail_as_error=True) as api:
        result = flip(api, tmp_path, "-n", 8)
        assert result.exit_code == 0, result.stderr
    table = read_run(json.loads(result.stdout)["run_path"]).table
    rows = [r for r in table.to_pylist() if not r["ok"]]
    assert [(r["error_type"], r["error"], r["http_status"]) for r in rows] == [
        ("batch_server_error", "line failed", None)
    ]
