"""Where a run cannot be written: --out is a file, a read-only filesystem, a disk that fills up
mid-run. Each is a one-line error with an exit code (and the resume command once anything was
written), never "internal error". The filesystems are real: small tmpfs mounts, where allowed."""

from __future__ import annotations

import subprocess

import pytest
from typer.testing import CliRunner

from detcheck.cli import app
from detcheck.store import read_run
from fake_openai import FakeOpenAI

runner = CliRunner()
KEY = "sk-test-0123456789abcdef"


def flip(server, out, *args):
    return runner.invoke(
        app,
        ["flip", "--out", str(out), "-q", "--json", *map(str, args)],
        env={"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": server.base_url},
    )


@pytest.fixture
def mount(tmp_path):
    """mount(options) -> a fresh tmpfs directory mounted with `options` (skips where mounting
    is not allowed: it needs root)."""
    mounted = []

    def make(options: str):
        point = tmp_path / f"mnt{len(mounted)}"
        point.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounted.append(point)
        return point

    yield make
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def assert_one_clean_line(result, *words):
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("detcheck: error")]
    assert len(errors) == 1, result.stderr
    for word in words:
        assert word.lower() in result.stderr.lower()


def test_out_into_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "a-file").write_text("not a directory")
    with FakeOpenAI() as server:
        result = flip(server, tmp_path / "a-file", "--n", 2)
        assert not server.requests  # nothing is paid for a run that cannot be kept
    assert result.exit_code == 2
    assert_one_clean_line(result, "not a directory")


def test_out_on_a_read_only_filesystem_is_a_clear_error(mount):
    read_only = mount("ro,size=1m")
    with FakeOpenAI() as server:
        result = flip(server, read_only, "--n", 2)
        assert not server.requests
    assert result.exit_code == 2
    assert_one_clean_line(result, "Read-only file system")


def test_a_disk_that_fills_up_mid_run_stops_it_with_the_resume_command(mount):
    small = mount("size=512k")
    with FakeOpenAI() as server:
        result = flip(server, small, "--n", 2_000, "--concurrency", 4)
        assert result.exit_code == 2
        assert_one_clean_line(result, "No space left on device", "continue with: detcheck")
        (run_dir,) = [p for p in small.iterdir() if p.is_dir()]
        kept = sum(read_run(run_dir).table.column("ok").to_pylist())
        assert 0 < kept < 2_000
        # room again: the resume finishes the run
        subprocess.run(["mount", "-o", "remount,size=64m", str(small)], check=True)
        done = runner.invoke(
            app,
            ["flip", "--resume", str(run_dir), "-q", "--json"],
            env={"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": server.base_url},
        )
    assert done.exit_code == 0, done.stderr
    table = read_run(run_dir).table
    assert sum(table.column("ok").to_pylist()) == 2_000
    seqs = table.column("seq").to_pylist()
    assert len(set(seqs)) == len(seqs)
