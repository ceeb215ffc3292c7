"""`detcheck import`: responses made elsewhere become ordinary runs. The logged objects are made
by the real openai SDK against the test server (what a request logger keeps), the tables are of
the shape llm-stability publishes (one CSV per repetition, one row per question)."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from pathlib import Path

import openai
import pytest
from typer.testing import CliRunner

from detcheck.cli import app
from detcheck.store import read_run, read_runs
from fake_openai import FakeOpenAI, Story, chat_body, story_reply

runner = CliRunner()
KEY = "sk-test-import-0123456789abcdef"
KEY_LIKE = re.compile(rb"sk-[A-Za-z0-9_\-]{16,}|(?i:bearer\s+[A-Za-z0-9._\-]{12,})")


def run_import(*args) -> tuple[int, dict | None, str]:
    result = runner.invoke(app, ["import", *map(str, args), "--json", "-q"])
    try:
        data = json.loads(result.stdout)
    except ValueError:
        data = None
    return result.exit_code, data, result.stderr


def logged(requests: list[dict], wrap: bool = False) -> list[str]:
    """What a request logger keeps: each response as the SDK parsed it, dumped to JSON."""
    lines = []
    with FakeOpenAI(story_reply(Story(length=6, branches=((3, 1, 2),)))) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0)
        for request in requests:
            response = json.loads(client.chat.completions.create(**request).model_dump_json())
            if wrap:  # with the request as the logger saw it: its headers and URL too
                url = f"https://user:{KEY}@api.example.com/v1/chat/completions"
                sent = {**request, "headers": {"Authorization": f"Bearer {KEY}"}, "url": url}
                lines.append(json.dumps({"request": sent, "response": response}))
            else:
                lines.append(json.dumps(response))
    return lines


def paper_tables(tmp_path: Path, answers: list[list[str]]) -> list[Path]:
    """One CSV per repetition (llm-stability's layout): answers[run][question]."""
    paths = []
    for run, row in enumerate(answers):
        path = tmp_path / f"gpt-4o-0.0-navigate-few-{run}.csv"
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["", "model", "task", "rubric_id", "prompt", "run", "response"])
            for q, answer in enumerate(row):
                w.writerow([q, "gpt-4o", "navigate", q, f"Question {q}?\nA, B", run, answer])
        paths.append(path)
    return paths


def test_a_table_of_repetitions_is_a_prompt_set_with_tarr_and_tara(tmp_path):
    # question 0 and 1 agree every time; 2 differs in run 2; 3 differs only in the brackets; 4
    # gives the same text every time but no answer in it: as in the paper, that fails TARa
    answers = [
        ['{"Answer":"Yes"}', '{"Answer":"No"}', '{"Answer":"Yes"}', '{"Answer":"C"}', "Hm."],
        ['{"Answer":"Yes"}', '{"Answer":"No"}', '{"Answer":"Yes"}', '{"Answer":"C"}', "Hm."],
        ['{"Answer":"Yes"}', '{"Answer":"No"}', '{"Answer":"No"}', '{"Answer":"(C)"}', "Hm."],
    ]
    paths = paper_tables(tmp_path, answers)
    out = tmp_path / "runs"
    code, data, err = run_import(*paths, "--text", "response", "--id", "rubric_id", "--prompt",
                                 "prompt", "--model", "model", "-o", out,
                                 "--answer-regex", r'"Answer":\s*"\(?([A-Za-z]+)')  # fmt: skip
    assert code == 0, err
    assert data["agreement"] == {"prompts": 5, "raw": 0.6, "answer": 0.6}
    assert data["imported"]["rows"] == 15 and data["imported"]["runs"] == 5
    runs = read_runs([str(out)])
    assert len(runs) == 5 and {r.meta["tags"]["prompt_id"] for r in runs} == set("01234")
    assert len({r.meta["tags"]["prompt_set"] for r in runs}) == 1
    run = next(r for r in runs if r.meta["tags"]["prompt_id"] == "2")
    assert run.meta["config"]["prompt"] == "Question 2?\nA, B"
    assert sorted(run.table.column("text").to_pylist()) == sorted(
        ['{"Answer":"Yes"}'] * 2 + ['{"Answer":"No"}']
    )
    assert run.table.column("latency_ms").null_count == 3  # not known: null, never made up
    assert run.meta["config"]["temperature"] is None and run.meta["config"]["kind"] == "generate"
    files = {f["name"]: f for f in run.meta["imported"]["files"]}
    assert files[paths[0].name]["sha256"] == hashlib.sha256(paths[0].read_bytes()).hexdigest()
    assert files[paths[0].name]["bytes"] == paths[0].stat().st_size
    assert any("timing unknown" in lack for lack in run.meta["imported"]["lacks"])
    # an ordinary run to every other command
    again = runner.invoke(app, ["analyze", str(out), "--json"])
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["agreement"]["raw"] == 0.6
    assert "timing unknown" in runner.invoke(app, ["analyze", str(out)]).stdout


