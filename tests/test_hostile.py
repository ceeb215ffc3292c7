"""A deliberately hostile endpoint on 127.0.0.1: it drips, never finishes, bombs, nests, lies about
numbers, echoes the key in disguise, redirects, and writes escape sequences. detcheck must record
what happened, keep going or stop cleanly, and never hang, crash, leak or lose data."""

from __future__ import annotations

import gzip
import json
import time
import warnings

import pytest
from typer.testing import CliRunner

from detcheck.cli import app
from detcheck.store import read_run
from fake_openai import FakeOpenAI, Reply, chat_body, coin_flip

runner = CliRunner()
KEY = "sk-proj-HOSTILE-0123456789abcdefghijklmnop"


def flip(server, out, *args, base_url=None, env=None):
    return runner.invoke(
        app,
        [
            "flip",
            "--out",
            str(out),
            "-q",
            "--json",
            "--backoff-s",
            "0.01",
            "--max-backoff-s",
            "0.02",
            *map(str, args),
        ],
        env={
            "OPENAI_API_KEY": KEY,
            "OPENAI_BASE_URL": base_url or server.base_url,
            **(env or {}),
        },
    )


def the_run(out):
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return read_run(run_dir)


def first_bad(bad_reply, how_many=1):
    """The first `how_many` requests get `bad_reply(i, request)`, the rest a good coin flip."""

    def respond(i, request):
        return bad_reply(i, request) if i < how_many else coin_flip(i, request)

    return respond


def kinds(out):
    table = the_run(out).table
    return [
        k
        for k, ok in zip(table.column("error_type").to_pylist(), table.column("ok"))
        if not ok.as_py()
    ]


# --- hangs and memory ------------------------------------------------------------------------


def drip(seconds: float):
    """Headers at once, then the body a byte every 0.2 s: no single read ever times out."""
    body = json.dumps(chat_body(0, -0.04)).encode()

    def write(wfile):
        deadline = time.monotonic() + seconds
        for byte in body:
            if time.monotonic() > deadline:
                return
            wfile.write(bytes([byte]))
            wfile.flush()
            time.sleep(0.2)

    return Reply(200, headers={"content-length": str(len(body))}, stream=write)


def endless_chunks(seconds: float):
    """A chunked body that keeps coming (a chunk every 0.2 s) and never ends in time."""

    def write(wfile):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            wfile.write(b"1\r\n \r\n")
            wfile.flush()
            time.sleep(0.2)

    return Reply(200, headers={"transfer-encoding": "chunked"}, stream=write)


@pytest.mark.parametrize("hostile", [drip, endless_chunks], ids=["drip", "endless-chunked"])
def test_timeout_bounds_the_whole_request(tmp_path, hostile):
    # before: the SDK's timeout is per read, so each attempt lasted as long as the server liked
    with FakeOpenAI(first_bad(lambda i, r: hostile(20), how_many=2)) as server:
        started = time.monotonic()
        result = flip(server, tmp_path, "--n", 3, "--concurrency", 1, "--timeout", 1)
        took_s = time.monotonic() - started
    assert result.exit_code == 0, result.stderr
    assert kinds(tmp_path) == ["timeout", "timeout"]  # recorded, retried, then three good ones
    assert took_s < 15  # not the 2 x 20 s the server wanted (a hang bound, not a speed target)


def gzip_bomb(i, request):
    # ~200 KB on the wire, 200 MB once decoded
    return Reply(200, gzip.compress(b"0" * 200_000_000, 9), {"content-encoding": "gzip"})


def endless_body(i, request):
    """200 MB of body with no length announced (read until the connection closes)."""

    def write(wfile):
        block = b" " * 1_000_000
        for _ in range(200):
            wfile.write(block)

    return Reply(200, stream=write)


def declared_huge(i, request):
    def write(wfile):
        wfile.write(b" " * 1000)

    return Reply(200, headers={"content-length": str(200_000_000)}, stream=write)


@pytest.mark.parametrize(
    "bomb", [gzip_bomb, endless_body, declared_huge], ids=["gzip-bomb", "200MB", "declared-200MB"]
)
def test_oversized_bodies_are_failed_attempts_not_memory(tmp_path, bomb):
    with FakeOpenAI(first_bad(bomb)) as server:
        result = flip(server, tmp_path, "--n", 4, "--concurrency", 2)
    assert result.exit_code == 0, result.stderr
    assert kinds(tmp_path) == ["body_rejected"]
    table = the_run(tmp_path).table
    error = [e for e in table.column("error").to_pylist() if e][0]
    assert "8,388,608 bytes" in error  # the documented limit is named


