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
    args += ["--model", "m"]  # without it, asking the server what it serves finds it gone first
    result = runner.invoke(app, [*args, "--concurrency", "1"], env={"OPENAI_API_KEY": "unused"})
    assert result.exit_code == 3, result.stderr
    assert json.loads(result.stdout)["error"].startswith(f"cannot reach {url}")
    assert "Is the server running" in result.stderr
    (run_dir,) = tmp_path.iterdir()
    meta = json.loads((run_dir / "_run.json").read_text())
    # 3 refusals, each recorded, then stopped (not 6 attempts per call with full backoff)
    assert meta["status"] == "failed" and meta["attempts"] == 3 and meta["successes"] == 0
    history = runner.invoke(app, ["history", str(tmp_path)])
    assert history.exit_code == 0 and "(failed)" in history.stdout  # under its start


def test_an_unreachable_server_without_model_is_said_so_before_any_run(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    args = ["flip", "-n", "50", "--base-url", url, "--out", str(tmp_path), "-q"]
    result = runner.invoke(app, args, env={"OPENAI_API_KEY": "unused"})
    assert result.exit_code == 3
    assert result.stderr.startswith(f"detcheck: error: cannot reach {url}: connection to {url} ")
    assert result.stderr.rstrip().endswith("Is the server running, and is --base-url right?")
    assert list(tmp_path.iterdir()) == []


def test_a_local_base_url_without_a_key_suggests_one(tmp_path):
    for url in ("http://127.0.0.1:8000/v1", "http://localhost:8080/v1", "http://10.0.0.5/v1"):
        result = runner.invoke(app, ["flip", "--base-url", url], env={"OPENAI_API_KEY": ""})
        assert result.exit_code == 2
        assert "OPENAI_API_KEY=unused" in result.stderr, url
    remote = runner.invoke(app, ["flip"], env={"OPENAI_API_KEY": ""})
    assert remote.exit_code == 2 and "=unused" not in remote.stderr
    assert remote.stderr == (
        "detcheck: error: OPENAI_API_KEY is not set. Export it, or try the offline demo: "
        "detcheck flip --n 10000 --replay gpt-4o-coinflip\n"
    )


def test_the_suggested_demo_works_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no recordings/ here: the recording ships in the package
    refused = runner.invoke(app, ["flip"], env={"OPENAI_API_KEY": ""})
    suggested = refused.stderr.split("try the offline demo: ", 1)[1].split()
    assert suggested[:2] == ["detcheck", "flip"]
    demo = runner.invoke(app, [*suggested[1:], "-n", "300", "-q"])  # the last -n counts
    assert demo.exit_code == 0, demo.stderr
    assert "in 300 calls" in demo.stdout and "gpt-4o-2024-08-06" in demo.stdout
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert json.loads((run_dir / "_run.json").read_text())["replay_of"] == "gpt-4o-coinflip"


def test_the_shipped_recording_is_read_by_name_everywhere_a_run_is(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    analysed = runner.invoke(app, ["analyze", "gpt-4o-coinflip", "--json"])
    assert analysed.exit_code == 0, analysed.stderr
    assert json.loads(analysed.stdout)["distinct"] == 42
    page = runner.invoke(app, ["report", "gpt-4o-coinflip", "-o", "page.html"])
    assert page.exit_code == 0 and (tmp_path / "page.html").is_file()
    # a directory of that name here is what the user means: it wins over the shipped one
    (tmp_path / "gpt-4o-coinflip").mkdir()
    mine = runner.invoke(app, ["analyze", "gpt-4o-coinflip"])
    assert mine.exit_code == 2 and "gpt-4o-coinflip: no detcheck runs in" in mine.stderr


def test_the_path_to_the_recording_still_works(recording):
    result = runner.invoke(app, ["flip", "-n", "50", "--replay", str(recording), "-q", "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["n"] == 50


def test_help_opens_with_how_to_start():
    text = runner.invoke(app, ["--help"], env={"COLUMNS": "80"}).stdout
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    start = lines.index("Start here, no key (GPT-4o's coin flip, rebuilt from published figures):")
    assert lines[start + 1] == "detcheck flip --n 10000 --replay gpt-4o-coinflip"
    assert lines[start + 2] == "Then your endpoint (OpenAI-compatible; its key in OPENAI_API_KEY):"
    assert lines[start + 3] == "detcheck flip --base-url http://localhost:8000/v1 --model NAME"
    assert text.index("Start here") < text.index("Commands")
