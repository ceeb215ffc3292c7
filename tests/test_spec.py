"""One measurement spec: every command that sends requests takes its options from detcheck.spec,
with one name, one default and one validation; experiment files and --resume follow it too."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from detcheck import spec
from detcheck.cli import app
from detcheck.commands import FlipOptions
from detcheck.commands.experiment_file import FIELDS
from detcheck.store import read_run
from fake_openai import FakeOpenAI

runner = CliRunner()
KEY = "sk-test-spec-0123456789abcdef"


def options_of(command: str) -> dict:
    """The options of a command as typer built them, by their Python name."""
    found = typer.main.get_command(app).commands[command]
    return {p.name: p for p in found.params if p.param_type_name == "option"}


@pytest.mark.parametrize("command", ["flip", "sweep", "probe"])
def test_every_sending_command_takes_the_spec_options_as_defined(command):
    options = options_of(command)
    expected = {
        "flip": set(spec.PARAMS),
        # sweep sets its own concurrency levels and starts new runs only
        "sweep": set(spec.PARAMS) - {"concurrency", "resume"},
        "probe": {"model", "prompt", "labels", "target_token", "seed", "no_seed"}
        | {"top_logprobs", "api", "base_url", "timeout_s"},
    }[command]
    assert expected <= set(options), expected - set(options)
    for name in expected:
        param, option = spec.PARAMS[name], options[name]
        assert param.option in option.opts, (name, option.opts)
        # not given is None, so a resumed or replayed run's own value can apply first
        assert option.default in (None, False), (name, option.default)
        assert option.help.startswith(param.help[:30]) or command == "probe", name


def test_the_options_the_design_review_found_missing_are_there():
    assert {"labels", "seed", "no_seed", "top_logprobs", "rpm"} <= set(options_of("sweep"))
    assert {"api", "no_seed"} <= set(options_of("probe"))
    for command in ("analyze", "compare", "history", "plot", "flip", "sweep"):
        threshold = options_of(command)["thresholds"]
        assert threshold.multiple, command  # several thresholds wherever clustering happens


def test_options_files_and_flip_options_name_the_same_parameters():
    fields = {f.name for f in dataclasses.fields(FlipOptions)}
    assert set(spec.PARAMS) <= fields
    file_params = {name for name, p in spec.PARAMS.items() if p.in_file}
    assert file_params <= set(FIELDS)
    # what a file cannot say, it says otherwise: no_seed is `seed = false`, out is run's --out
    assert set(spec.PARAMS) - file_params == {"no_seed", "resume", "out"}


def test_one_default_threshold_and_several_wherever_clustering_happens(recording):
    default = format(spec.DEFAULT_THRESHOLD, "g")
    path = str(recording)
    analyze = json.loads(runner.invoke(app, ["analyze", path, "--json"]).stdout)
    history = json.loads(runner.invoke(app, ["history", path, "--json"]).stdout)["runs"]
    compare = json.loads(runner.invoke(app, ["compare", path, path, "--json"]).stdout)
    assert analyze["threshold"] == spec.DEFAULT_THRESHOLD
    assert list(analyze["by_threshold"]) == [default]
    assert list(history[0]["by_threshold"]) == [default]
    assert list(compare["by_threshold"]) == [default]

    several = ["--threshold", "0.01", "--threshold", "0.001"]
    history = json.loads(runner.invoke(app, ["history", path, "--json", *several]).stdout)["runs"]
    assert history[0]["by_threshold"] == {"0.01": 12, "0.001": 13}  # as analyze finds
    result = runner.invoke(app, ["compare", path, path, "--json", *several])
    assert result.exit_code == 0, result.stderr
    compare = json.loads(result.stdout)
    assert [len(compare["by_threshold"][t]["clusters"]) for t in ("0.01", "0.001")] == [12, 13]
    assert "cluster (%) at 0.001 pp" in result.stderr  # the markdown shows each table


def test_help_is_grouped_and_flags_carry_no_type_label():
    result = runner.invoke(app, ["flip", "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0
    text = result.stdout
    for group in ("Request", "Run control", "Output"):
        assert f"─ {group} " in text, group
    assert text.index("─ Request ") < text.index("--model") < text.index("─ Run control ")
    for flag in ("--no-seed", "--quiet", "--json", "--debug"):
        line = next(x for x in text.splitlines() if flag + " " in x)
        assert "<bool>" not in line, line
    assert "INTEGER" in next(x for x in text.splitlines() if "--n " in x)


@pytest.mark.parametrize(
    ("flag", "value", "field", "message"),
    [
        ("--n", "0", "n = 0", "must be at least 1, got 0"),
        ("--top-logprobs", "21", "top_logprobs = 21", "must be between 0 and 20, got 21"),
        ("--concurrency", "0", "concurrency = 0", "must be at least 1, got 0"),
        ("--rpm", "-5", "rpm = -5", "must be positive, got -5"),
        ("--temperature", "-1", "temperature = -1", "must be >= 0, got -1"),
        ("--max-tokens", "0", "max_tokens = 0", "must be at least 1, got 0"),
        ("--timeout", "0", "timeout_s = 0", "must be positive, got 0"),
        ("--api", "chatty", 'api = "chatty"', "must be one of chat, completions, responses"),
    ],
)
def test_one_validation_for_the_cli_and_experiment_files(tmp_path, flag, value, field, message):
    cli = runner.invoke(app, ["flip", flag, value, "--out", str(tmp_path)])
    assert cli.exit_code == 2, cli.stderr
    assert message in cli.stderr and flag in cli.stderr
    path = tmp_path / "exp.toml"
    path.write_text(f'[[measurement]]\nname = "x"\nbase_url = "http://h/v1"\n{field}\n')
    from_file = runner.invoke(app, ["run", str(path), "--out", str(tmp_path)])
    assert from_file.exit_code == 2, from_file.stderr
    assert f":4: field {field.split(' ')[0]!r} {message}" in from_file.stderr


def test_an_experiment_file_takes_every_field_the_cli_has(tmp_path):
    with FakeOpenAI() as server:
        path = tmp_path / "exp.toml"
        path.write_text(
            f"""
