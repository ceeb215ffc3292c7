"""A real trained model under llama.cpp's server: SmolLM2-135M-Instruct, as shipped (Q4_1) and as
an F32 copy of the same weights, with parallel slots and continuous batching on 127.0.0.1.
`.ci/run` fetches the model (`.ci/smollm2.py`, cached) and builds the server; without them these
tests are skipped, unless DETCHECK_REQUIRE_LLAMA_SERVER=1 (CI).

What is asserted is what held on every repeat here (bench/real_model.py, twice on fresh servers;
the README has the table): one Heads probability at concurrency 1 in both formats and at
concurrency 8 in Q4_1, several at concurrency 8 in F32; the same for a whole answer's logprobs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from engine import binary, f32, q4_1, require, serve
from engine import measure as _measure
from typer.testing import CliRunner

from detcheck.cli import app

pytestmark = pytest.mark.interop
ENV = {"OPENAI_API_KEY": "unused-by-llama-server"}
require(binary(), q4_1(), f32(), how="python .ci/llama_server.py; python .ci/smollm2.py")

# SmolLM2 answers the article's prompt with "This"; after four flips it answers " Heads" or
# " T"(ails), close to even (bench/real_model.py uses the same prompt)
COIN = (
    "Coin flip 1: Heads\nCoin flip 2: Tails\nCoin flip 3: Tails\nCoin flip 4: Heads\nCoin flip 5:"
)
FORMATS = {"q4_1": q4_1, "f32": f32}


@pytest.fixture(scope="module", params=sorted(FORMATS))
def server(request):
    # --no-repack: this CPU advertises AMX, and llama.cpp's repacked Q4_1 kernels crash on it
    with serve(FORMATS[request.param](), extra=("--no-repack",), alias="smol") as url:
        yield request.param, url


def measure(url, out, command, *args) -> dict:
    return _measure(url, out, command, *args, model="smol")


def coin(url, out, n, concurrency) -> dict:
    return measure(
        url, out, "flip", "--api", "completions", "--prompt", COIN, "--n", n,
        "--concurrency", concurrency,
    )  # fmt: skip


def test_the_coin_flip_measures_a_real_heads_probability(server, tmp_path):
    name, url = server
    coin(url, tmp_path / "warm", 1, 1)  # the cold prompt cache is its own value
    alone = coin(url, tmp_path / "c1", 150, 1)
    batched = coin(url, tmp_path / "c8", 300, 8)
    assert alone["target"] == " Heads"  # the label with a leading space, as the model has it
    targets = json.loads((Path(alone["run_path"]) / "_run.json").read_text())["targets"]
    assert targets["Tails"] == " T"  # its first token (41%), not the rarer " tails" or " Tail"
    assert alone["top_token"]["modal_token"] == " Heads"
    assert 30 < alone["modal"]["prob_pct"] < 60  # a real near coin flip, not a sure answer
    assert alone["distinct"] == 1
    if name == "q4_1":
        assert batched["distinct"] == 1  # batch-invariant in this format on this CPU
    else:
        assert batched["distinct"] > 1  # F32: the batch changes the probability
    assert batched["top_token"]["flips"] == 0  # the top-2 gap is far above that noise


def test_whole_answers_drift_per_position_only_in_f32_batches(server, tmp_path):
    name, url = server
    measure(url, tmp_path / "warm", "generate", "--n", 1, "--max-tokens", 8, "--concurrency", 1)
    args = ("--max-tokens", 32)
    alone = measure(url, tmp_path / "c1", "generate", "--n", 24, *args, "--concurrency", 1)
    batched = measure(url, tmp_path / "c8", "generate", "--n", 64, *args, "--concurrency", 8)
    assert alone["unique_completions"] == 1
    assert all(p["distinct_logprobs"] == 1 for p in alone["positions"])
    drifted = [p for p in batched["positions"] if p["distinct_logprobs"] > 1]
    if name == "q4_1":
        assert drifted == []
    else:
        assert drifted and max(p["logprob_spread"] for p in drifted) < 1e-2


def test_the_articles_prompt_says_heads_is_absent_and_what_to_measure(server, tmp_path):
    _, url = server
    data = measure(url, tmp_path, "flip", "--n", 5, "--concurrency", 1)
    assert data["distinct"] == 0 and data["missing_target"] == 5
    assert "was not among the top tokens" in data["headline"]
    assert data["top_token"]["common"][0]["token"] == "This"
    assert "--token 'This'" in data["headline"]


def test_probe(server):
    _, url = server
    result = CliRunner().invoke(
        app, ["probe", "--base-url", url, "--model", "smol", "--json"], env=ENV
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["top_logprobs_requested"] == 20 and data["top_logprobs_returned"] == 20
    assert data["seed_accepted"] is True and data["temperature_semantics"] == "raw"
    assert data["completions_api"] is True  # llama.cpp's chat-shaped logprobs on completions
    assert data["fingerprint_value"] == "b0-unknown"  # the build's, the same in both formats
