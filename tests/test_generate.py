"""`detcheck generate`: whole generations over loopback, against a fake whose ground truth is
known (fake_openai.Story): how many completions, where they part, the near-tie there, the drift
before it; in every API shape; prompt sets (TARr@N, TARa@N); replay, show, history, compare."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from detcheck.analysis.generations import GENERATE_REPORT_VERSION
from detcheck.cli import app
from detcheck.store import read_run
from fake_openai import FakeOpenAI, Reply, Story, story_reply

runner = CliRunner()
KEY = "sk-test-generate-0123456789"
STORY = Story()
N = 100

SINGLE_PROMPT_KEYS = {
    "kind", "report_version", "models", "max_tokens", "runs", "n", "max_tokens_seen",
    "unique_completions", "completions", "modal_completion", "first_divergence",
    "common_prefix_tokens", "splits", "positions", "lengths", "finish_reasons", "unseen",
    "fingerprints", "errors", "errors_by_type", "prompts", "agreement", "headline", "measured",
    "flags",
}  # fmt: skip


def generate(server, out, *args):
    return runner.invoke(
        app,
        ["generate", "--out", str(out), "-q", "--json", *map(str, args)],
        env={"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": server.base_url},
    )


def check_story(data: dict, n: int = N, story: Story = STORY) -> None:
    """What the story's ground truth says the report must say."""
    assert data["n"] == n
    assert data["unique_completions"] == story.unique_completions(n) == 3
    diverged = {p: sum(story.branch_of(i) == p for i in range(n)) for _, _, p in story.branches}
    assert data["first_divergence"]["by_position"] == {str(p): c for p, c in diverged.items()}
    assert data["first_divergence"]["diverged"] == sum(diverged.values())
    assert (data["first_divergence"]["min"], data["first_divergence"]["max"]) == (5, 17)
    assert data["common_prefix_tokens"] == 5
    assert data["modal_completion"]["count"] == n - sum(diverged.values())
    assert [c["first_divergence"] for c in data["completions"]] == [None, 17, 5]
    # the splits, read along the modal path, and the near-tie that explains each
    assert [s["position"] for s in data["splits"]] == [5, 17]
    for split in data["splits"]:
        assert split["top_gap_logprob"] == pytest.approx(story.tie_gap)
        assert sum(t["count"] for t in split["tokens"]) == split["responses"]
    assert data["splits"][0]["responses"] == n
    # drift before any flip: bit-distinct logprobs of the same token at the jittered positions
    by_position = {p["position"]: p for p in data["positions"]}
    for p in range(story.length):
        expected = story.jitter if p < story.jitter_until else 1
        assert by_position[p]["distinct_logprobs"] == expected, p
    assert by_position[5]["distinct_tokens"] == 2 and by_position[6]["distinct_tokens"] == 1
    assert data["lengths"] == {"min": 40, "median": 40.0, "max": 40}


def test_a_story_told_100_times_over_chat(tmp_path):
    with FakeOpenAI(story_reply()) as server:
        result = generate(server, tmp_path, "--n", N, "--concurrency", 8)
    assert result.exit_code == 0, result.stderr
    # the defaults of a generate measurement
    request = server.requests[0]
    assert (request["max_tokens"], request["top_logprobs"], request["seed"]) == (128, 5, 42)
    assert request["temperature"] == 0.0 and request["logprobs"] is True
    data = json.loads(result.stdout)
    assert set(data) == SINGLE_PROMPT_KEYS | {"run_path", "run_paths"}
    assert data["report_version"] == GENERATE_REPORT_VERSION
    check_story(data)
    assert data["finish_reasons"] == {"stop": N} and data["fingerprints"] == {"fp_story": N}
    assert data["headline"].startswith(
        "3 different completions in 100 calls; all agree for their first 5 tokens"
    )
    assert "near-tie (gap 0.002 nats) at position 5" in data["headline"]
    assert "split at    5: ' w5' 96, ' x5' 4" in result.stderr  # the text report

    run = read_run(data["run_path"])
    assert run.meta["config"]["kind"] == "generate"
    ok = run.table.filter(run.table.column("ok"))
    assert ok.column("gen_tokens")[0].as_py()[:2] == [" w0", " w1"]
    assert len(ok.column("gen_top_tokens")[0].as_py()[0]) == 5
    assert ok.column("token")[0].as_py() == " w0"  # the first position, as flip stores it

    # the same report from the stored run, and from a replay of it (offline)
    again = json.loads(runner.invoke(app, ["analyze", data["run_path"], "--json"]).stdout)
    assert {k: again[k] for k in ("completions", "splits", "positions")} == {
        k: data[k] for k in ("completions", "splits", "positions")
    }
    replay = runner.invoke(
        app, ["generate", "--replay", data["run_path"], "--n", N, "--out", str(tmp_path / "r"),
              "--json", "-q"],
    )  # fmt: skip
    assert replay.exit_code == 0, replay.stderr
    check_story(json.loads(replay.stdout))


@pytest.mark.parametrize("api", ["completions", "responses"])
def test_every_api_shape_gives_the_same_answer(tmp_path, api):
    args = ["--api", api] + (["--no-seed"] if api == "responses" else [])
    with FakeOpenAI(story_reply()) as server:
        result = generate(server, tmp_path, "--n", N, *args)
    assert result.exit_code == 0, result.stderr
    assert server.paths[0] == f"/v1/{api}"
    check_story(json.loads(result.stdout))