[[measurement]]
name = "everything"
base_url = "{server.base_url}"
api_key_env = "SPEC_TEST_KEY"
n = 6
concurrency = 2
rpm = 6000
max_attempts = 3
backoff_s = 0.01
max_backoff_s = 0.02
timeout_s = 5
temperature = 0.5
seed = 7
top_logprobs = 5
max_tokens = 1
labels = ["Heads", "Tails"]
thresholds = [0.01, 0.5]
"""
        )
        result = runner.invoke(
            app,
            ["run", str(path), "--out", str(tmp_path / "runs"), "--json"],
            env={"SPEC_TEST_KEY": KEY},
        )
    assert result.exit_code == 0, result.stderr
    (summary,) = json.loads(result.stdout)["measurements"]
    assert summary["n"] == 6 and set(summary["by_threshold"]) == {"0.01", "0.5"}
    assert {(r["seed"], r["top_logprobs"], r["temperature"]) for r in server.requests} == {
        (7, 5, 0.5)
    }
    meta = read_run(summary["run_path"]).meta
    assert (meta["concurrency"], meta["rpm"], meta["timeout_s"]) == (2, 6000, 5)
    assert meta["retry_policy"]["max_attempts"] == 3


def test_sweep_sends_what_it_is_given(tmp_path):
    with FakeOpenAI() as server:
        result = runner.invoke(
            app,
            [
                "sweep",
                "--concurrency",
                "1,2",
                "--n",
                "4",
                "--seed",
                "9",
                "--top-logprobs",
                "3",
                "--labels",
                "Heads,Tails",
                "--rpm",
                "60000",
                "--out",
                str(tmp_path),
                "--json",
            ],
            env={"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": server.base_url},
        )
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)["levels"]
    assert [(r["concurrency"], r["n"]) for r in rows] == [(1, 4), (2, 4)]
    assert {(r["seed"], r["top_logprobs"]) for r in server.requests} == {(9, 3)}
    assert read_run(rows[1]["run_path"]).meta["rpm"] == 60000


def test_resume_keeps_the_runs_own_run_control_and_refuses_a_new_measurement(tmp_path):
    with FakeOpenAI() as server:
        env = {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": server.base_url}
        first = runner.invoke(
            app,
            [
                "flip",
                "--n",
                "6",
                "--rpm",
                "6000",
                "--concurrency",
                "3",
                "--timeout",
                "7",
                "--out",
                str(tmp_path),
                "-q",
                "--json",
            ],
            env=env,
        )
        assert first.exit_code == 0, first.stderr
        run_dir = json.loads(first.stdout)["run_path"]
        refused = runner.invoke(
            app, ["flip", "--resume", run_dir, "--top-logprobs", "5", "--n", "7"], env=env
        )
        assert refused.exit_code == 2
        assert "--top-logprobs 5 (stored 20)" in refused.stderr
        assert "--n 7 (stored 6)" in refused.stderr
        # an unfinished run of the same kind: resumed with its own rpm and timeout, a new
        # concurrency because one was given
        meta_path = Path(run_dir) / "_run.json"
        meta = json.loads(meta_path.read_text())
        meta["n_requested"] = 9
        meta_path.write_text(json.dumps(meta))
        resumed = runner.invoke(
            app, ["flip", "--resume", run_dir, "--concurrency", "2", "-q", "--json"], env=env
        )
    assert resumed.exit_code == 0, resumed.stderr
    meta = read_run(run_dir).meta
    (session,) = meta["resumed"]
    assert (session["concurrency"], session["rpm"]) == (2, 6000)
    assert json.loads(resumed.stdout)["n"] == 9


def test_an_api_shape_is_one_module_found_by_its_file():
    from detcheck.shapes import SHAPES

    assert list(SHAPES) == spec.shape_names() == ["chat", "completions", "responses"]
    for name, module in SHAPES.items():
        assert module.NAME == name == module.__name__.rsplit(".", 1)[-1]
        assert module.PATH.startswith("/") and isinstance(module.TAKES_SEED, bool)
        assert callable(module.request_body) and callable(module.parse)
    # --api takes exactly those, and says which
    result = runner.invoke(app, ["flip", "--api", "batch", "--replay", "nowhere"])
    assert result.exit_code == 2
    assert "--api must be one of chat, completions, responses, got 'batch'" in result.stderr
