"""`detcheck import` on logs as they come from production: credentials under any name, responses
of several models or requests side by side, duplicates, refusals, odd encodings, kills. No
credential reaches disk or the terminal, nothing is merged, dropped or counted twice silently,
and an import either writes every run or none."""

from __future__ import annotations

import base64
import csv
import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from detcheck.cli import app
from detcheck.store import find_runs, read_run, read_runs

runner = CliRunner()


def run_import(*args) -> tuple[int, dict | None, str]:
    result = runner.invoke(app, ["import", *map(str, args), "--json"])
    try:
        data = json.loads(result.stdout)
    except ValueError:
        data = None
    return result.exit_code, data, result.stderr


def one_token(i: int, token: str = "Heads", *, logprob: float = -0.1, choices: int = 1,
              model: str = "gpt-4o-2024-08-06", rid: str | None = None) -> dict:  # fmt: skip
    """A chat.completion of one generated token per choice (choice k answers token + k)."""

    def choice(k: int) -> dict:
        t = token if k == 0 else f"{token}{k}"
        top = [{"token": t, "logprob": logprob, "bytes": list(t.encode())},
               {"token": "Other", "logprob": -3.0, "bytes": list(b"Other")}]  # fmt: skip
        return {"index": k, "message": {"role": "assistant", "content": t},
                "logprobs": {"content": [dict(top[0], top_logprobs=top)]},
                "finish_reason": "length"}  # fmt: skip

    return {"id": rid or f"chatcmpl-{i}", "object": "chat.completion", "model": model,
            "created": 1_700_000_000 + i, "system_fingerprint": "fp_1",
            "choices": [choice(k) for k in range(choices)],
            "usage": {"prompt_tokens": 9, "completion_tokens": choices}}  # fmt: skip


def text_completion(i: int, text: str, model: str = "gpt-4o-2024-08-06") -> dict:
    """A chat.completion asked for without logprobs."""
    return {"id": f"chatcmpl-t{i}", "object": "chat.completion", "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}]}  # fmt: skip


def write_jsonl(path: Path, lines: list) -> Path:
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def everything_written(out: Path) -> bytes:
    return b"".join(f.read_bytes() for f in out.rglob("*") if f.is_file())


# ---- no credential is stored, whatever its field name -------------------------------------

BASIC = base64.b64encode(b"admin:s3cret-basic-0002").decode()
NAMED = {
    "default_headers": {"X-Custom-Auth": "custom-header-0001"},
    "http_headers": {"Authorization": f"Basic {BASIC}"},
    "api-key": "azure-value-0003-abc",
    "x-api-key": "anthropic-value-0004",
    "openai_api_key": "plainvalue-0005-xyz",
    "token": "session-token-0006",
    "db_password": "hunter2-hunter2-0007",
    "client_secret": "client-secret-0008",
    "metadata": {"service_key": "service-key-0009-q", "note": "kept"},
}
GOOGLE = "AIza" + "SyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q"
GITHUB = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"


def secret_values() -> list[str]:
    found = [GOOGLE, GITHUB, BASIC]
    for value in NAMED.values():
        found += (
            [v for k, v in value.items() if k != "note"] if isinstance(value, dict) else [value]
        )
    return found


def test_no_credential_is_stored_whatever_its_field_name(tmp_path):
    request = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Say something."}],
               "temperature": 0, **NAMED}  # fmt: skip
    lines = [{"request": request, "response": text_completion(i, f"use {GOOGLE} or {GITHUB}")}
             for i in range(3)]  # fmt: skip
    # a logger that keeps the HTTP exchange: the credentials sit beside the response too
    lines.append({"request": request, "token": "session-token-0006",
                  "response": {"headers": {"authorization": f"Basic {BASIC}"},
                               "body": text_completion(3, "fine")}})  # fmt: skip
    path = write_jsonl(tmp_path / "log.jsonl", lines)
    out = tmp_path / "runs"
    result = runner.invoke(app, ["import", str(path), "-o", str(out), "--json"])
    assert result.exit_code == 0, result.stderr
    written = everything_written(out) + result.stdout.encode() + result.stderr.encode()
    for value in secret_values():
        assert value.encode() not in written, value
    (run,) = read_runs([str(out)])
    assert run.meta["request"]["metadata"] == {"service_key": "[REDACTED]", "note": "kept"}
    assert run.meta["request"]["temperature"] == 0  # parameters stay
    assert "[REDACTED]" in " ".join(run.table.column("text").to_pylist())


