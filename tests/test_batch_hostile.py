"""--via batch against a hostile Batch API (tests/fake_batch.py): nothing paid twice, no key
printed, every line that came back recorded, and a run that can always be finished.

Each test here failed on 20a5643 (the code before issue 25), as its docstring says."""

from __future__ import annotations

import json
import signal
import time
import zlib

import pytest
from typer.testing import CliRunner

import detcheck
from detcheck.cli import app
from detcheck.errors import EndpointError
from detcheck.store import read_run
from fake_batch import FakeBatchAPI
from test_batch import ENV, flip, start_flip

runner = CliRunner()
KEY = ENV["OPENAI_API_KEY"]


def rows(result) -> list[dict]:
    return read_run(json.loads(result.stdout)["run_path"]).table.to_pylist()


def successes(table: list[dict]) -> list[int]:
    return sorted(r["call"] for r in table if r["ok"])


def test_a_create_answered_after_the_timeout_is_found_not_created_again(tmp_path):
    """Before: the SDK's retries created a second and a third batch, each paid, then an
    internal error."""
    with FakeBatchAPI(seconds=0.3, slow_creates=3, create_delay_s=2.5) as api:
        result = flip(api, tmp_path, "-n", 8, "--timeout", 1)
        assert result.exit_code == 0, result.stderr
        assert api.created == 1  # looked up by its input file, not created again
        assert api.paid_lines == 8
    assert successes(rows(result)) == list(range(8))


def test_a_resume_after_a_kill_sends_only_what_is_missing(tmp_path):
    """Before: the resume collected the first batch (8 of its 16 lines came back), then sent
    calls it had just stored: 3 batches and 32 lines for 16 calls."""
    with FakeBatchAPI(seconds=3.0, tamper=lambda k, lines: lines[:8] if k == 0 else lines) as api:
        proc = start_flip(api, tmp_path, 16)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not api.batches:
            time.sleep(0.05)
        time.sleep(0.3)  # the batch id is in _run.json
        proc.send_signal(signal.SIGKILL)  # while the first batch is in progress
        proc.wait()
        (run_dir,) = [p.parent for p in tmp_path.glob("*/_run.json")]
        resumed = runner.invoke(app, ["flip", "--resume", str(run_dir), "-q", "--json"], env=ENV)
        assert resumed.exit_code == 0, resumed.stderr
        assert api.created == 2  # the first, collected; one follow-up for the 8 it lost
        assert len(api.sent_ids) == len(set(api.sent_ids)) == 16 + 8  # none sent twice
    table = read_run(run_dir).table.to_pylist()
    first = {r["custom_id"] for r in table if r["ok"] and r["batch_id"] == "batch_1"}
    assert len(first) == 8 and not first & set(api.sent_ids[16:])
    assert successes(table) == list(range(16))


def test_lines_with_ids_never_sent_are_kept_as_failed_rows_not_successes(tmp_path):
    """Before: a foreign custom_id was stored as a success and counted toward n; the call it
    displaced was never sent."""

    def foreign(k, lines):
        if k:
            return lines
        first = json.loads(lines[0])
        first["custom_id"] = "call-99-attempt-1"
        other = json.loads(lines[1])
        other["custom_id"] = "call-1-attempt-7"
        return [json.dumps(first), *lines[1:], json.dumps(other)]

    with FakeBatchAPI(seconds=0.2, tamper=foreign) as api:
        result = flip(api, tmp_path, "-n", 6)
        assert result.exit_code == 0, result.stderr
        assert api.created == 2  # call 0, displaced, sent in a follow-up batch
    table = rows(result)
    assert successes(table) == list(range(6))
    strays = [r for r in table if r["error_type"] == "batch_foreign_line"]
    assert {r["custom_id"] for r in strays} == {"call-99-attempt-1", "call-1-attempt-7"}
    assert not any(r["ok"] for r in strays)
    meta = read_run(json.loads(result.stdout)["run_path"]).meta
    assert meta["notes"]["batch_foreign_lines"] == 2
    assert "2 line(s) whose custom_id was never sent" in " ".join(result.stderr.split())


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda lines: [*lines[:-1], lines[-1][: len(lines[-1]) // 2]], id="torn"),
        pytest.param(lambda lines: ['"a string"', *lines[1:]], id="string"),
        pytest.param(lambda lines: ["[1, 2]", *lines[1:]], id="list"),
        pytest.param(lambda lines: ['{"custom_id": 5, "response": "x"}', *lines[1:]], id="odd"),
    ],
)
def test_a_line_that_cannot_be_read_is_a_failed_attempt_and_the_run_completes(tmp_path, damage):
    """Before: JSONDecodeError / AttributeError, and --resume failed the same way every time."""
    with FakeBatchAPI(
        seconds=0.2, tamper=lambda k, lines: damage(lines) if k == 0 else lines
    ) as api:
        result = flip(api, tmp_path, "-n", 6)
        assert result.exit_code == 0, result.stderr
        assert api.created == 2
    table = rows(result)
    assert successes(table) == list(range(6))
    bad = [r for r in table if r["error_type"] == "batch_bad_line"]
    assert len(bad) == 1 and bad[0]["raw_body"] and not bad[0]["ok"]
    missing = [r for r in table if r["error_type"] == "batch_missing_line"]
    assert len(missing) == 1  # the call the bad line should have answered, sent again


