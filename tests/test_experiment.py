"""Experiment files: valid, invalid (file, line, field named), several endpoints."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from detcheck.cli import app
from detcheck.store import read_run
from fake_openai import FakeOpenAI

runner = CliRunner()


def run(path, out, env=None):
    return runner.invoke(app, ["run", str(path), "--out", str(out), "--json"], env=env)


def test_two_endpoints_each_with_its_own_key(tmp_path):
    with FakeOpenAI() as a, FakeOpenAI() as b:
        exp = tmp_path / "nightly.toml"
        exp.write_text(f"""
[defaults]
n = 12
thresholds = [0.01, 0.001]
concurrency = 4

[[measurement]]
name = "a"
base_url = "{a.base_url}"
api_key_env = "KEY_A"

[[measurement]]
name = "b"
base_url = "{b.base_url}"
api_key_env = "KEY_B"
model = "some-local-model"
target_token = "Heads"
n = 7
""")
        result = run(exp, tmp_path / "runs", env={"KEY_A": "sk-a-123456789", "KEY_B": "kb"})
    assert result.exit_code == 0, result.stderr
    summaries = json.loads(result.stdout)["measurements"]
    assert [(s["name"], s["n"]) for s in summaries] == [("a", 12), ("b", 7)]
    assert a.headers[0]["authorization"] == "Bearer sk-a-123456789"
    assert b.headers[0]["authorization"] == "Bearer kb"
    assert b.requests[0]["model"] == "some-local-model"
    paths = sorted((tmp_path / "runs").glob("model=*/date=*/*"))
    assert [p.parent.parent.name for p in paths] == [
        "model=gpt-4o-2024-08-06",
        "model=some-local-model",
    ]
    assert read_run(paths[1]).meta["endpoint"] == b.base_url
    assert "a: 12 responses" in result.stderr  # one summary line per measurement


def test_a_failing_measurement_does_not_stop_the_others(tmp_path, recording):
    exp = tmp_path / "e.toml"
    exp.write_text(f"""
[[measurement]]
name = "needs-key"
base_url = "http://127.0.0.1:9/v1"
api_key_env = "DETCHECK_TEST_UNSET_KEY"

[[measurement]]
name = "replayed"
replay = "{recording}"
n = 20
""")
    result = run(exp, tmp_path / "runs")
    assert result.exit_code == 3
    summaries = json.loads(result.stdout)["measurements"]
    assert "DETCHECK_TEST_UNSET_KEY is not set" in summaries[0]["error"]
    assert summaries[1]["n"] == 20


def test_invalid_files_name_file_line_and_field(tmp_path):
    cases = {
        "syntax.toml": ('[[measurement]]\nname = "x\n', "not valid TOML"),
        "type.toml": (
            '[[measurement]]\nname = "x"\nbase_url = "http://h/v1"\nn = "ten"\n',
            ":4: field 'n' must be an integer",
        ),
        "unknown.toml": (
            '[[measurement]]\nname = "x"\nbase_url = "http://h/v1"\n\nmodle = "m"\n',
            ":5: unknown field 'modle'",
        ),
        "defaults.toml": (
            '[defaults]\nthresholds = [-1]\n[[measurement]]\nbase_url = "http://h"\n',
            ":2: field 'thresholds' must be >= 0, got -1",
        ),
        "empty.toml": ("[defaults]\nn = 5\n", "no [[measurement]]"),
        "seed.toml": (
            '[[measurement]]\nbase_url = "http://h/v1"\nseed = true\n',
            ":3: field 'seed' must be an integer, or false to send none",
        ),
        "no-url.toml": ('[[measurement]]\nname = "x"\n', ":2: needs 'base_url'"),
        "twice.toml": (
            '[[measurement]]\nname = "x"\nbase_url = "http://h"\n'
            '[[measurement]]\nname = "x"\nbase_url = "http://h"\n',
            ":5: field 'name': 'x' is used twice",
        ),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        result = runner.invoke(app, ["run", str(path)])
        assert result.exit_code == 2, name
        assert result.stderr.startswith(f"detcheck: error: {path}"), result.stderr
        assert message in result.stderr, (name, result.stderr)


def test_seed_false_sends_no_seed(tmp_path):
    with FakeOpenAI() as server:
        exp = tmp_path / "e.toml"
        exp.write_text(f'[[measurement]]\nbase_url = "{server.base_url}"\nn = 3\nseed = false\n')
        result = run(exp, tmp_path / "runs", env={"OPENAI_API_KEY": "sk-test-123456789"})
    assert result.exit_code == 0, result.stderr
    assert server.requests and all("seed" not in r for r in server.requests)
    (path,) = (tmp_path / "runs").glob("model=*/date=*/*")
    assert read_run(path).meta["config"]["seed"] is None
