"""`detcheck audit` against a real engine: SmolLM2-135M-Instruct under llama-server (8 slots,
continuous batching), as shipped (Q4_1) and as F32. What is asserted held on every run here
(README, "Why it varies", bench/audit.py): Q4_1 is batch-invariant, F32 is not; both honour the
seed and decode greedily at temperature 0; the chosen token's logprob moves with top_logprobs in
both."""

from __future__ import annotations

import json

import pytest
from engine import binary, f32, q4_1, require, serve
from typer.testing import CliRunner

from detcheck.cli import app

pytestmark = pytest.mark.interop
require(binary(), q4_1(), f32(), how="python .ci/llama_server.py; python .ci/smollm2.py")

COIN = (
    "Coin flip 1: Heads\nCoin flip 2: Tails\nCoin flip 3: Tails\nCoin flip 4: Heads\nCoin flip 5:"
)
# F32's shared_prefix was broken in 3 of 4 runs here before an arm's background requests were
# let finish, in 5 of 5 since: not asserted yet
EXPECTED = {
    "q4_1": {"batch": "holds", "mixed_load": "holds", "shared_prefix": "holds"},
    "f32": {"batch": "broken", "mixed_load": "broken"},
}
BOTH = {
    "seed": "holds",
    "temperature_zero": "holds",
    "logprobs_toggle": "holds",
    "top_logprobs": "broken",
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_audit_tells_the_two_weight_formats_apart(name, tmp_path):
    model = {"q4_1": q4_1, "f32": f32}[name]()
    # --no-repack: this CPU advertises AMX, and llama.cpp's repacked Q4_1 kernels crash on it
    with serve(model, extra=("--no-repack",), alias="smol") as url:
        result = CliRunner().invoke(
            app,
            ["audit", "--base-url", url, "--model", "smol", "--api", "completions", "--prompt",
             COIN, "--out", str(tmp_path), "--json", "-q", "--require", "batch"],
            env={"OPENAI_API_KEY": "unused-by-llama-server"},
        )  # fmt: skip
    assert result.exit_code in (0, 1), result.stderr
    data = json.loads(result.stdout)
    verdicts = {c["name"]: c["verdict"] for c in data["checks"]}
    assert {k: verdicts[k] for k in EXPECTED[name]} == EXPECTED[name]
    assert {k: verdicts[k] for k in BOTH} == BOTH
    assert result.exit_code == (1 if name == "f32" else 0)  # --require batch
    assert data["drift"]["drifted"] is False