def test_deeply_nested_json_is_a_malformed_response(tmp_path):
    nested = Reply(200, b"[" * 100_000 + b"]" * 100_000, usable=False)
    with FakeOpenAI(first_bad(lambda i, r: nested)) as server:
        result = flip(server, tmp_path, "--n", 3)
    assert result.exit_code == 0, result.stderr  # before: RecursionError, "internal error"
    assert kinds(tmp_path) == ["malformed_body"]


def test_error_messages_are_capped(tmp_path):
    huge = json.dumps({"error": {"message": "x" * 1_000_000}}).encode()
    # one answer first, so the run is kept (a refusal of the very first calls leaves none)
    with FakeOpenAI(lambda i, r: coin_flip(i, r) if i == 0 else Reply(400, huge)) as server:
        result = flip(server, tmp_path, "--n", 2, "--concurrency", 1)
    assert result.exit_code == 3
    assert len(result.stderr) < 2_000
    error = the_run(tmp_path).table.column("error")[1].as_py()
    assert len(error) < 1_000 and "more characters" in error


@pytest.mark.parametrize(
    "option,value",
    [
        ("--rpm", "nan"),
        ("--rpm", "inf"),
        ("--temperature", "nan"),
        ("--timeout", "nan"),
        ("--timeout", "-1"),
        ("--timeout", "inf"),
    ],
)
def test_non_finite_and_negative_numbers_are_bad_input(tmp_path, option, value):
    with FakeOpenAI() as server:
        result = flip(server, tmp_path, "--n", 2, option, value)
        assert result.exit_code == 2, result.stderr
        assert option in result.stderr
        assert not server.requests


# --- wrong results ---------------------------------------------------------------------------


def with_heads(value):
    """A 200 whose Heads logprob (generated token and top entry) is `value`, as JSON text."""

    def respond(i, request):
        text = json.dumps(chat_body(i, -0.04)).replace("-0.04", "@@", 2).replace("@@", value)
        return Reply(200, text.encode(), usable=False)

    return respond


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "0.5", '"-0.04"', "null"])
def test_unusable_target_logprobs_never_count(tmp_path, value):
    with FakeOpenAI(first_bad(with_heads(value), how_many=3)) as server:
        result = flip(server, tmp_path, "--n", 5, "--concurrency", 1)
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["n"] == 5 and data["errors"] == 3  # before: counted as successes with no value
    assert kinds(tmp_path) == ["unusable_logprob"] * 3
    assert server.successes == 5


def test_extreme_but_usable_values_give_a_clean_report(tmp_path):
    values = iter(["-1e308", "-1e-300", "-5e-324"] + ["-0.04"] * 10)
    respond = lambda i, r: with_heads(next(values))(i, r)  # noqa: E731
    with FakeOpenAI(respond) as server, warnings.catch_warnings():
        warnings.simplefilter("error")  # a numpy RuntimeWarning fails the test
        result = flip(server, tmp_path, "--n", 6, "--concurrency", 1)
    assert result.exit_code == 0, result.stderr
    assert "RuntimeWarning" not in result.stderr
    text = result.stdout
    assert "NaN" not in text and "Infinity" not in text  # json.dumps writes nan/inf like this
    assert json.loads(text)["n"] == 6


def test_out_of_range_integers_are_stored_as_null_and_the_run_stays_readable(tmp_path):
    def big(i, request):
        body = chat_body(i, -0.04)
        body["usage"]["prompt_tokens"] = [2**40, 10**30, -(2**63)][i % 3]
        body["usage"]["completion_tokens"] = 10**400 if i == 1 else 1
        return Reply(200, json.dumps(body).encode())

    with FakeOpenAI(big) as server:
        result = flip(server, tmp_path, "--n", 6)
    assert result.exit_code == 0, result.stderr  # before: the part could not be written
    table = the_run(tmp_path).table
    assert table.column("prompt_tokens").to_pylist() == [None] * 6
    assert str(10**30) in table.column("raw_body")[0].as_py() or str(2**40) in "".join(
        table.column("raw_body").to_pylist()
    )
    assert runner.invoke(app, ["analyze", str(tmp_path)]).exit_code == 0


