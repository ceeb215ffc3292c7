"""The API shapes' parsers on bodies real servers send."""

from __future__ import annotations

import json

import pytest

from detcheck.shapes import shape

# llama.cpp's llama-server (b11434) answering /v1/completions: the logprobs come in the chat
# shape (`logprobs.content`, a list of {token, logprob, bytes, top_logprobs}), not the legacy
# one (`tokens`, `token_logprobs`, `top_logprobs` as {token: logprob} dicts)
LLAMA_SERVER_COMPLETION = {
    "choices": [
        {
            "text": " heads.",
            "index": 0,
            "logprobs": {
                "content": [
                    {"id": 8648, "token": " heads", "bytes": [32, 104, 101, 97, 100, 115],
                     "logprob": -0.592714786529541,
                     "top_logprobs": [
                         {"id": 8648, "token": " heads", "bytes": [32, 104, 101, 97, 100, 115],
                          "logprob": -0.592714786529541},
                         {"id": 216, "token": " ", "bytes": [32], "logprob": -1.3305383920669556},
                     ]},
                    {"id": 30, "token": ".", "bytes": [46], "logprob": -0.47334784269332886,
                     "top_logprobs": [
                         {"id": 30, "token": ".", "bytes": [46], "logprob": -0.47334784269332886},
                         {"id": 28, "token": ",", "bytes": [44], "logprob": -2.414107322692871},
                     ]},
                ]
            },
            "finish_reason": "length",
        }
    ],
    "created": 1796319253,
    "model": "smol",
    "system_fingerprint": "b0-unknown",
    "object": "text_completion",
    "usage": {"completion_tokens": 2, "prompt_tokens": 8, "total_tokens": 10,
              "prompt_tokens_details": {"cached_tokens": 7}},
    "id": "chatcmpl-Tp6AAWSQPJoRDCPRHA6rrVZ5LYitifsk",
}  # fmt: skip

LEGACY_COMPLETION = {
    "id": "cmpl-1",
    "object": "text_completion",
    "model": "tiny",
    "choices": [
        {
            "text": " Heads",
            "logprobs": {
                "tokens": [" Heads"],
                "token_logprobs": [-0.1],
                "top_logprobs": [{" Heads": -0.1, " Tails": -2.5}],
            },
            "finish_reason": "length",
        }
    ],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1},
}


def test_completions_read_llama_servers_chat_shaped_logprobs():
    parsed = shape("completions").parse(json.dumps(LLAMA_SERVER_COMPLETION))
    assert parsed.token == " heads" and parsed.logprob == -0.592714786529541
    assert [e["token"] for e in parsed.top_logprobs] == [" heads", " "]
    assert parsed.top_logprobs[0]["bytes"] == [32, 104, 101, 97, 100, 115]
    assert (parsed.prompt_tokens, parsed.completion_tokens, parsed.cached_tokens) == (8, 2, 7)
    assert parsed.system_fingerprint == "b0-unknown"
    whole = shape("completions").parse(json.dumps(LLAMA_SERVER_COMPLETION), whole=True)
    assert whole.generation.text == " heads." and whole.generation.tokens == [" heads", "."]
    assert whole.generation.finish_reason == "length"


def test_completions_still_read_the_legacy_shape():
    parsed = shape("completions").parse(json.dumps(LEGACY_COMPLETION))
    assert parsed.token == " Heads" and parsed.logprob == -0.1
    assert [e["token"] for e in parsed.top_logprobs] == [" Heads", " Tails"]
    assert parsed.generation is None


@pytest.mark.parametrize("logprobs", [None, {}, {"content": []}, {"content": "x"}, {"tokens": []}])
def test_completions_without_usable_logprobs_are_malformed_not_a_crash(logprobs):
    from detcheck.shapes._parse import MalformedResponse

    body = {**LEGACY_COMPLETION, "choices": [{"text": "x", "logprobs": logprobs}]}
    with pytest.raises(MalformedResponse) as info:
        shape("completions").parse(json.dumps(body))
    assert info.value.kind == "no_logprobs"


@pytest.mark.parametrize(
    "api, body",
    [
        ("chat", {"choices": [{"message": {"content": "Heads"}, "finish_reason": "stop"}],
                  "usage": {"prompt_tokens": 9, "completion_tokens": 1}}),
        ("completions", {"choices": [{"text": "Heads", "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 9, "completion_tokens": 1}}),
        ("responses", {"status": "completed", "usage": {"input_tokens": 9, "output_tokens": 1},
                       "output": [{"type": "message", "content": [
                           {"type": "output_text", "text": "Heads"}]}]}),
    ],
)  # fmt: skip
def test_each_shape_asks_without_logprobs_and_reads_the_text_only(api, body):
    from detcheck.config import FlipConfig

    config = FlipConfig(api=api, kind="generate", logprobs=False, seed=None)
    sent = shape(api).request_body(config)
    assert not {"logprobs", "top_logprobs", "include"} & set(sent)
    parsed = shape(api).parse(json.dumps(body), whole=True, logprobs=False)
    assert parsed.generation.text == "Heads" and parsed.generation.finish_reason == "stop"
    assert parsed.generation.tokens is None and parsed.token is None  # unknown, not made up
    assert (parsed.prompt_tokens, parsed.completion_tokens) == (9, 1)
    with pytest.raises(Exception, match="logprobs"):  # with logprobs asked for, it is malformed
        shape(api).parse(json.dumps(body), whole=True)


def test_a_measurement_without_logprobs_must_be_a_generation():
    from detcheck.config import FlipConfig
    from detcheck.errors import UsageError

    with pytest.raises(UsageError, match="generation"):
        FlipConfig(logprobs=False).validate()
    assert "logprobs" not in FlipConfig().to_dict()  # other runs' run.json reads as before
    assert FlipConfig(kind="generate", logprobs=False).to_dict()["logprobs"] is False
