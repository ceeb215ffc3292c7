"""A review of `detcheck verify` as a new and a hostile user: each test is one defect found,
against fake OpenAI-compatible servers on 127.0.0.1 (tests/verify_engine.py), through the real
command line. Each fails on the branch it was written against; it passes once the defect is
fixed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from detcheck.cli import app
from fake_openai import FakeOpenAI, Reply
from verify_engine import Model

# six prompts: the fewest whose every one moving is a difference at alpha 0.01 over 3 looks
SIX = [("a", "The sky is"), ("b", "2 + 2 ="), ("c", "Hello! How are"), ("d", "def f(x):"),
       ("e", "Roses are red,"), ("f", "SELECT * FROM")]  # fmt: skip


def _prompts(tmp_path: Path, items) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"id": i, "prompt": p}) + "\n" for i, p in items))
    return path


@pytest.fixture
def six(tmp_path) -> Path:
    return _prompts(tmp_path, SIX)


@pytest.fixture
def many(tmp_path) -> Path:  # as many prompts as the built-in set
    return _prompts(tmp_path, [(f"q{k}", f"Question {k}:") for k in range(24)])


def edited(model: Model, edit):
    """A respond function: the model's answer, its body passed through `edit`."""

    def respond(i: int, request: dict) -> Reply:
        reply = model(i, request)
        if reply.status != 200:
            return reply
        body = json.loads(reply.body)
        edit(body, request)
        return Reply(200, json.dumps(body).encode())

    return respond


def refusing(status: int, message: str):
    def respond(i: int, request: dict) -> Reply:
        error = {"message": message, "type": "invalid_request_error", "code": None}
        return Reply(status, json.dumps({"error": error}).encode())

    return respond


def cli(args, env=None):
    env = {"OPENAI_API_KEY": "sk-test", **(env or {})}
    return CliRunner().invoke(app, ["verify", *args], env=env)


# 1 -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("side", ["candidate", "reference"])
def test_an_endpoint_that_refuses_exits_3_naming_its_side(tmp_path, six, side):
    # a wrong key (401), or a server that rejects top_logprobs (400): Refused is re-raised as
    # type(exc)(message), which Refused's constructor does not accept -> an internal
    # TypeError, exit 1: the exit code of `differs`
    bad = refusing(401, "Incorrect API key provided")
    with FakeOpenAI(bad if side == "candidate" else Model()) as cand, \
            FakeOpenAI(bad if side == "reference" else Model()) as ref:  # fmt: skip
        result = cli(["--base-url", cand.base_url, "--reference", ref.base_url, "--prompts",
                      str(six), "-o", str(tmp_path / "out"), "--json", "-q"])  # fmt: skip
    assert result.exit_code == 3, result.stdout
    assert json.loads(result.stdout)["exit_code"] == 3
    assert f"the {side}" in result.stderr and "internal error" not in result.stderr


def test_an_experiment_whose_reference_refuses_is_a_failed_measurement(tmp_path):
    with FakeOpenAI(Model()) as cand, FakeOpenAI(refusing(400, "no top_logprobs")) as ref:
        experiment = tmp_path / "watch.toml"
        experiment.write_text(
            f'[[measurement]]\nname = "provider"\nbase_url = "{cand.base_url}"\n'
            f'reference = "{ref.base_url}"\nmax_attempts = 1\n'
        )
        ran = CliRunner().invoke(app, ["run", str(experiment), "-o", str(tmp_path / "runs")],
                                 env={"OPENAI_API_KEY": "sk-test"})  # fmt: skip
    assert ran.exit_code == 3, ran.stderr  # now: 1 (as if it differed), an internal error
    assert "provider: FAILED" in ran.stdout