def test_show_prints_rows_with_null_logprobs(tmp_path):
    def holes(i, request):
        text = json.dumps(chat_body(i, -0.04)).replace("-12.0,", "NaN,", 1)
        return Reply(200, text.encode())

    with FakeOpenAI(holes) as server:
        assert flip(server, tmp_path, "--n", 2).exit_code == 0
    (run_dir,) = tmp_path.iterdir()
    shown = runner.invoke(app, ["show", str(run_dir)])
    assert shown.exit_code == 0, shown.stderr  # before: TypeError, "internal error"
    assert '"tok0"' in shown.stdout and "null" in shown.stdout


def test_another_model_and_a_redirect_to_another_origin_are_noted(tmp_path):
    with FakeOpenAI() as elsewhere:

        def moved(i, request):
            if i < 2:  # a 307 keeps the method and body
                url = elsewhere.base_url + "/chat/completions"
                return Reply(307, b"", {"location": url})
            body = chat_body(i, -0.04, model="gpt-3.5-turbo" if i % 2 else "gpt-4o-2024-08-06")
            return Reply(200, json.dumps(body).encode())

        with FakeOpenAI(moved) as server:
            result = flip(server, tmp_path, "--n", 6, "--concurrency", 1)
    assert result.exit_code == 0, result.stderr
    assert result.stderr.count("redirected to another origin") == 1
    assert result.stderr.count("answered as 'gpt-3.5-turbo'") == 1
    run = the_run(tmp_path)
    final = run.table.column("final_url").to_pylist()
    assert final[:2] == [elsewhere.base_url + "/chat/completions"] * 2 and final[2:] == [None] * 4
    assert run.meta["notes"] == {
        "other_model": 2,
        "redirected": 2,
        "background_requests": 0,
        "background_failed": 0,
    }
    assert run.table.column("response_model").to_pylist().count("gpt-3.5-turbo") == 2


@pytest.mark.parametrize("labels", ["Heads,,Tails", ",", "Heads,"])
def test_empty_labels_are_refused(tmp_path, labels):
    with FakeOpenAI() as server:
        result = flip(server, tmp_path, "--n", 1, "--labels", labels)
    assert result.exit_code == 2 and "--labels" in result.stderr


def test_labels_holding_the_separator_are_refused_in_experiment_files(tmp_path):
    exp = tmp_path / "e.toml"
    exp.write_text('[[measurement]]\nbase_url = "http://127.0.0.1:9/v1"\nlabels = ["He,ads"]\n')
    result = runner.invoke(app, ["run", str(exp)])
    assert result.exit_code == 2 and "separator" in result.stderr and "e.toml:3" in result.stderr


def test_compare_exits_2_on_any_error(tmp_path, recording):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(recording, bad)
    meta = json.loads((bad / "run.json").read_text())
    meta["config"] = 5  # hand-edited
    (bad / "run.json").write_text(json.dumps(meta))
    result = runner.invoke(app, ["compare", str(recording), str(bad)])
    assert result.exit_code == 2, result.stderr  # before: 1 ("drift") from an internal error
    assert "config" in result.stderr


# --- secrets ---------------------------------------------------------------------------------