def test_basic_auth_inside_a_batch_error_body_is_redacted(tmp_path):
    body = {"error": {"message": f"upstream said: Authorization: Basic {BASIC} was refused"}}
    lines = [
        {"id": "b0", "custom_id": "c0", "response": {"status_code": 401, "body": body}},
        {"id": "b1", "custom_id": "c1", "response": {"status_code": 200, "body": one_token(1)}},
    ]
    path = write_jsonl(tmp_path / "out.jsonl", lines)
    code, data, err = run_import(path, "--format", "batch", "-o", tmp_path / "runs")
    assert code == 0, err
    assert BASIC.encode() not in everything_written(tmp_path / "runs")
    assert BASIC not in err and BASIC not in json.dumps(data)


def test_a_key_that_is_the_answer_is_redacted_before_it_is_counted(tmp_path):
    key = "sk-" + "Zq9Xw7" * 5
    path = write_jsonl(tmp_path / "log.jsonl", [one_token(i, key) for i in range(5)])
    result = runner.invoke(app, ["import", str(path), "-o", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.stderr
    assert key not in result.stdout + result.stderr
    assert key.encode() not in everything_written(tmp_path / "runs")
    (run,) = read_runs([str(tmp_path / "runs")])
    assert run.meta["target"] == "[REDACTED]" and run.meta["label"] == "[REDACTED]"


# ---- never merge what is not the same request ---------------------------------------------


def test_bare_responses_of_different_models_or_apis_are_different_runs(tmp_path):
    legacy = {"id": "cmpl-0", "object": "text_completion", "model": "davinci-002",
              "choices": [{"index": 0, "text": " Heads", "finish_reason": "length",
                           "logprobs": {"tokens": [" Heads"], "token_logprobs": [-0.1],
                                        "top_logprobs": [{" Heads": -0.1}]}}]}  # fmt: skip
    lines = [one_token(i, model="gpt-4o-2024-08-06") for i in range(4)]
    lines += [one_token(10 + i, "Tails", model="llama-3-70b") for i in range(3)]
    lines += [legacy, {**legacy, "id": "cmpl-1"}]
    path = write_jsonl(tmp_path / "log.jsonl", lines)
    code, data, err = run_import(path, "-o", tmp_path / "runs")
    assert code == 0, err
    runs = read_runs([str(tmp_path / "runs")])
    shapes = sorted((r.meta["api"], r.meta["config"]["model"], r.table.num_rows) for r in runs)
    assert shapes == [("chat", "gpt-4o-2024-08-06", 4), ("chat", "llama-3-70b", 3),
                      ("completions", "davinci-002", 2)]  # fmt: skip
    for run in runs:
        assert len(set(run.table.column("response_model").to_pylist())) == 1


def batch_line(i: int, model: str = "gpt-4o-2024-08-06") -> dict:
    return {"id": f"b{i}", "custom_id": f"c-{i}",
            "response": {"status_code": 200, "request_id": f"r{i}",
                         "body": one_token(i, model=model)}}  # fmt: skip


def test_batch_output_without_its_requests_is_grouped_by_what_is_known_and_says_so(tmp_path):
    lines = [batch_line(i) for i in range(4)] + [batch_line(i, "other-model") for i in range(4, 6)]
    out_file = write_jsonl(tmp_path / "out.jsonl", lines)
    code, data, err = run_import(out_file, "--format", "batch", "-o", tmp_path / "a")
    assert code == 0, err
    assert "--batch-input" in err  # the requests are unknown: said, not assumed one prompt
    models = sorted(r.meta["config"]["model"] for r in read_runs([str(tmp_path / "a")]))
    assert models == ["gpt-4o-2024-08-06", "other-model"]
    # an input file that lacks some of the custom_ids: those are not folded into a known prompt
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Flip."}], "max_tokens": 1}
    inputs = [{"custom_id": f"c-{i}", "method": "POST", "url": "/v1/chat/completions",
               "body": body} for i in range(2)]  # fmt: skip
    in_file = write_jsonl(tmp_path / "in.jsonl", inputs)
    code, data, err = run_import(out_file, "--batch-input", in_file, "-o", tmp_path / "b")
    assert code == 0, err
    assert "4 responses" in err and "not in in.jsonl" in err
    runs = read_runs([str(tmp_path / "b")])
    known = [r for r in runs if r.meta["config"]["prompt"] == "Flip."]
    assert len(known) == 1 and known[0].table.column("custom_id").to_pylist() == ["c-0", "c-1"]
    assert sum(r.table.num_rows for r in runs) == 6


# ---- nothing dropped or counted twice silently --------------------------------------------


def test_every_choice_of_a_response_is_a_completion(tmp_path):
    path = write_jsonl(tmp_path / "log.jsonl", [one_token(i, choices=3) for i in range(4)])
    code, data, err = run_import(path, "-o", tmp_path / "runs")
    assert code == 0, err
    assert data["n"] == 12 and data["imported"]["rows"] == 12
    (run,) = read_runs([str(tmp_path / "runs")])
    assert sorted(set(run.table.column("token").to_pylist())) == ["Heads", "Heads1", "Heads2"]


def test_a_response_logged_twice_is_counted_once(tmp_path):
    lines = [one_token(i) for i in range(5)]
    path = write_jsonl(tmp_path / "log.jsonl", [*lines, lines[2], lines[4]])
    code, data, err = run_import(path, "-o", tmp_path / "runs")
    assert code == 0, err
    assert data["n"] == 5 and "2 responses logged twice" in err


def test_the_same_file_imported_twice_into_one_out_is_refused(tmp_path):
    path = write_jsonl(tmp_path / "log.jsonl", [one_token(i) for i in range(5)])
    out = tmp_path / "runs"
    assert run_import(path, "-o", out)[0] == 0
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(path.read_bytes())  # another name, the same bytes
    code, _, err = run_import(copy, "-o", out)
    assert code == 2 and "already imported" in err and "log.jsonl" in err
    assert len(find_runs(out)) == 1


# ---- an import that writes runs succeeds ----------------------------------------------------


def test_a_prompt_set_of_different_one_token_answers_imports_analyses_and_reports(tmp_path):
    def asked(question: str) -> dict:
        return {"model": "gpt-4o", "max_tokens": 1, "logprobs": True, "top_logprobs": 2,
                "messages": [{"role": "user", "content": question}]}  # fmt: skip

    lines = [{"request": asked("Is water wet?"), "response": one_token(i, "Yes")} for i in range(4)]
    lines += [{"request": asked("Is fire cold?"), "response": one_token(9 + i, "No")}
              for i in range(4)]  # fmt: skip
    path = write_jsonl(tmp_path / "log.jsonl", lines)
    out = tmp_path / "runs"
    code, data, err = run_import(path, "-o", out)
    assert code == 0, err
    assert data["agreement"]["prompts"] == 2 and data["agreement"]["raw"] == 1.0
    assert len(find_runs(out)) == 2
    analysed = runner.invoke(app, ["analyze", str(out), "--json"])
    assert analysed.exit_code == 0, analysed.stderr
    page = tmp_path / "page.html"
    reported = runner.invoke(app, ["report", str(out), "-o", str(page)])
    assert reported.exit_code == 0, reported.stderr
    html = page.read_text()
    assert "TARr@N" in html and "Is water wet?" in html and "Is fire cold?" in html


# ---- all or nothing -------------------------------------------------------------------------


def visible_runs(out: Path) -> list[Path]:
    """Run directories a reader of `out` sees (nothing under a hidden directory), while a
    process may be removing some (os.walk passes over what vanishes)."""
    found = []
    for where, dirs, files in os.walk(out):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        if "_run.json" in files:
            found.append(Path(where))
    return found


def big_table(path: Path, prompts: int, per_prompt: int = 2) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["q", "prompt", "response"])
        for k in range(per_prompt):
            for q in range(prompts):
                w.writerow([f"q{q:05d}", f"Question {q}?", f"answer {(q + k) % 3}"])
    return path


@pytest.mark.slow
def test_a_kill_as_the_first_run_appears_leaves_all_runs_or_none(tmp_path):
    prompts = 600
    table = big_table(tmp_path / "table.csv", prompts)
    out = tmp_path / "runs"
    out.mkdir()
    child = subprocess.Popen(
        [sys.executable, "-m", "detcheck", "import", str(table), "--text", "response", "--id",
         "q", "--prompt", "prompt", "-o", str(out), "-q"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while child.poll() is None and not visible_runs(out) and time.monotonic() < deadline:
        time.sleep(0.001)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert len(visible_runs(out)) in (0, prompts)
    # the next import into the same -o clears what the killed one left behind, and says so
    other = big_table(tmp_path / "other.csv", 3)
    result = runner.invoke(app, ["import", str(other), "--text", "response", "--id", "q",
                                 "-o", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    hidden_was_left = "killed import" in result.stderr
    assert hidden_was_left or len(visible_runs(out)) == prompts + 3


def test_run_ids_are_distinct_and_in_the_data_s_order_in_a_large_import(tmp_path):
    prompts = 1500
    table = big_table(tmp_path / "table.csv", prompts, per_prompt=1)
    code, data, err = run_import(table, "--text", "response", "--id", "q", "-o", tmp_path / "r")
    assert code == 0, err
    runs = read_runs([str(tmp_path / "r")])
    ids = [r.meta["run_id"] for r in runs]
    assert len(set(ids)) == prompts
    in_order = [r.meta["tags"]["prompt_id"] for r in sorted(runs, key=lambda r: r.meta["run_id"])]
    assert in_order == [f"q{q:05d}" for q in range(prompts)]


# ---- bounded input, odd files ---------------------------------------------------------------


def test_a_csv_cell_over_the_limit_of_one_response_is_a_bad_line(tmp_path):
    from detcheck.send.batch_api import MAX_LINE_BYTES

    path = tmp_path / "table.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["q", "response"])
        w.writerow(["a", "yes"])
        w.writerow(["a", "x" * (MAX_LINE_BYTES + 1)])
        w.writerow(["a", "no"])
    code, _, err = run_import(path, "--text", "response", "--id", "q", "-o", tmp_path / "runs")
    assert code == 2 and "table.csv:3:" in err and "over the limit" in err
    code, data, err = run_import(path, "--text", "response", "--id", "q", "-o", tmp_path / "runs",
                                 "--skip-bad")  # fmt: skip
    assert code == 0, err
    assert data["n"] == 2 and data["imported"]["skipped"] == 1


def test_a_logged_refusal_is_a_failed_row_not_the_end_of_the_import(tmp_path):
    refusal = {"id": "chatcmpl-r", "object": "chat.completion", "model": "gpt-4o-2024-08-06",
               "choices": [{"index": 0, "finish_reason": "stop",
                            "message": {"role": "assistant", "content": None,
                                        "refusal": "I can't help with that."},
                            "logprobs": {"content": None, "refusal": []}}]}  # fmt: skip
    lines = [one_token(i) for i in range(4)]
    path = write_jsonl(tmp_path / "log.jsonl", [*lines[:2], refusal, *lines[2:]])
    code, data, err = run_import(path, "-o", tmp_path / "runs")
    assert code == 0, err
    assert data["n"] == 4 and data["errors_by_type"] == {"refused": 1}


def test_answer_column_and_answer_regex_together_say_which_is_used(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"q": 1, "out": "A", "ans": "A"}] * 2)
    code, data, err = run_import(path, "--format", "jsonl", "--text", "out", "--id", "q",
                                 "--answer", "ans", "--answer-regex", "(A)", "-o",
                                 tmp_path / "runs")  # fmt: skip
    assert code == 0, err
    assert "--answer-regex" in err and "--answer column" in err


def test_a_utf8_bom_is_read_in_jsonl_and_csv(tmp_path):
    jsonl = tmp_path / "log.jsonl"
    jsonl.write_bytes(b"\xef\xbb\xbf" + b"".join(json.dumps(one_token(i)).encode() + b"\n"
                                                for i in range(3)))  # fmt: skip
    code, data, err = run_import(jsonl, "-o", tmp_path / "a")
    assert code == 0, err
    assert data["n"] == 3
    table = tmp_path / "t.csv"
    table.write_bytes(b"\xef\xbb\xbfq,response\r\n1,yes\r\n1,no\r\n")
    code, data, err = run_import(table, "--text", "response", "--id", "q", "-o", tmp_path / "b")
    assert code == 0, err
    assert data["n"] == 2


def test_a_gzip_file_is_read(tmp_path):
    path = tmp_path / "log.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.writelines(json.dumps(one_token(i)) + "\n" for i in range(6))
    code, data, err = run_import(path, "-o", tmp_path / "runs")
    assert code == 0, err
    assert data["n"] == 6
    run = read_run(data["run_paths"][0])
    assert run.meta["imported"]["files"][0]["name"] == "log.jsonl.gz"


def test_an_empty_file_says_it_is_empty(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_bytes(b"")
    code, _, err = run_import(path, "-o", tmp_path / "runs")
    assert code == 2 and "log.jsonl: empty" in err
    code, _, err = run_import(path, "--format", "openai", "-o", tmp_path / "runs")
    assert code == 2 and "log.jsonl: empty" in err


# ---- the columnar reader and the per-line reader agree ------------------------------------


def test_the_columnar_and_the_per_line_reader_store_the_same_rows(tmp_path):
    """Every line read both ways: as logged, and with a field that sends it the per-line way
    (an empty api-key: a credential's name, with nothing to redact)."""
    from fake_openai import chat_body

    bodies = [chat_body(i, -0.1 - 1e-4 * (i % 3)) for i in range(40)]
    bodies += [one_token(100 + i, "Tails") for i in range(40)]
    bodies += [text_completion(200 + i, f"plain {i % 2}") for i in range(40)]
    long = json.loads(json.dumps(chat_body(300, -0.2)))
    entry = long["choices"][0]["logprobs"]["content"][0]
    long["choices"][0]["logprobs"]["content"] = [dict(entry, token=f" w{k}", bytes=None)
                                                 for k in range(64)]  # fmt: skip
    long["choices"][0]["message"]["content"] = "".join(f" w{k}" for k in range(64))
    long["usage"]["completion_tokens"] = 2**40  # beyond the int32 column: null
    bodies += [dict(long, id=f"long-{i}") for i in range(40)]
    fast = write_jsonl(tmp_path / "fast.jsonl", bodies)
    slow = write_jsonl(tmp_path / "slow.jsonl", [{**b, "api-key": ""} for b in bodies])
    tables = {}
    for path in (fast, slow):
        out = tmp_path / path.stem
        code, data, err = run_import(path, "-o", out)
        assert code == 0, err
        runs = sorted(read_runs([str(out)]), key=lambda r: r.meta["run_id"])
        tables[path.stem] = [r.table.drop_columns(["run_id", "raw_body"]) for r in runs]
    assert len(tables["fast"]) == len(tables["slow"]) == 1
    for a, b in zip(tables["fast"], tables["slow"]):
        assert a.to_pylist() == b.to_pylist()


def test_the_line_cap_is_the_batch_api_s():
    from detcheck.commands.import_files import MAX_LINE_BYTES
    from detcheck.send import batch_api

    assert MAX_LINE_BYTES == batch_api.MAX_LINE_BYTES


def test_logged_requests_and_batch_lines_are_read_the_same_both_ways(tmp_path):
    """{request, response} and Batch API lines in their usual layout take the columnar way;
    the same lines with a field that sends them the per-line way store the same rows."""
    from fake_openai import chat_body

    ask = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Flip."}], "max_tokens": 1}
    logged = [{"request": {**ask, "seed": i}, "response": chat_body(i, -0.1 - 1e-3 * (i % 4))}
              for i in range(50)]  # fmt: skip
    batch = [{"id": f"b{i}", "custom_id": f"c-{i}",
              "response": {"status_code": 200, "request_id": f"r{i}", "body": chat_body(i, -0.2)},
              "error": None} for i in range(50)]  # fmt: skip
    inputs = write_jsonl(tmp_path / "in.jsonl", [{"custom_id": f"c-{i}", "method": "POST",
                                                  "url": "/v1/chat/completions", "body": ask}
                                                 for i in range(50)])  # fmt: skip
    cases = {
        "logged": (
            logged,
            [{**x, "request": {**x["request"], "api-key": ""}} for x in logged],
            [],
        ),  # fmt: skip
        "batch": (batch, [{**x, "api-key": ""} for x in batch], ["--batch-input", inputs]),
    }
    for name, (fast, slow, extra) in cases.items():
        tables = []
        for label, lines in (("fast", fast), ("slow", slow)):
            path = write_jsonl(tmp_path / f"{name}-{label}.jsonl", lines)
            out = tmp_path / f"{name}-{label}"
            code, data, err = run_import(path, *extra, "-o", out)
            assert code == 0, err
            (run,) = read_runs([str(out)])
            tables.append(run.table.drop_columns(["run_id", "raw_body"]).to_pylist())
            assert run.meta["request"]["messages"] == ask["messages"]
        assert tables[0] == tables[1], name