# 2 -----------------------------------------------------------------------------------------
def test_a_candidate_with_no_usable_logprobs_is_never_identical(tmp_path, six):
    # every answer carries an empty top_logprobs list: nothing can be compared, yet the
    # verdict is `identical` (all() of no prompts), exit 0, with calls.candidate = 0 after 36
    # paid requests
    def empty(body, request):
        body["choices"][0]["logprobs"]["content"][0]["top_logprobs"] = []

    with FakeOpenAI(edited(Model(), empty)) as cand, FakeOpenAI(Model()) as ref:
        result = cli(["--base-url", cand.base_url, "--reference", ref.base_url, "--prompts",
                      str(six), "-o", str(tmp_path / "out"), "--json", "-q"])  # fmt: skip
        sent = len(cand.requests)
    data = json.loads(result.stdout)
    assert data.get("verdict") != "identical", data.get("left_out")
    assert result.exit_code == 3  # an endpoint that cannot be measured
    assert sent > 0


def test_top_logprobs_0_is_a_usage_error(tmp_path, six):
    # verify compares top logprobs: with none asked for, a server that honours it sends none,
    # and every candidate is `identical`
    def honour(body, request):
        k = request.get("top_logprobs")
        content = body["choices"][0]["logprobs"]["content"][0]
        content["top_logprobs"] = content["top_logprobs"][:k]

    with FakeOpenAI(edited(Model(), honour)) as cand, \
            FakeOpenAI(edited(Model(weights=2, prefix="x"), honour)) as ref:  # fmt: skip
        result = cli(["--base-url", cand.base_url, "--reference", ref.base_url, "--prompts",
                      str(six), "-o", str(tmp_path / "out"), "--json", "-q",
                      "--top-logprobs", "0"])  # fmt: skip
    assert result.exit_code == 2, json.loads(result.stdout).get("verdict")


# 3 -----------------------------------------------------------------------------------------
def test_the_same_model_with_fewer_top_logprobs_is_not_called_differs(tmp_path, many):
    # a provider that caps top_logprobs at 3 serves the reference's very model; an anchor it
    # does not list counts as the least logprob it lists, so every prompt "moves" and the
    # verdict is `differs`: "it is not serving the same model"
    def cap(body, request):
        content = body["choices"][0]["logprobs"]["content"][0]
        content["top_logprobs"] = content["top_logprobs"][:3]

    with FakeOpenAI(edited(Model(), cap)) as cand, FakeOpenAI(Model()) as ref:
        result = cli(["--base-url", cand.base_url, "--reference", ref.base_url, "--prompts",
                      str(many), "-o", str(tmp_path / "out"), "--json", "-q"])  # fmt: skip
    data = json.loads(result.stdout)
    assert data.get("verdict") != "differs", (data["moved_prompts"], data["distance_nats"])
    assert result.exit_code != 1


# 4 -----------------------------------------------------------------------------------------
def test_a_prompt_set_too_small_to_ever_differ_is_refused(tmp_path):
    # with 5 prompts or fewer the Fisher test can never reach alpha / 3: another vocabulary
    # that moved on 4 of 4 prompts (the reference on 0) was `consistent`, exit 0, while the
    # same output said "another model family"
    four = _prompts(tmp_path, SIX[:4])
    with FakeOpenAI(Model(weights=2, prefix="piece")) as cand, FakeOpenAI(Model()) as ref:
        result = cli(["--base-url", cand.base_url, "--reference", ref.base_url, "--prompts",
                      str(four), "-o", str(tmp_path / "out"), "--json", "-q"])  # fmt: skip
        assert cand.requests == [] and ref.requests == []
    assert result.exit_code == 2
    assert "4 prompts can never show a difference" in result.stderr
    assert "give at least 6" in result.stderr


def test_another_model_family_differs_whatever_the_count(tmp_path, six):
    # another tokenizer is another model: `differs`, even where the count alone would not say
    with FakeOpenAI(Model(weights=2, prefix="piece")) as cand, FakeOpenAI(Model()) as ref:
        result = cli(["--base-url", cand.base_url, "--reference", ref.base_url, "--prompts",
                      str(six), "-o", str(tmp_path / "out"), "--json", "-q"])  # fmt: skip
    data = json.loads(result.stdout)
    assert (result.exit_code, data["verdict"]) == (1, "differs")
    assert data["vocabulary"]["other_family"]


