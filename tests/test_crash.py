"""A real `detcheck flip` process, killed: what it received is on disk and --resume completes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from detcheck.store import read_run
from fake_openai import FakeOpenAI, coin_flip

pytestmark = pytest.mark.slow
KEY = "sk-test-0123456789abcdef"


def slow(i, request):
    time.sleep(0.01)
    return coin_flip(i, request)


def start(server, out: Path, n: int, *extra) -> subprocess.Popen:
    env = {**os.environ, "OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": server.base_url}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "detcheck.cli",
            "flip",
            "--n",
            str(n),
            "--out",
            str(out),
            "-q",
            "--concurrency",
            "4",
            *extra,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_rows(out: Path, rows: int, timeout_s: float = 30) -> Path:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for journal in out.glob("*/_journal-*.jsonl"):
            if sum(1 for _ in journal.open()) >= rows:
                return journal.parent
        time.sleep(0.05)
    raise AssertionError("the run never wrote rows")


def resume(server, run_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": server.base_url}
    return subprocess.run(
        [sys.executable, "-m", "detcheck.cli", "flip", "--resume", str(run_dir), "-q", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_sigkill_leaves_a_readable_run_that_resume_completes(tmp_path):
    n = 400
    with FakeOpenAI(slow) as server:
        proc = start(server, tmp_path, n)
        run_dir = wait_for_rows(tmp_path, 60)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_at = server.successes
        table = read_run(run_dir).table  # readable as it is, journal and all
        kept = sum(table.column("ok").to_pylist())
        assert 60 <= kept < n
        # what was in flight at the kill was sent but never received: at most the concurrency
        assert killed_at - kept <= 4
        assert json.loads((run_dir / "_run.json").read_text())["status"] == "running"

        done = resume(server, run_dir)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["n"] == n
    table = read_run(run_dir).table
    ok = table.column("ok").to_pylist()
    assert sum(ok) == n
    ids = [i for i, good in zip(table.column("response_id").to_pylist(), ok) if good]
    assert len(set(ids)) == n  # none twice
    seqs = table.column("seq").to_pylist()
    assert len(set(seqs)) == len(seqs)
    assert not list(run_dir.glob("_journal-*"))
    assert json.loads((run_dir / "_run.json").read_text())["status"] == "complete"


def test_sigterm_finishes_in_flight_writes_and_says_how_to_resume(tmp_path):
    with FakeOpenAI(slow) as server:
        proc = start(server, tmp_path, 2000)
        run_dir = wait_for_rows(tmp_path, 40)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 130
        sent = server.successes
    assert f"continue with: detcheck flip --resume {run_dir}" in stderr
    assert "distinct Heads probabilities" in stdout  # the partial report
    table = read_run(run_dir).table
    assert sum(table.column("ok").to_pylist()) == sent  # nothing in flight was abandoned
    assert json.loads((run_dir / "_run.json").read_text())["status"] == "interrupted"
