"""Against a real third-party OpenAI-compatible server: llama.cpp's (llama-cpp-python[server]),
serving a tiny generated model on 127.0.0.1. Needs `uv sync --group interop`; skipped without."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from detcheck.cli import app
from detcheck.store import read_run

pytest.importorskip("llama_cpp.server", reason="uv sync --group interop installs llama.cpp")
pytestmark = pytest.mark.interop
runner = CliRunner()
ENV = {"OPENAI_API_KEY": "unused-by-llama-cpp"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tiny_gguf import write_tiny_llama

    model = write_tiny_llama(tmp_path_factory.mktemp("model") / "tiny.gguf")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model),
            "--model_alias",
            "tiny",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "128",
            "--verbose",
            "False",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"llama.cpp server exited: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}/v1"
    proc.terminate()
    proc.wait(timeout=10)


def flip(server, out, *args):
    return runner.invoke(
        app,
        [
            "flip",
            "--base-url",
            server,
            "--model",
            "tiny",
            "--out",
            str(out),
            "--json",  # not -q: the tests read the notes (how the target was matched)
            *map(str, args),
        ],
        env=ENV,
    )


def only_run(out: Path):
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return read_run(run_dir)


def test_cpu_llama_cpp_is_deterministic_and_sends_no_fingerprint(server, tmp_path):
    result = flip(server, tmp_path, "--n", 60, "--concurrency", 4)
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    # one request at a time on the CPU: one value, where GPT-4o gave 42
    assert data["n"] == 60 and data["distinct"] == 1
    assert data["fingerprints"] == {"null": 60}  # no system_fingerprint key at all
    assert data["target"] == "Heads" and data["top_token"]["modal_token"] == "Heads"
    assert "exact match among the tokens the endpoint returned" in result.stderr
    run = only_run(tmp_path)
    top = run.table.column("top_logprobs")[0].as_py()
    assert all(e["bytes"] is None for e in top)  # bytes: null
    assert any(e["token"] == " Heads" for e in top)  # the leading space is kept
    # fewer than the 20 asked for: texts collide on this vocabulary, and we say so
    assert len(top) < 20 and "not the 20 asked for" in result.stderr
    lp = top[0]["logprob"]
    assert float(__import__("numpy").float32(lp)) == lp  # a float32 widened to double


def test_label_matched_with_leading_space_and_override(server, tmp_path):
    spaced = flip(
        server, tmp_path / "a", "--n", 5, "--labels", "Tails,Heads", "--target-token", " Tails"
    )
    assert spaced.exit_code == 0, spaced.stderr
    assert json.loads(spaced.stdout)["target"] == " Tails"
    lower = flip(server, tmp_path / "b", "--n", 5, "--labels", "heads")
    assert lower.exit_code == 0, lower.stderr
    assert json.loads(lower.stdout)["target"] == "Heads"  # matched ignoring case
    assert "ignoring case" in lower.stderr


def test_legacy_completions_api(server, tmp_path):
    result = flip(server, tmp_path, "--n", 8, "--api", "completions", "--prompt", "Flip a coin:")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["n"] == 8 and data["distinct"] == 1
    run = only_run(tmp_path)
    assert run.meta["api"] == "completions" and run.meta["request"]["prompt"] == "Flip a coin:"
    assert len(run.table.column("top_logprobs")[0].as_py()) > 1


def test_probe(server):
    result = runner.invoke(
        app, ["probe", "--base-url", server, "--model", "tiny", "--json"], env=ENV
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["top_logprobs_requested"] == 20
    assert 1 < data["top_logprobs_returned"] < 20
    assert data["system_fingerprint"] is False
    assert data["seed_accepted"] is True
    assert data["temperature_semantics"] == "raw"  # llama.cpp reports raw logprobs
    assert data["completions_api"] is True


def test_sweep(server, tmp_path):
    result = runner.invoke(
        app,
        [
            "sweep",
            "--base-url",
            server,
            "--model",
            "tiny",
            "--n",
            "20",
            "--concurrency",
            "1,4",
            "--out",
            str(tmp_path),
            "--json",
        ],
        env=ENV,
    )
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)["levels"]
    assert [(r["concurrency"], r["n"], r["distinct"]) for r in rows] == [(1, 20, 1), (4, 20, 1)]
    levels = sorted(read_run(Path(r["run_path"])).meta["tags"]["sweep_concurrency"] for r in rows)
    assert levels == [1, 4]