# 5 -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_the_candidate_answers_alone_stops_verify(tmp_path, six, sig):
    # the candidate's third request (round 1, alone: one request in flight) brings the
    # signal; verify says "stopping" nowhere, carries on through all three rounds and prints a
    # verdict with exit 0
    holder: dict = {}
    model = Model(hold_s=0.05)

    def respond(i: int, request: dict) -> Reply:
        if i == 2:
            os.kill(holder["pid"], sig)
        return model(i, request)

    with FakeOpenAI(respond) as cand, FakeOpenAI(Model(hold_s=0.05)) as ref:
        proc = subprocess.Popen(
            [sys.executable, "-m", "detcheck", "verify", "--base-url", cand.base_url,
             "--reference", ref.base_url, "--prompts", str(six), "-o", str(tmp_path / "out"),
             "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "OPENAI_API_KEY": "sk-test"},
        )  # fmt: skip
        holder["pid"] = proc.pid
        out, err = proc.communicate(timeout=120)
        sent = len(cand.requests)
    assert proc.returncode == 130, (out[:200], err[-300:])
    assert sent < 54  # it stopped: not every round was sent
    assert json.loads(out)["exit_code"] == 130


# 6 -----------------------------------------------------------------------------------------
def test_the_newest_stored_reference_is_a_complete_verification(tmp_path, six):
    out = tmp_path / "refs"
    with FakeOpenAI(Model()) as cand, FakeOpenAI(Model()) as ref, \
            FakeOpenAI(Model(down=True)) as down:  # fmt: skip
        good = cli(["--base-url", cand.base_url, "--reference", ref.base_url, "--prompts",
                    str(six), "-o", str(out), "--json", "-q"])  # fmt: skip
        assert good.exit_code == 0, good.stderr
        complete = json.loads(good.stdout)["out"]
        # a later verification whose candidate is down: it stops after the reference's first
        # round, its _verify.json left "running", its reference side a third of the calls
        failed = cli(["--base-url", down.base_url, "--reference", ref.base_url, "--prompts",
                      str(six), "-o", str(out), "--json", "-q", "--max-attempts",
                      "1"])  # fmt: skip
        assert failed.exit_code == 3
        again = cli(["--base-url", cand.base_url, "--reference", str(out), "-o",
                     str(tmp_path / "again"), "--json", "-q"])  # fmt: skip
    data = json.loads(again.stdout)
    assert data["settings"]["reference_stored"] == complete
    assert data["reference_calls_stored"] == 6 * 9


# 7 -----------------------------------------------------------------------------------------
def test_an_object_store_out_is_refused_before_anything_is_sent(tmp_path, six, monkeypatch):
    # Path("s3://bucket/x") is "s3:/bucket/x": is_uri() never sees the "://"; every request
    # of the first round is sent, a local "s3:" tree is made, and it ends in an internal
    # ArrowInvalid error, exit 1
    monkeypatch.chdir(tmp_path)
    with FakeOpenAI(Model()) as cand, FakeOpenAI(Model()) as ref:
        result = cli(["--base-url", cand.base_url, "--reference", ref.base_url, "--prompts",
                      str(six), "-o", "s3://bucket/x", "--json", "-q"])  # fmt: skip
        sent = len(cand.requests) + len(ref.requests)
    assert result.exit_code == 2, result.stdout
    assert sent == 0 and not (tmp_path / "s3:").exists()


# 8 -----------------------------------------------------------------------------------------
def test_an_unreachable_reference_is_named_the_reference(tmp_path, six):
    with FakeOpenAI(Model()) as cand:
        result = cli(["--base-url", cand.base_url, "--reference", "http://127.0.0.1:9/v1",
                      "--prompts", str(six), "-o", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 3
    assert "the reference" in result.stderr, result.stderr  # now: "is --base-url right?"


# 9 -----------------------------------------------------------------------------------------
def test_a_dry_run_names_the_reference_and_prints_no_credential(tmp_path, six):
    with FakeOpenAI(Model()) as cand, FakeOpenAI(Model()) as ref:
        secret_cand = cand.base_url.replace("http://", "http://u:CANDPASS@") + "?api-key=sk-CQ"
        secret_ref = ref.base_url.replace("http://", "http://u:REFPASS@") + "?key=sk-RQ"
        text = cli(["--base-url", secret_cand, "--reference", secret_ref, "--prompts",
                    str(six), "-o", str(tmp_path), "--dry-run"])  # fmt: skip
        as_json = cli(["--base-url", secret_cand, "--reference", secret_ref, "--prompts",
                       str(six), "-o", str(tmp_path), "--dry-run", "--json"])  # fmt: skip
    for result in (text, as_json):
        assert result.exit_code == 0
        for secret in ("CANDPASS", "sk-CQ", "REFPASS", "sk-RQ"):
            assert secret not in result.stdout + result.stderr, secret
    # "72 requests to MODEL at CANDIDATE": half of them go to the reference, never named
    assert ref.base_url.split("//")[1] in text.stdout, text.stdout


def test_a_dry_run_counts_the_requests_verify_sends(tmp_path, six):
    # --n 10 is 3 per prompt per round (9): the plan says 10 per prompt
    with FakeOpenAI(Model()) as cand, FakeOpenAI(Model()) as ref:
        args = ["--base-url", cand.base_url, "--reference", ref.base_url, "--prompts",
                str(six), "-o", str(tmp_path), "--n", "10", "--json", "-q"]  # fmt: skip
        plan = json.loads(cli([*args, "--dry-run"]).stdout)
        done = cli(args)
        assert done.exit_code == 0, done.stderr
        sent = len(cand.requests) + len(ref.requests)
    assert plan["requests"] == sent, (plan["requests"], sent)


def test_max_cost_names_the_model_whose_price_is_unknown(tmp_path, six):
    with FakeOpenAI(Model()) as cand, FakeOpenAI(Model()) as ref:
        result = cli(["--base-url", cand.base_url, "--model", "gpt-4o-2024-08-06",
                      "--reference", ref.base_url, "--reference-model", "my-own-llama",
                      "--prompts", str(six), "-o", str(tmp_path), "--max-cost", "1"])  # fmt: skip
    assert result.exit_code == 2
    # now: "no list price is known for 'gpt-4o-2024-08-06'", the model whose price is known
    assert "my-own-llama" in result.stderr, result.stderr


# 10 ----------------------------------------------------------------------------------------
def test_the_text_never_breaks_a_path_or_url_across_lines(tmp_path, six):
    out = tmp_path / "provider-monitoring" / "verifications-of-the-candidate-endpoint"
    with FakeOpenAI(Model()) as cand, FakeOpenAI(Model()) as ref:
        result = cli(["--base-url", cand.base_url, "--reference", ref.base_url, "--prompts",
                      str(six), "-o", str(out), "-q"])  # fmt: skip
    assert result.exit_code == 0, result.stderr
    (root,) = out.iterdir()
    # textwrap breaks on hyphens: ".../provider-\n  monitoring/..." cannot be copied
    assert str(root) in result.stdout, result.stdout


# 11 ----------------------------------------------------------------------------------------
def test_concurrency_0_is_a_usage_error(tmp_path, six):
    with FakeOpenAI(Model()) as cand, FakeOpenAI(Model()) as ref:
        result = cli(["--base-url", cand.base_url, "--reference", ref.base_url, "--prompts",
                      str(six), "-o", str(tmp_path), "--concurrency", "0",
                      "--dry-run"])  # fmt: skip
    assert result.exit_code == 2  # now: 0 is read as "not given": 8


MALFORMED = ["[]", '{"settings": {"reference": {"model": "m"}, "prompts": "x"}}']


@pytest.mark.parametrize("content", MALFORMED)
def test_a_malformed_stored_verification_is_a_usage_error(tmp_path, content):
    stored = tmp_path / "stored"
    (stored / "reference").mkdir(parents=True)
    (stored / "_verify.json").write_text(content)
    with FakeOpenAI(Model()) as cand:
        result = cli(["--base-url", cand.base_url, "--reference", str(stored), "-o",
                      str(tmp_path / "out"), "--json"])  # fmt: skip
    assert result.exit_code == 2, result.stdout  # now: an internal error, exit 1
