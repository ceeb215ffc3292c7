"""Spend control: --max-cost refuses, --dry-run sends nothing, a terminal is asked before a big
run, experiment files take max_cost, and a resume is held to the limit too."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from detcheck.cli import app
from detcheck.commands import FlipOptions, flip_command
from fake_openai import FakeOpenAI

runner = CliRunner()
KEY = {"OPENAI_API_KEY": "sk-test"}
# gpt-4o at list prices: 18 prompt + 1 completion tokens is $0.000055 a call, so 100,000 calls
# are $5.50 and 1,000 calls $0.055


def test_max_cost_refuses_to_start_naming_the_estimate(tmp_path):
    with FakeOpenAI() as server:
        args = ["flip", "-n", "100000", "--base-url", server.base_url, "--out", str(tmp_path)]
        result = runner.invoke(app, [*args, "--max-cost", "1"], env=KEY)
        assert result.exit_code == 2
        assert "estimated at up to $5.50, above --max-cost $1.00" in result.stderr
        assert server.requests == [] and not list(tmp_path.iterdir())  # nothing sent or kept
        small = runner.invoke(app, [*args[:2], "20", *args[3:], "--max-cost", "1", "-q"], env=KEY)
        assert small.exit_code == 0, small.stderr
        assert len(server.requests) == 20


def test_max_cost_cannot_be_checked_without_a_price(tmp_path):
    with FakeOpenAI() as server:
        args = ["flip", "-n", "5", "--base-url", server.base_url, "--model", "my-local-model"]
        result = runner.invoke(app, [*args, "--max-cost", "1"], env=KEY)
    assert result.exit_code == 2 and "no list price is known" in result.stderr
    assert server.requests == []


def test_dry_run_prints_the_plan_and_sends_nothing_without_a_key(tmp_path):
    result = runner.invoke(
        app, ["flip", "-n", "100000", "--dry-run", "--json", "--out", str(tmp_path)], env={}
    )
    assert result.exit_code == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["requests"] == 100_000 and plan["prompt_tokens_per_request"] == 18
    assert abs(plan["estimated_cost_usd"] - 5.5) < 1e-9
    assert "dry run: nothing was sent" in result.stderr and not list(tmp_path.iterdir())
    gen = runner.invoke(app, ["generate", "-n", "10", "--dry-run", "--json"], env={})
    assert json.loads(gen.stdout)["completion_tokens_per_request"] == 128


def test_a_big_run_is_confirmed_before_anything_is_sent(tmp_path, monkeypatch):
    from detcheck.errors import UsageError

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    asked = []
    with FakeOpenAI() as server:
        options = FlipOptions(
            n=100_000,
            base_url=server.base_url,
            out=tmp_path,
            progress=False,
            confirm=lambda question: asked.append(question) or False,  # the user says no
        )
        with pytest.raises(UsageError, match="not started: nothing was sent"):
            flip_command(options, log=lambda _: None)
        assert server.requests == []
    assert asked and "$5.50" in asked[0]


def test_yes_skips_the_question_and_no_terminal_is_never_asked():
    from detcheck.cli.output import asker

    assert asker(yes=True) is None
    assert asker(yes=False) is None  # under pytest stdin is not a terminal


def test_experiment_files_take_max_cost(tmp_path):
    with FakeOpenAI() as server:
        exp = tmp_path / "e.toml"
        exp.write_text(
            f'[[measurement]]\nname = "big"\nbase_url = "{server.base_url}"\n'
            "n = 100000\nmax_cost = 0.5\n"
        )
        result = runner.invoke(app, ["run", str(exp), "--out", str(tmp_path), "--json"], env=KEY)
        assert server.requests == []
    assert result.exit_code == 3
    (summary,) = json.loads(result.stdout)["measurements"]
    assert "above --max-cost $0.5000" in summary["error"]


def test_a_resume_is_held_to_max_cost_for_what_is_left(tmp_path):
    with FakeOpenAI() as server:
        args = ["flip", "-n", "20", "--base-url", server.base_url, "--out", str(tmp_path), "-q"]
        assert runner.invoke(app, args, env=KEY).exit_code == 0
        (run_dir,) = tmp_path.iterdir()
        meta = json.loads((run_dir / "_run.json").read_text())
        meta.update(n_requested=200_020, status="interrupted")  # a big run, stopped early
        (run_dir / "_run.json").write_text(json.dumps(meta))
        resume = ["flip", "--resume", str(run_dir), "--max-cost", "1", "-q"]
        result = runner.invoke(app, resume, env=KEY)
        assert len(server.requests) == 20  # nothing more was sent
    assert result.exit_code == 2
    assert "estimated at up to $11.00, above --max-cost" in result.stderr


def test_a_sweep_is_held_to_max_cost_as_a_whole(tmp_path):
    # 3 levels of 1,000 calls: $0.055 each, $0.165 the sweep. A cap of $0.10 covers any one
    # level: held to it level by level, the sweep sent all 3,000
    args = ["sweep", "--concurrency", "1,2,4", "-n", "1000", "--out", str(tmp_path), "-q"]
    with FakeOpenAI() as server:
        env = {**KEY, "OPENAI_BASE_URL": server.base_url}
        plan = runner.invoke(app, [*args, "--dry-run", "--json"], env=env)
        assert plan.exit_code == 0, plan.stderr
        data = json.loads(plan.stdout)
        assert data["requests"] == 3000 and round(data["estimated_cost_usd"], 4) == 0.165
        refused = runner.invoke(app, [*args, "--max-cost", "0.10"], env=env)
        assert refused.exit_code == 2, refused.stderr
        assert "estimated at up to $0.1650, above --max-cost $0.1000" in refused.stderr
        assert server.requests == [] and not list(tmp_path.iterdir())
        done = runner.invoke(app, [*args[:4], "10", *args[5:], "--max-cost", "0.10"], env=env)
        assert done.exit_code == 0, done.stderr
        assert len(server.requests) == 30
