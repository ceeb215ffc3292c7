"""The Python API, the assertion helpers and the pytest plugin, as a user's code calls them."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import openai
import pytest
from typer.testing import CliRunner

import detcheck
import detcheck.testing
from detcheck.cli import app
from fake_openai import FakeOpenAI, coin_flip_any_api

runner = CliRunner()


def _cli_json(*args) -> dict:
    result = runner.invoke(app, [*map(str, args), "--json"])
    assert result.exit_code in (0, 1), result.stderr
    return json.loads(result.stdout)


def test_analyze_returns_the_json_report_with_attributes(recording):
    report = detcheck.analyze(recording, thresholds=[0.01, 0.001])
    assert report.to_dict() == _cli_json(
        "analyze", recording, "--threshold", 0.01, "--threshold", 0.001
    )
    assert report.distinct == 42 and len(report.clusters) == 12 and report.modal["count"] == 3391
    assert report["by_threshold"] == {"0.01": 12, "0.001": 13}
    with pytest.raises(AttributeError, match="no 'nonsense'"):
        report.nonsense  # noqa: B018
    assert report.headline in report._repr_html_()  # a notebook shows the page's body
    import copy
    import pickle

    assert pickle.loads(pickle.dumps(report)).to_dict() == copy.deepcopy(report).to_dict()
    frame = report.to_pandas()
    assert len(frame) == 42 and frame["count"].sum() == 10_000
    assert frame["cluster"].nunique() == 12


def test_flip_runs_from_code_and_from_inside_a_running_loop(recording, tmp_path):
    result = detcheck.flip(n=30, replay=recording, out=tmp_path, thresholds=0.01)
    assert result.report.n == 30 and not result.interrupted
    assert detcheck.analyze(result.run_path).n == 30

    async def notebook_cell():  # a notebook runs cells inside an event loop
        return detcheck.flip(n=20, replay=recording, out=tmp_path)

    assert asyncio.run(notebook_cell()).report.n == 20


def test_flip_against_an_endpoint_with_spec_parameters(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with FakeOpenAI(coin_flip_any_api) as server:
        result = detcheck.flip(
            n=12, base_url=server.base_url, api="responses", labels="Heads,Tails", out=tmp_path
        )
    assert result.report.n == 12 and server.paths[0] == "/v1/responses"


def test_generate_from_code(tmp_path, monkeypatch):
    from fake_openai import Story, story_reply

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with FakeOpenAI(story_reply(Story())) as server:
        result = detcheck.generate(n=10, base_url=server.base_url, out=tmp_path)
    assert result.report.n == 10 and result.report.unique_completions >= 1
    assert len(result.run_paths) == 1


def test_compare_returns_drift_findings_and_the_json(recording, tmp_path):
    run = detcheck.flip(n=300, replay=recording, out=tmp_path).run_path
    result = detcheck.compare(recording, run)
    assert result.drift is False and isinstance(result.findings, list)
    expected = _cli_json("compare", recording, run)
    assert result.to_dict() == expected and "detcheck compare: no drift" in result.text


def test_errors_are_the_cli_family_importable_from_detcheck(tmp_path):
    with pytest.raises(detcheck.DataError, match="no such file"):
        detcheck.analyze(tmp_path / "nothing")
    with pytest.raises(detcheck.UsageError, match="unknown parameter 'temprature'"):
        detcheck.flip(temprature=0.5)
    with pytest.raises(detcheck.UsageError, match="--n must be at least 1"):
        detcheck.flip(n=0)
    assert issubclass(detcheck.EndpointError, detcheck.DetcheckError)


def test_import_detcheck_loads_none_of_the_heavy_libraries():
    heavy = "('openai', 'pyarrow', 'numpy', 'pandas')"
    code = f"import sys, detcheck; print(sorted(m for m in {heavy} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_assertion_helpers_say_what_they_found(recording, tmp_path):
    with pytest.raises(
        AssertionError,
        match=r"42 distinct 'Heads' probabilities in 10,000 calls, at most 10 expected: 85\.18",
    ):
        detcheck.testing.assert_distinct_at_most(recording, 10)
    detcheck.testing.assert_distinct_at_most(recording, 42)
    few = detcheck.flip(n=40, replay=recording, out=tmp_path / "few").run_path
    detcheck.testing.assert_no_drift(recording, few)
    fewer = tmp_path / "fewer"  # 300 calls cannot show all 42 values: "values" finds it
    runner.invoke(app, ["flip", "-n", "300", "--replay", str(recording), "-o", str(fewer), "-q"])
    with pytest.raises(AssertionError, match="drifted from"):
        detcheck.testing.assert_no_drift(recording, fewer, fail_on="values", alpha=0.5)


def test_the_replay_fixture_serves_the_responses_api_and_generations(
    detcheck_replay, tmp_path, monkeypatch
):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with FakeOpenAI(coin_flip_any_api) as server:
        recorded = detcheck.flip(n=5, base_url=server.base_url, api="responses", out=tmp_path)
        sent = [r["input"] for r in server.requests]
    client = openai.OpenAI(base_url=detcheck_replay(recorded.run_path), api_key="unused")
    replies = [
        client.responses.create(
            model="gpt-4o", input=sent[0], include=["message.output_text.logprobs"]
        )
        for _ in range(5)
    ]
    assert [r.output_text for r in replies] == ["Heads"] * 5
    story = detcheck_replay("recordings/story-generate-200")
    chat = openai.OpenAI(base_url=story, api_key="unused")
    texts = {
        chat.chat.completions.create(model="m", messages=[]).choices[0].message.content
        for _ in range(20)
    }
    assert len(texts) >= 1 and all(len(t) > 10 for t in texts)


def test_the_readme_shows_the_example_test_the_suite_runs():
    from pathlib import Path

    root = Path(__file__).parent.parent
    example = (root / "tests" / "test_example_pytest.py").read_text()
    assert example.strip() in (root / "docs" / "python.md").read_text()