def test_a_line_missing_from_a_completed_batch_leaves_a_failed_row(tmp_path):
    with FakeBatchAPI(seconds=0.2, tamper=lambda k, lines: lines[1:] if k == 0 else lines) as api:
        result = flip(api, tmp_path, "-n", 5)
        assert result.exit_code == 0, result.stderr
        assert api.created == 2
    table = rows(result)
    assert [r["call"] for r in table if r["error_type"] == "batch_missing_line"] == [0]
    assert successes(table) == list(range(5))


def test_an_output_file_that_404s_sends_its_lines_again(tmp_path):
    """Before: NotFoundError, the same on every --resume."""
    with FakeBatchAPI(seconds=0.2, lose_output=lambda k: k == 0) as api:
        result = flip(api, tmp_path, "-n", 5)
        assert result.exit_code == 0, result.stderr
        assert api.created == 2
    table = rows(result)
    unread = [r for r in table if r["error_type"] == "batch_output_unreadable"]
    assert len(unread) == 5 and "404" in unread[0]["error"]
    assert successes(table) == list(range(5))


def test_a_download_cut_off_half_way_is_read_again_not_sent_again(tmp_path):
    with FakeBatchAPI(seconds=0.2, break_downloads=2) as api:
        result = flip(api, tmp_path, "-n", 6, "--backoff-s", 0.1)
        assert result.exit_code == 0, result.stderr
        assert api.created == 1 and api.break_downloads == 0  # no line sent (or paid) again
    table = rows(result)
    assert successes(table) == list(range(6)) and all(r["ok"] for r in table)


def test_request_counts_without_completed_do_not_break_the_poll(tmp_path):
    """Before: TypeError formatting the poll line."""
    with FakeBatchAPI(seconds=0.3, counts_without_completed=True) as api:
        result = flip(api, tmp_path, "-n", 4)
        assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize("status", ["in_progress", "hatching"])
def test_a_batch_past_its_window_or_in_an_unknown_status_is_ended_and_sent_again(tmp_path, status):
    """Before: polled for ever."""
    with FakeBatchAPI(seconds=0.2, stuck=lambda k: status if k == 0 else None) as api:
        result = flip(api, tmp_path, "-n", 4)
        assert result.exit_code == 0, result.stderr
        assert api.created == 2
    table = rows(result)
    kind = "batch_overdue" if status == "in_progress" else "batch_unknown_status"
    ended = [r for r in table if r["error_type"] == kind]
    assert len(ended) == 4 and status in ended[0]["error"]
    assert successes(table) == list(range(4))


def test_probe_via_batch_is_bounded_too(tmp_path):
    with FakeBatchAPI(seconds=0.2, stuck=lambda k: "in_progress") as api:
        args = ["probe", "--via", "batch", "--base-url", api.base_url, "--batch-poll-s", "0.1"]
        result = runner.invoke(app, [*args, "--json"], env=ENV)
    assert result.exit_code == 3, result.stderr
    assert "past its completion window" in result.stderr