def disguised_key(i, request):
    """The key echoed as a JSON-escaped token and as a top entry's bytes array."""
    escaped = "".join(f"\\u{ord(c):04x}" if j % 3 == 0 else c for j, c in enumerate(KEY))
    body = chat_body(i, -0.04)
    body["system_fingerprint"] = "@FP@"
    top = body["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
    top[5]["token"] = "@TOKEN@"
    top[6]["bytes"] = list(KEY.encode())
    text = json.dumps(body).replace("@FP@", escaped).replace("@TOKEN@", escaped)
    return Reply(200, text.encode())


def key_forms(key: str) -> list[bytes]:
    """Every spelling of the key that must not reach disk or the terminal."""
    return [
        key.encode(),
        key[5:].encode(),  # the tail alone
        ",".join(str(b) for b in key.encode()).encode(),
        ", ".join(str(b) for b in key.encode()).encode(),
    ]


def assert_nowhere(secrets: list[bytes], directory, *texts: str):
    for path in directory.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for secret in secrets:
                assert secret not in data, (path, secret)
    for text in texts:
        for secret in secrets:
            assert secret.decode() not in text


def test_a_key_echoed_json_escaped_or_as_bytes_never_reaches_disk(tmp_path):
    with FakeOpenAI(disguised_key) as server:
        result = flip(server, tmp_path, "--n", 3)
    assert result.exit_code == 0, result.stderr
    assert_nowhere(key_forms(KEY), tmp_path, result.stdout, result.stderr)
    run = the_run(tmp_path)
    raw = run.table.column("raw_body")[0].as_py()
    assert json.loads(raw)["system_fingerprint"] == "[REDACTED]"  # the raw body stays JSON
    assert run.table.column("system_fingerprint")[0].as_py() == "[REDACTED]"


def test_probe_redacts_what_the_server_echoes(tmp_path):
    def echo(i, request):
        body = json.dumps({"error": {"message": f"bad key {KEY}"}}).encode()
        return Reply(401, body) if i == 0 else disguised_key(i, request)

    with FakeOpenAI(echo) as server:
        for args in ([], ["--json"]):
            result = runner.invoke(
                app,
                ["probe", "--base-url", server.base_url, "--model", "m", *args],
                env={"OPENAI_API_KEY": KEY},
            )
            # the first probe's main request is refused (401): it tested nothing, exit 3
            assert result.exit_code == (3 if not args else 0), result.stderr
            assert_nowhere(key_forms(KEY), tmp_path, result.stdout, result.stderr)
            assert "[REDACTED]" in result.stdout


def test_credentials_in_the_base_url_stay_out_of_everything(tmp_path):
    with FakeOpenAI() as server:
        url = server.base_url.replace("http://", "http://alice:pw-s3cr3t-value@")
        url += "?api-version=2024-10-21&sig=sig-s3cr3t-value"
        result = flip(server, tmp_path, "--n", 3, base_url=url)
        assert result.exit_code == 0, result.stderr
        # the query string goes with every request; it does not mangle the path
        assert server.paths[0] == (
            "/v1/chat/completions?api-version=2024-10-21&sig=sig-s3cr3t-value"
        )
    secrets = [b"pw-s3cr3t-value", b"sig-s3cr3t-value", b"alice"]
    assert_nowhere(secrets, tmp_path, result.stdout, result.stderr)
    # an unreachable endpoint's error names the URL without them
    dead = url.replace(f":{server.base_url.split(':')[2].split('/')[0]}", ":9")
    failed = flip(server, tmp_path / "dead", "--n", 1, "--max-attempts", 1, base_url=dead)
    assert failed.exit_code == 3
    assert "127.0.0.1:9/v1" in failed.stderr
    assert_nowhere(secrets, tmp_path, failed.stdout, failed.stderr)


def test_an_api_key_in_place_of_its_variable_name_is_refused_unseen(tmp_path):
    exp = tmp_path / "e.toml"
    exp.write_text(f'[[measurement]]\nbase_url = "http://127.0.0.1:9/v1"\napi_key_env = "{KEY}"\n')
    result = runner.invoke(app, ["run", str(exp)])
    assert result.exit_code == 2
    assert "api_key_env" in result.stderr and "e.toml:3" in result.stderr
    assert KEY not in result.stderr and KEY[5:20] not in result.stderr


# --- the terminal ----------------------------------------------------------------------------


def test_server_text_cannot_drive_the_terminal_or_forge_log_lines(tmp_path):
    forged = "fp\x1b]0;pwned\x07\x1b[2J\r\ndetcheck: all clear"

    def hostile(i, request):
        if i == 0:
            message = "busy\n2026-01-01 detcheck: run complete\x1b[31m"
            return Reply(503, json.dumps({"error": {"message": message}}).encode())
        return Reply(200, json.dumps(chat_body(i, -0.04, fingerprint=forged)).encode())

    with FakeOpenAI(hostile) as server:
        result = flip(server, tmp_path, "--n", 3, "--max-attempts", 1)
        assert result.exit_code == 3
        ok = flip(server, tmp_path / "ok", "--n", 3)
    for text in (result.stderr, ok.stdout, ok.stderr):
        assert "\x1b" not in text and "\x07" not in text and "\r" not in text
    assert not any(line.startswith("2026-01-01 detcheck") for line in result.stderr.splitlines())
    assert not any(line.startswith("detcheck: all clear") for line in ok.stderr.splitlines())
    assert "fp\\x1b]0;pwned\\x07" in ok.stderr  # shown, escaped
    assert the_run(tmp_path / "ok").table.column("system_fingerprint")[0].as_py() == forged


def test_probe_is_bounded_by_its_timeout():
    with FakeOpenAI(lambda i, r: drip(20)) as server:
        started = time.monotonic()
        result = runner.invoke(
            app,
            ["probe", "--base-url", server.base_url, "--model", "m", "--timeout", "1"],
            env={"OPENAI_API_KEY": KEY},
        )
        took_s = time.monotonic() - started
    assert result.exit_code == 3, result.stderr
    assert "did not answer within 1 s" in result.stderr
    assert took_s < 15  # a hang bound: before, probe waited on the drip for 20 s per request