def test_a_table_with_its_own_answer_column_gives_tara_without_a_regex(tmp_path):
    # the answers as a harness parsed them: q0 agrees, q1 differs, q2 had none parsed once
    path = tmp_path / "answers.jsonl"
    rows = [(0, "So: A", "A"), (0, "It is A.", "A"), (1, "B", "B"), (1, "C", "C"),
            (2, "D", "D"), (2, "no idea", None)]  # fmt: skip
    path.write_text("".join(json.dumps({"q": q, "out": t, "parsed": a}) + "\n" for q, t, a in rows))
    code, data, err = run_import(path, "--format", "jsonl", "--text", "out", "--id", "q",
                                 "--answer", "parsed", "-o", tmp_path / "runs")  # fmt: skip
    assert code == 0, err
    assert data["agreement"]["raw"] == 0.0
    assert data["agreement"]["answer"] == 1 / 3  # only q0: q2's missing answer is no agreement
    (run,) = [r for r in read_runs([str(tmp_path / "runs")]) if r.meta["tags"]["prompt_id"] == "2"]
    assert run.table.column("answer").to_pylist() == ["D", None]


def test_logged_chat_completions_of_one_token_are_a_flip_run(tmp_path):
    path = tmp_path / "log.jsonl"
    lines = [json.dumps(chat_body(i, -0.1 - 1e-4 * (i % 3))) for i in range(30)]
    lines.insert(7, json.dumps({"error": {"message": "Rate limit reached", "type": "rate_limit"}}))
    path.write_text("\n".join(lines) + "\n")
    code, data, err = run_import(path, "-o", tmp_path / "runs")
    assert code == 0, err
    assert data["n"] == 30 and data["distinct"] == 3 and data["target"] == "Heads"
    assert data["errors_by_type"] == {"rate_limit": 1}  # the failed attempt is a row too
    assert data["time_association"] is None and data["first_call"] is None  # no times known
    run = read_run(data["run_paths"][0])
    assert run.meta["config"]["kind"] == "flip" and run.meta["via"] == "import"
    assert run.table.num_rows == 31
    assert set(run.table.column("system_fingerprint").to_pylist()) == {"fp_test", None}
    # its bodies are kept: a replay serves them
    replay = runner.invoke(app, ["flip", "--replay", data["run_paths"][0], "--n", "30",
                                 "--out", str(tmp_path / "replayed"), "-q", "--json"])  # fmt: skip
    assert replay.exit_code == 0, replay.stderr
    assert json.loads(replay.stdout)["distinct"] == 3


