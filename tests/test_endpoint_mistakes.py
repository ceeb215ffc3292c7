"""The mistakes people make pointing detcheck at an endpoint, each diagnosed in one line (its
exact text pinned here), with the corrected command where there is one, and no empty run left
behind: a base URL without /v1, one ending in the API path, no scheme, a model the endpoint
does not serve, no --model for a server that is not OpenAI, and the key's variable by name."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from detcheck.cli import app
from fake_openai import FakeOpenAI, Reply

runner = CliRunner()
KEY = {"OPENAI_API_KEY": "unused"}


def flip(*args, env=KEY):
    return runner.invoke(app, ["flip", "-q", *args], env=env)


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line]


def test_a_base_url_without_v1_is_diagnosed_and_leaves_no_run(tmp_path):
    with FakeOpenAI() as server:
        root = server.base_url.removesuffix("/v1")
        result = flip("-n", "5", "--base-url", root, "--model", "m", "-o", str(tmp_path))
    assert result.exit_code == 3
    assert error_lines(result) == [
        f"detcheck: error: {root} answered 404 (Invalid URL (POST /chat/completions)): did you "
        f"mean --base-url {root}/v1?",
        f"nothing was kept; run again with: detcheck flip --model m --base-url {root}/v1 -n 5 "
        f"-o {tmp_path}",
    ]
    assert server.wrong_paths and not server.requests
    assert list(tmp_path.iterdir()) == []  # no empty run to trip over (or to --resume)


def test_a_sweep_suggests_the_sweep_corrected_not_its_first_flip(tmp_path):
    with FakeOpenAI() as server:
        root = server.base_url.removesuffix("/v1")
        args = ["sweep", "-q", "-n", "5", "--base-url", root, "--model", "m", "--concurrency",
                "1,4", "--background-loads", "0,2", "-o", str(tmp_path)]  # fmt: skip
        result = runner.invoke(app, args, env=KEY)
    assert result.exit_code == 3
    assert error_lines(result)[1] == (
        f"nothing was kept; run again with: detcheck sweep --model m --base-url {root}/v1 -n 5 "
        f"-o {tmp_path} --concurrency 1,4 --background-loads 0,2"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_base_url_ending_in_the_api_path_is_used_without_it(tmp_path):
    with FakeOpenAI() as server:
        given = server.base_url + "/chat/completions"
        result = flip("-n", "3", "--base-url", given, "--model", "gpt-4o-2024-08-06",
                      "-o", str(tmp_path))  # fmt: skip
        paths = list(server.paths)
    assert result.exit_code == 0, result.stderr
    assert (
        f"detcheck: warning: --base-url ends in /chat/completions, which detcheck adds itself: "
        f"using {server.base_url}"
    ) in error_lines(result)
    assert paths == ["/v1/chat/completions"] * 3
    (run_dir,) = tmp_path.iterdir()
    assert json.loads((run_dir / "_run.json").read_text())["endpoint"] == server.base_url


def test_a_base_url_without_a_scheme_echoes_it_and_suggests_one():
    result = flip("--base-url", "127.0.0.1:8080/v1", "--model", "m")
    assert result.exit_code == 2
    assert error_lines(result) == [
        "detcheck: error: --base-url '127.0.0.1:8080/v1' has no scheme: did you mean "
        "--base-url http://127.0.0.1:8080/v1?"
    ]
    remote = flip("--base-url", "api.example.com/v1", "--model", "m", "--dry-run")
    assert error_lines(remote) == [
        "detcheck: error: --base-url 'api.example.com/v1' has no scheme: did you mean "
        "--base-url https://api.example.com/v1?"
    ]
    # what was typed is echoed without the credentials it may hold
    secret = flip("--base-url", "alice:s3cret@10.0.0.5:8000/v1", "--model", "m")
    assert "s3cret" not in secret.stderr and "http://10.0.0.5:8000/v1" in secret.stderr


def test_an_unknown_model_lists_what_the_endpoint_serves(tmp_path):
    def unknown(i, request):
        error = {"message": f"The model `{request['model']}` does not exist",
                 "type": "invalid_request_error", "code": "model_not_found"}  # fmt: skip
        return Reply(404, json.dumps({"error": error}).encode())

    with FakeOpenAI(unknown, models=["llama-3.1-8b", "qwen2.5-7b"]) as server:
        result = flip("-n", "5", "--base-url", server.base_url, "--model", "gpt-5o",
                      "-o", str(tmp_path))  # fmt: skip
    assert result.exit_code == 3
    assert error_lines(result) == [
        f"detcheck: error: {server.base_url} does not serve model 'gpt-5o' (404: The model "
        "`gpt-5o` does not exist); it serves: llama-3.1-8b, qwen2.5-7b",
        f"nothing was kept; run again with one of them, e.g.: detcheck flip --model "
        f"llama-3.1-8b --base-url {server.base_url} -n 5 -o {tmp_path}",
    ]
    assert list(tmp_path.iterdir()) == []
    with FakeOpenAI(unknown, models=None) as server:  # no /v1/models: said so
        result = flip("-n", "5", "--base-url", server.base_url, "--model", "gpt-5o",
                      "-o", str(tmp_path))  # fmt: skip
    assert error_lines(result)[0] == (
        f"detcheck: error: {server.base_url} does not serve model 'gpt-5o' (404: The model "
        "`gpt-5o` does not exist); its /models did not say what it serves (HTTP 404: Not Found)"
    )


def test_a_local_server_without_model_measures_the_one_it_serves_and_says_so(tmp_path):
    with FakeOpenAI(models=["gpt-4o-2024-08-06"]) as server:
        args = ["flip", "-n", "3", "--base-url", server.base_url, "-o", str(tmp_path)]
        result = runner.invoke(app, args, env=KEY)  # not -q: it says which model it took
    assert result.exit_code == 0, result.stderr
    assert (
        f"--model not given: measuring 'gpt-4o-2024-08-06', the one model {server.base_url} serves"
    ) in error_lines(result)
    (run_dir,) = tmp_path.iterdir()
    assert json.loads((run_dir / "_run.json").read_text())["config"]["model"] == (
        "gpt-4o-2024-08-06"
    )


def test_a_local_server_without_model_serving_several_or_none_is_refused(tmp_path):
    with FakeOpenAI(models=["a", "b"]) as server:
        several = flip("--base-url", server.base_url, "-o", str(tmp_path))
        assert not server.requests  # nothing sent, nothing spent
    assert several.exit_code == 2
    assert error_lines(several) == [
        f"detcheck: error: --model not given, and {server.base_url} serves 2 models: a, b; "
        "pick one with --model"
    ]
    with FakeOpenAI(models=None) as server:
        unknown = flip("--base-url", server.base_url, "-o", str(tmp_path))
    assert error_lines(unknown) == [
        f"detcheck: error: --model not given: {server.base_url} is not OpenAI, so its models "
        "are its own, and its /models did not say what it serves (HTTP 404: Not Found); give "
        "--model"
    ]
    planned = flip("--base-url", "http://localhost:8080/v1", "--dry-run")
    assert planned.exit_code == 0  # it sends nothing (so it cannot ask), and says so
    assert error_lines(planned) == [
        "warning: --model not given: a dry run sends nothing, so it cannot ask "
        "http://localhost:8080/v1 what it serves; this plan is for gpt-4o-2024-08-06, the default"
    ]
    assert list(tmp_path.iterdir()) == []


def test_probe_and_generate_take_the_one_served_model_too(tmp_path):
    from fake_openai import story_reply

    with FakeOpenAI(models=["smol"]) as server:
        probed = runner.invoke(app, ["probe", "--base-url", server.base_url, "--json"], env=KEY)
        asked = [r["model"] for r in server.requests]
    assert probed.exit_code == 0, probed.stderr
    assert json.loads(probed.stdout)["model"] == "smol" and set(asked) == {"smol"}
    with FakeOpenAI(story_reply(), models=["smol"]) as server:
        args = ["generate", "-n", "2", "--base-url", server.base_url, "-o", str(tmp_path), "-q"]
        generated = runner.invoke(app, args, env=KEY)
        asked = [r["model"] for r in server.requests]
    assert generated.exit_code == 0, generated.stderr
    assert asked == ["smol", "smol"]


def test_a_refused_key_leaves_no_run_and_does_not_suggest_resume(tmp_path):
    def refused(i, request):
        return Reply(401, b'{"error": {"message": "Incorrect API key provided"}}')

    with FakeOpenAI(refused) as server:
        result = flip("-n", "5", "--base-url", server.base_url, "--model", "m",
                      "-o", str(tmp_path))  # fmt: skip
    assert result.exit_code == 3
    assert error_lines(result) == [
        "detcheck: error: the endpoint rejected the API key (401): Incorrect API key provided",
        "nothing was kept: put that right and run the same command again",
    ]
    assert "--resume" not in result.stderr and list(tmp_path.iterdir()) == []


def test_key_env_names_the_variable_holding_the_key(tmp_path):
    with FakeOpenAI() as server:
        args = ["-n", "2", "--base-url", server.base_url, "--model", "gpt-4o-2024-08-06"]
        ok = flip(*args, "--key-env", "MY_LLM_KEY", "-o", str(tmp_path),
                  env={"MY_LLM_KEY": "sk-local-0123456789"})  # fmt: skip
        assert ok.exit_code == 0, ok.stderr
        assert server.headers[0]["authorization"] == "Bearer sk-local-0123456789"
        missing = flip(*args, "--key-env", "MY_LLM_KEY", env={})
    assert error_lines(missing) == [
        "detcheck: error: MY_LLM_KEY is not set. A local server usually takes any key: run with "
        "MY_LLM_KEY=unused (or export it)"
    ]
    leaked = flip(*args, "--key-env", "sk-proj-abcdefghijklmnop0123456789")
    assert leaked.exit_code == 2 and "abcdefghijklmnop" not in leaked.stderr
    assert error_lines(leaked) == [
        "detcheck: error: --key-env takes the name of an environment variable (like "
        "OPENAI_API_KEY), not the key itself"
    ]
    for command in ("generate", "sweep", "probe", "audit"):
        result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "120"})
        assert "--key-env" in result.stdout, command


def test_a_model_that_gives_no_logprobs_leaves_no_run(tmp_path):
    def refusing(i, request):
        refusal = {"type": "refusal", "refusal": "no logprobs here"}
        output = [{"type": "message", "content": [refusal]}]
        body = {"id": f"r{i}", "object": "response", "status": "completed", "output": output}
        return Reply(200, json.dumps(body).encode())

    with FakeOpenAI(refusing) as server:
        result = flip("-n", "5", "--api", "responses", "--base-url", server.base_url, "--model",
                      "o3", "-o", str(tmp_path))  # fmt: skip
    assert result.exit_code == 3
    assert "--resume" not in result.stderr and list(tmp_path.iterdir()) == []
    assert error_lines(result)[-1] == (
        "nothing was kept: put that right and run the same command again"
    )