def test_a_dripping_poll_is_bounded_by_the_timeout(tmp_path):
    """Before: a retrieve that drips a byte every half second held the run for minutes."""
    with FakeBatchAPI(seconds=0.3, drip_retrieves=1) as api:
        result = flip(api, tmp_path, "-n", 4, "--timeout", 1)
        assert result.exit_code == 0, result.stderr
        for _ in range(40):  # the server notices at its next write
            if api.drips_abandoned:
                break
            time.sleep(0.1)
        assert api.drips_abandoned == 1


def _bomb(content: bytes, size: int = 64 * 1024 * 1024) -> bytes:
    """The output file gzip-encoded, with a line of `size` bytes that has no end."""
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b"x" * (1024 * 1024)
    parts = [z.compress(content)] + [z.compress(chunk) for _ in range(size // len(chunk))]
    return b"".join([*parts, z.flush()])


def test_an_output_file_is_streamed_with_each_line_capped(tmp_path):
    """Before: read whole into memory (a 2 MB gzip of 2 GiB took 6.5 GB)."""
    with FakeBatchAPI(seconds=0.2, gzip_output=_bomb) as api:
        result = flip(api, tmp_path, "-n", 4)
        assert result.exit_code == 0, result.stderr
    table = rows(result)
    huge = [r for r in table if r["error_type"] == "batch_bad_line"]
    assert len(huge) == 1 and "over" in huge[0]["error"]
    assert len(huge[0]["raw_body"]) < 100_000  # clipped, not 64 MiB
    assert successes(table) == list(range(4))


def test_a_refused_upload_that_echoes_the_key_never_prints_it(tmp_path, monkeypatch):
    """Before: the 401's message printed the key in full, on stderr, in --json and from the
    Python API (as openai.AuthenticationError)."""
    with FakeBatchAPI(refuse_upload=True) as api:
        result = flip(api, tmp_path, "-n", 4)
        assert result.exit_code == 3, result.stderr
        assert KEY not in result.stderr and KEY not in result.stdout
        assert "Incorrect API key provided: [REDACTED]" in result.stderr
        assert json.loads(result.stdout)["exit_code"] == 3
        # nothing was created or paid: a configuration error leaves no run to --resume
        assert "nothing was kept" in result.stderr and "--resume" not in result.stderr
        assert list(tmp_path.iterdir()) == []
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        with pytest.raises(EndpointError) as caught:
            detcheck.flip(n=4, via="batch", base_url=api.base_url, out=tmp_path / "api")
        assert KEY not in str(caught.value) and "401" in str(caught.value)


def test_an_error_line_carrying_the_key_or_a_newline_is_redacted_and_escaped(tmp_path):
    with FakeBatchAPI(
        seconds=0.2,
        fail=lambda i: True,
        fail_as_error=True,
        error_message=f"key {KEY} refused",
        error_code="bad\ndetcheck: forged line",
    ) as api:
        result = flip(api, tmp_path, "-n", 2, "--max-attempts", 1)
    assert result.exit_code == 3, result.stderr
    assert KEY not in result.stderr and KEY not in result.stdout
    assert "key [REDACTED] refused" in result.stderr
    assert not any(line.startswith("detcheck: forged") for line in result.stderr.splitlines())


@pytest.mark.parametrize("via", ["batch", "online"])
def test_a_base_url_with_credentials_and_a_query_sends_the_key_as_bearer(tmp_path, via):
    """Before: the batch path posted to a mangled path, and both sent Authorization: Basic."""
    with FakeBatchAPI(seconds=0.2) as api:
        base = api.base_url.replace("http://", "http://user:pw@") + "?tenant=t1"
        args = ["flip", "--via", via, "--base-url", base, "-n", "3", "-o", str(tmp_path), "-q"]
        result = runner.invoke(app, [*args, "--batch-poll-s", "0.1", "--json"], env=ENV)
        assert result.exit_code == 0, result.stderr
        seen = list(api.requests)
    assert seen and all(path.startswith("/v1/") and "?" not in path for _, path, _, _ in seen)
    assert {query for _, _, query, _ in seen} == {"tenant=t1"}
    assert {auth for _, _, _, auth in seen} == {f"Bearer {KEY}"}
    if via == "batch":
        assert {path for _, path, _, _ in seen} >= {"/v1/files", "/v1/batches"}