def test_logged_requests_and_responses_become_one_run_per_request(tmp_path):
    asked = dict(model="story", max_tokens=6, temperature=0, logprobs=True, top_logprobs=3)
    requests = [
        {
            **asked,
            "messages": [
                {"role": "system", "content": f"(the key was {KEY})"},
                {"role": "user", "content": f"Tell story {k}"},
            ],
            "seed": 40 + i,
        }
        for i in range(12)
        for k in (1, 2)
    ]
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join(logged(requests, wrap=True)) + "\n")
    out = tmp_path / "runs"
    code, data, err = run_import(path, "-o", out)
    assert code == 0, err
    assert data["agreement"]["prompts"] == 2  # a seed per call is still the same prompt
    assert {p["prompt"] for p in data["prompts"]} == {"Tell story 1", "Tell story 2"}
    assert all(p["unique_completions"] == 2 for p in data["prompts"])  # the story's branch
    run = read_runs([str(out)])[0]
    config = run.meta["config"]
    assert (config["kind"], config["api"], config["max_tokens"], config["temperature"]) == (
        "generate", "chat", 6, 0)  # fmt: skip
    assert "headers" not in run.meta["request"] and "url" not in run.meta["request"]
    for file in out.rglob("*"):  # neither the key nor the header reached disk
        if file.is_file():
            assert not KEY_LIKE.search(file.read_bytes()), file


def test_a_batch_output_file_with_its_input(tmp_path):
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Flip a coin."}],
            "max_tokens": 1, "logprobs": True, "top_logprobs": 20, "temperature": 0}  # fmt: skip
    inputs, outputs = [], []
    for i in range(10):
        cid = f"detcheck-{i}-a1"
        inputs.append({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions",
                       "body": {**body, "seed": 42}})  # fmt: skip
        response = {"status_code": 200, "request_id": f"req_{i}", "body": chat_body(i, -0.2)}
        if i == 4:  # one call the batch could not answer
            response = {"status_code": 500, "request_id": "req_4",
                        "body": {"error": {"message": "server error"}}}  # fmt: skip
        outputs.append({"id": f"batch_req_{i}", "custom_id": cid, "response": response})
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(x) + "\n" for x in inputs))
    (tmp_path / "out.jsonl").write_text("".join(json.dumps(x) + "\n" for x in outputs))
    code, data, err = run_import(tmp_path / "out.jsonl", "--batch-input", tmp_path / "in.jsonl",
                                 "-o", tmp_path / "runs")  # fmt: skip
    assert code == 0, err
    assert data["n"] == 9 and data["errors_by_type"] == {"http_500": 1}
    run = read_run(data["run_paths"][0])
    assert run.meta["config"]["seed"] == 42 and run.meta["config"]["top_logprobs"] == 20
    assert set(run.table.column("custom_id").to_pylist()) == {f"detcheck-{i}-a1" for i in range(10)}
    assert {f["name"] for f in run.meta["imported"]["files"]} == {"out.jsonl", "in.jsonl"}


def test_responses_api_objects(tmp_path):
    from fake_openai import responses_body

    path = tmp_path / "responses.jsonl"
    path.write_text("".join(json.dumps(responses_body(i, -0.3)) + "\n" for i in range(5)))
    code, data, err = run_import(path, "--format", "openai", "-o", tmp_path / "runs")
    assert code == 0, err
    assert data["n"] == 5 and data["distinct"] == 1
    assert read_run(data["run_paths"][0]).meta["api"] == "responses"


@pytest.mark.parametrize(
    "line, says",
    [
        ("{not json", "log.jsonl:3: not JSON"),
        ('{"object": "chat.completion", "choices": []}', "log.jsonl:3: "),
        ('{"object": "embedding", "data": []}', "not a chat.completion, text_completion or"),
        ("[1, 2]", "log.jsonl:3: not a JSON object"),
    ],
)
def test_a_bad_line_is_named_and_nothing_is_left_half_written(tmp_path, line, says):
    path = tmp_path / "log.jsonl"
    good = [json.dumps(chat_body(i, -0.1)) for i in range(4)]
    path.write_text("\n".join([*good[:2], line, *good[2:]]) + "\n")
    out = tmp_path / "runs"
    code, data, err = run_import(path, "-o", out)
    assert code == 2 and says in err and "--skip-bad" in err
    assert not [p for p in out.rglob("*") if p.is_file()]  # no run, not even a partial one
    code, data, err = run_import(path, "-o", out, "--skip-bad")
    assert code == 0, err
    assert data["n"] == 4 and data["imported"]["skipped"] == 1
    assert read_run(data["run_paths"][0]).meta["imported"]["skipped"] == 1


