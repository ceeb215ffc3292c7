"""What a first-time user meets when the endpoint is not there or the key is missing."""

from __future__ import annotations

import json
import socket

from typer.testing import CliRunner

from detcheck.cli import app

runner = CliRunner()


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_endpoint_fails_after_a_few_refusals_and_history_shows_it(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    args = ["flip", "-n", "50", "--base-url", url, "--out", str(tmp_path), "-q", "--json"]
    result = runner.invoke(app, [*args, "--concurrency", "1"], env={"OPENAI_API_KEY": "unused"})
    assert result.exit_code == 3, result.stderr
    assert json.loads(result.stdout)["error"].startswith(f"cannot reach {url}")
    assert "Is the server running" in result.stderr
    (run_dir,) = tmp_path.iterdir()
    meta = json.loads((run_dir / "_run.json").read_text())
    # 3 refusals, each recorded, then stopped (not 6 attempts per call with full backoff)
    assert meta["status"] == "failed" and meta["attempts"] == 3 and meta["successes"] == 0
    history = runner.invoke(app, ["history", str(tmp_path)])
    assert history.exit_code == 0 and " failed " in history.stdout


def test_a_local_base_url_without_a_key_suggests_one(tmp_path):
    for url in ("http://127.0.0.1:8000/v1", "http://localhost:8080/v1", "http://10.0.0.5/v1"):
        result = runner.invoke(app, ["flip", "--base-url", url], env={"OPENAI_API_KEY": ""})
        assert result.exit_code == 2
        assert "OPENAI_API_KEY=unused" in result.stderr, url
    remote = runner.invoke(app, ["flip"], env={"OPENAI_API_KEY": ""})
    assert remote.exit_code == 2 and "=unused" not in remote.stderr
    assert "--replay recordings/" in remote.stderr  # the offline demo instead