def test_a_prompt_set_gives_tarr_and_tara(tmp_path):
    stories = {"steady": Story(branches=()), "twice": Story(), "thrice": Story()}

    def respond(i, request):
        text = request.get("messages", [{}])[0].get("content", "")
        return story_reply(stories[text])(i, request)

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": k, "prompt": k}) + "\n" for k in stories))
    with FakeOpenAI(respond) as server:
        result = generate(
            server, tmp_path / "runs", "--n", 30, "--prompts", prompts, "--answer-regex", "w0"
        )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert [p["id"] for p in data["prompts"]] == list(stories)
    assert [p["unique_completions"] for p in data["prompts"]] == [1, 3, 3]
    # TARr@N: one prompt in three gave the same completion 30 times; every completion holds
    # the answer "w0", so TARa@N is 1
    assert data["agreement"] == {"prompts": 3, "raw": pytest.approx(1 / 3), "answer": 1.0}
    assert len(data["run_paths"]) == 3 and data["n"] == 90
    assert "TARr@N 33.3%; TARa@N 100.0%" in result.stderr


def test_prompt_files_are_checked(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "prompt": "x"}\n{"id": "a", "prompt": "y"}\n')
    result = runner.invoke(app, ["generate", "--prompts", str(bad)], env={"OPENAI_API_KEY": KEY})
    assert result.exit_code == 2 and f"{bad}:2: id 'a' is used twice" in result.stderr
    bad.write_text('{"id": "a"}\n')
    result = runner.invoke(app, ["generate", "--prompts", str(bad)], env={"OPENAI_API_KEY": KEY})
    assert result.exit_code == 2 and f'{bad}:1: needs "prompt"' in result.stderr


def test_show_history_and_compare_on_generate_runs(tmp_path):
    with FakeOpenAI(story_reply()) as server:
        first = json.loads(generate(server, tmp_path / "a", "--n", N).stdout)
    with FakeOpenAI(story_reply(Story(branches=((2, 1, 3),)))) as server:
        other = json.loads(generate(server, tmp_path / "b", "--n", N).stdout)

    run = read_run(first["run_path"])
    table = run.table.filter(run.table.column("ok")).sort_by("seq")
    row = [t[17] for t in table.column("gen_tokens").to_pylist()].index(" x17")
    shown = runner.invoke(app, ["show", first["run_path"], "--row", str(row)])
    assert shown.exit_code == 0, shown.stderr
    assert '" x17"' in shown.stdout and '" w17" -0.6920' in shown.stdout
    assert "finish reason stop" in shown.stdout

    lines = json.loads(runner.invoke(app, ["history", str(tmp_path), "--json"]).stdout)["runs"]
    assert sorted(x["unique_completions"] for x in lines) == [2, 3]

    same = runner.invoke(app, ["compare", first["run_path"], first["run_path"], "--json"])
    assert same.exit_code == 0, same.stderr
    drifted = runner.invoke(app, ["compare", first["run_path"], other["run_path"], "--json"])
    assert drifted.exit_code == 1, drifted.stderr
    result = json.loads(drifted.stdout)
    assert [f["kind"] for f in result["failing_findings"]] == ["modal"]
    assert result["baseline_completions"] == 3 and result["candidate_completions"] == 2


def test_a_flip_run_is_not_read_as_a_generation(recording):
    result = runner.invoke(app, ["analyze", str(recording), "--answer-regex", "x"])
    assert result.exit_code == 2 and "--answer-regex is for generate runs" in result.stderr


def test_the_shipped_recording_replays_without_a_key(tmp_path):
    recording = Path(__file__).parents[1] / "recordings" / "story-generate-200"
    result = runner.invoke(
        app,
        ["generate", "--n", "200", "--replay", str(recording), "--out", str(tmp_path), "--json"],
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["n"] == 200 and data["unique_completions"] == 3
    assert data["common_prefix_tokens"] == 5


def test_failed_attempts_are_counted(tmp_path):
    story = story_reply()

    def flaky(i, request):
        return Reply(503, b'{"error": {"message": "busy"}}') if i % 7 == 0 else story(i, request)

    with FakeOpenAI(flaky) as server:
        result = generate(server, tmp_path, "--n", 20, "--backoff-s", 0, "--max-backoff-s", 0)
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["n"] == 20 and data["errors"] >= 1
    assert set(data["errors_by_type"]) == {"http_503"}


def test_answers_of_different_lengths(tmp_path):
    story = Story(branches=(), short=(4, 1, 30))  # one call in four stops after 30 tokens
    with FakeOpenAI(story_reply(story)) as server:
        result = generate(server, tmp_path, "--n", 40)
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["unique_completions"] == 2
    assert data["lengths"] == {"min": 30, "median": 40.0, "max": 40}
    assert data["first_divergence"]["by_position"] == {"30": 10}
    (split,) = data["splits"]
    assert split["position"] == 30
    assert {(t["ended"], t["count"]) for t in split["tokens"]} == {(False, 30), (True, 10)}


def test_resume_and_plot_a_generate_run(tmp_path):
    with FakeOpenAI(story_reply()) as server:
        env = {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": server.base_url}
        first = json.loads(generate(server, tmp_path, "--n", 6).stdout)
        meta_path = Path(first["run_path"]) / "_run.json"
        meta = json.loads(meta_path.read_text())
        meta["n_requested"], meta["status"] = 9, "interrupted"
        meta_path.write_text(json.dumps(meta))
        resumed = runner.invoke(
            app, ["generate", "--resume", first["run_path"], "-q", "--json"], env=env
        )
    assert resumed.exit_code == 0, resumed.stderr
    data = json.loads(resumed.stdout)
    assert data["n"] == 9 and data["kind"] == "generate"
    assert read_run(first["run_path"]).meta["status"] == "complete"
    image = tmp_path / "paths.png"
    plotted = runner.invoke(app, ["plot", first["run_path"], "-o", str(image)])
    assert plotted.exit_code == 0, plotted.stderr
    assert image.read_bytes()[:4] == b"\x89PNG"
