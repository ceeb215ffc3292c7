"""Real `detcheck flip` processes killed at the worst moments, and two commands at once: nothing
received is lost, a resume completes the run wherever it lives, and two writers never meet."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from detcheck.store import read_run, read_runs
from fake_openai import FakeOpenAI, coin_flip

pytestmark = pytest.mark.slow
KEY = "sk-test-0123456789abcdef"


def slow(delay_s):
    def respond(i, request):
        time.sleep(delay_s)
        return coin_flip(i, request)

    return respond


def env_for(server) -> dict:
    return {**os.environ, "OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": server.base_url}


def start(server, *args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "detcheck.cli", "flip", "-q", *map(str, args)],
        env=env_for(server),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def resume(server, target, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        # not -q: what a resume says it did (finishing, downloading) is looked for
        [sys.executable, "-m", "detcheck.cli", "flip", "--resume", str(target), "--json"]
        + [str(a) for a in args],
        env=env_for(server),
        capture_output=True,
        text=True,
        timeout=180,
    )


def journal_lines(run_dir: Path) -> int:
    return sum(j.read_bytes().count(b"\n") for j in run_dir.glob("_journal-*.jsonl"))


def wait_for_journal(root: Path, rows: int, timeout_s: float = 60, poll_s: float = 0.02) -> Path:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for run_json in root.glob("**/_run.json"):
            if journal_lines(run_json.parent) >= rows:
                return run_json.parent
        time.sleep(poll_s)
    raise AssertionError(f"no run under {root} reached {rows} journal rows")


def assert_exactly(run_dir_or_uri, n: int) -> None:
    (run,) = read_runs([run_dir_or_uri])
    table = run.table
    ok = table.column("ok").to_pylist()
    assert sum(ok) == n
    ids = [i for i, good in zip(table.column("response_id").to_pylist(), ok) if good]
    assert len(set(ids)) == n  # none twice
    calls = [c for c, good in zip(table.column("call").to_pylist(), ok) if good]
    # one success per call; a call in flight at a kill left no row, and a resume goes on from
    # the next number, so numbers may skip
    assert len(set(calls)) == n
    seqs = table.column("seq").to_pylist()
    assert len(set(seqs)) == len(seqs)
    assert run.meta["status"] == "complete"


def test_a_run_killed_before_its_last_compaction_is_finished_by_resume(tmp_path):
    """All n responses are in the journal, but the process died before turning it into a part
    and marking run.json complete. Before: --resume said "nothing to do" and left a journal."""
    n = 3_000  # a final compaction long enough (~0.1 s) to be caught in the act
    with FakeOpenAI() as server:
        proc = start(server, "--n", n, "--out", tmp_path, "--concurrency", 8)
        run_dir = wait_for_journal(tmp_path, n, poll_s=0.001)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        status = json.loads((run_dir / "_run.json").read_text())["status"]
        assert status == "running", "the kill came after the run was closed: nothing tested"
        done = resume(server, run_dir)
        assert done.returncode == 0, done.stderr
        assert len(server.requests) == n  # nothing was asked twice
    assert "finishing what was not closed" in done.stderr
    assert json.loads(done.stdout)["n"] == n
    assert list(run_dir.glob("part-*.parquet")) and not list(run_dir.glob("_journal-*"))
    assert_exactly(run_dir, n)
    import pyarrow.dataset as ds

    # what other readers see: every row, from the parts alone
    assert ds.dataset(sorted(map(str, run_dir.glob("*.parquet")))).count_rows() == n


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    n = 1_000
    with FakeOpenAI(slow(0.01)) as server:
        original = start(server, "--n", n, "--out", tmp_path, "--concurrency", 2)
        run_dir = wait_for_journal(tmp_path, 20)
        # a resume while the original still runs
        refused = resume(server, run_dir)
        assert refused.returncode == 2, refused.stderr
        assert f"pid {original.pid}" in refused.stderr
        original.send_signal(signal.SIGKILL)
        original.wait()
        # the kernel dropped the dead holder's lock: two resumes at once, one goes ahead
        cmd = [sys.executable, "-m", "detcheck.cli", "flip", "--resume", str(run_dir), "-q"]
        asked = len(server.requests)
        first = subprocess.Popen(cmd, env=env_for(server), stderr=subprocess.PIPE, text=True)
        while len(server.requests) < asked + 10:  # it holds the lock, and is sending
            time.sleep(0.01)
        second = resume(server, run_dir)
        first_err = first.communicate(timeout=180)[1]
    assert first.returncode == 0, first_err
    assert second.returncode == 2, second.stderr
    assert f"pid {first.pid}" in second.stderr and "being written" in second.stderr
    assert_exactly(run_dir, n)
    meta = json.loads((run_dir / "_run.json").read_text())
    # each session recorded: the run's own concurrency (not the CLI default), its client
    (session,) = meta["resumed"]  # the refused resumes wrote nothing
    assert session["concurrency"] == meta["concurrency"] == 2
    assert session["client"] == meta["client"] == "aiohttp"
    assert session["ended_at"] >= session["at"]


def test_a_killed_remote_run_is_resumed_and_the_bucket_completed(bucket, tmp_path):
    """Before: a resumed run bound for s3:// uploaded nothing, and the bucket kept a run.json
    saying "running" and only the parts written before the kill."""
    query, fs = bucket
    n = 400
    staging_root = Path(f"/tmp/detcheck-staging-{os.getuid()}")
    before = set(staging_root.glob("*")) if staging_root.exists() else set()
    with FakeOpenAI(slow(0.005)) as server:
        proc = start(server, "--n", n, "--out", f"s3://detcheck/runs?{query}", "--concurrency", 4)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            new = [d for d in staging_root.glob("*") if d not in before]
            if new and journal_lines(new[0]) >= 50:
                break
            time.sleep(0.02)
        (staging,) = new
        assert staging_root.stat().st_mode & 0o777 == 0o700  # private to this user
        assert staging.stat().st_mode & 0o777 == 0o700
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done = resume(server, staging)
    assert done.returncode == 0, done.stderr
    uri = json.loads(done.stdout)["run_path"]
    assert uri.startswith("s3://detcheck/runs/") and uri.endswith(staging.name)
    assert not staging.exists()  # uploaded, then removed
    remote = f"detcheck/runs/{staging.name}"
    names = [i.base_name for i in fs.get_file_info(pafs.FileSelector(remote))]
    assert "_run.json" in names and not any(x.startswith("_journal") for x in names)
    assert_exactly(f"s3://{remote}?{query}", n)


def test_a_remote_run_resumes_from_its_uri_once_staging_is_gone(bucket, tmp_path, recording):
    query, fs = bucket
    out = f"s3://detcheck/runs?{query}"
    staging_root = Path(f"/tmp/detcheck-staging-{os.getuid()}")
    with FakeOpenAI(slow(0.01)) as server:
        proc = start(server, "--n", 300, "--out", out, "--concurrency", 2, "--json")
        while len(server.requests) < 20:  # sending: its signal handlers are in place
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)  # interrupted: closed, uploaded, staging removed
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 130, stderr
        hint = stderr.split("continue with: detcheck flip --resume ", 1)[1].split("\n")[0]
        assert hint.startswith("'s3://detcheck/runs/") and "endpoint_override" in hint
        done = resume(server, hint.strip("'"))
    assert done.returncode == 0, done.stderr
    assert "downloading s3://detcheck/runs/" in done.stderr
    run_path = json.loads(done.stdout)["run_path"]
    assert not (staging_root / run_path.rsplit("/", 1)[1]).exists()
    assert_exactly(f"{run_path}?{query}", 300)


def test_kills_at_random_moments_lose_nothing_received(tmp_path):
    """A short soak (bench/soak.py runs the long one): a run killed at random moments once it is
    sending, each resume killed in turn, until the last resume completes it."""
    import random

    rng = random.Random(11)
    n, kills = 600, 5
    with FakeOpenAI(slow(0.002)) as server:
        proc = start(server, "--n", n, "--out", tmp_path, "--concurrency", 8)
        run_dir = None
        for _ in range(kills):
            asked = len(server.requests)
            while len(server.requests) <= asked and proc.poll() is None:
                time.sleep(0.005)  # sending again: a kill now can lose what is in flight
            time.sleep(rng.uniform(0.0, 0.4))
            run_dir = run_dir or next(tmp_path.glob("*/_run.json")).parent
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            cmd = [sys.executable, "-m", "detcheck.cli", "flip", "--resume", str(run_dir), "-q"]
            proc = subprocess.Popen(cmd, env=env_for(server), stderr=subprocess.PIPE, text=True)
        assert proc.wait(timeout=180) == 0, proc.stderr.read()
        sent = server.successes
    assert_exactly(run_dir, n)
    kept = sum(read_run(run_dir).table.column("ok").to_pylist())
    assert sent - kept <= 8 * kills  # only what was in flight at a kill: at most the concurrency