def test_a_table_without_the_named_column_says_which_it_has(tmp_path):
    (path,) = paper_tables(tmp_path, [["yes"]])
    code, _, err = run_import(path, "--text", "answer", "-o", tmp_path / "runs")
    assert code == 2 and "no column 'answer'" in err and "response" in err
    code, _, err = run_import(path, "-o", tmp_path / "runs")
    assert code == 2 and "needs --text" in err
    # a Mac's resource fork beside the tables (llm-stability's archives hold them): not text
    fork = tmp_path / "._table.csv"
    fork.write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        \xb7\x00")
    code, _, err = run_import(fork, "--text", "response", "-o", tmp_path / "runs")
    assert code == 2 and "._table.csv:1: not UTF-8 text" in err


def test_a_jsonl_table_and_keys_in_the_data_are_redacted(tmp_path):
    leaked = "sk-proj-" + "A1b2C3d4" * 4
    path = tmp_path / "table.jsonl"
    rows = [
        {"q": q, "out": f"answer {q % 2}" if q < 4 else f"my key is {leaked}"} for q in range(6)
    ]
    path.write_text("".join(json.dumps({"q": r["q"] % 2, "out": r["out"]}) + "\n" for r in rows))
    out = tmp_path / "runs"
    code, data, err = run_import(path, "--format", "jsonl", "--text", "out", "--id", "q", "-o", out)
    assert code == 0, err
    assert data["agreement"]["prompts"] == 2 and data["n"] == 6
    for file in out.rglob("*"):
        if file.is_file():
            assert leaked.encode() not in file.read_bytes(), file
    texts = [t for r in read_runs([str(out)]) for t in r.table.column("text").to_pylist()]
    assert "my key is [REDACTED]" in texts


def test_an_imported_run_json_is_pinned(tmp_path):
    from test_json_schema import RUN_JSON_KEYS

    path = tmp_path / "log.jsonl"
    path.write_text(json.dumps(chat_body(0, -0.1)) + "\n")
    code, data, err = run_import(path, "-o", tmp_path / "runs")
    assert code == 0, err
    meta = read_run(data["run_paths"][0]).meta
    # a measured run's keys, less how it was sent (no retries, no background), plus `imported`
    unsent = {"retry_policy", "background_load", "measurement", "partition", "client", "notes"}
    assert set(meta) == (set(RUN_JSON_KEYS) - unsent) | {"imported"}
    assert set(meta["imported"]) == {"at", "format", "files", "skipped", "lacks"}


def test_legacy_completions_and_a_line_too_long_to_be_a_response(tmp_path):
    from detcheck.send.batch_api import MAX_LINE_BYTES

    def completion(i: int) -> dict:
        text = [" Heads", " up"] if i % 2 else [" Heads", " down"]
        return {"id": f"cmpl-{i}", "object": "text_completion", "model": "davinci-002",
                "choices": [{"index": 0, "text": "".join(text), "finish_reason": "length",
                             "logprobs": {"tokens": text, "token_logprobs": [-0.1, -0.5],
                                          "top_logprobs": [{t: -0.1} for t in text]}}]}  # fmt: skip

    path = tmp_path / "completions.jsonl"
    with open(path, "w") as f:
        for i in range(6):
            f.write(json.dumps(completion(i)) + "\n")
            if i == 2:  # a line no API response is: skipped whole, never held
                f.write('{"pad": "' + "x" * MAX_LINE_BYTES + '"}\n')
    code, data, err = run_import(path, "-o", tmp_path / "runs")
    assert code == 2 and "completions.jsonl:4: a line of" in err
    code, data, err = run_import(path, "-o", tmp_path / "runs", "--skip-bad")
    assert code == 0, err
    assert data["n"] == 6 and data["unique_completions"] == 2 and data["imported"]["skipped"] == 1
    run = read_run(data["run_paths"][0])
    assert run.meta["api"] == "completions" and run.meta["config"]["kind"] == "generate"
