"""`detcheck verify` against real engines with a known ground truth: SmolLM2-135M-Instruct under
llama-server, the F32 copy as the reference (its values move with batching), and variants that
are or are not the same model (.ci/variants.py). What is asserted held on every run here
(docs/verify.md, bench/verify.py): the same F32 weights on a server with other slots are not
called another model; Q4_1, Q8_0, a 1% step on one matrix and Gemma-3-270M differ (Gemma as
another model family); Q4_1 against itself is identical, live and stored."""

from __future__ import annotations

import json

import pytest
from engine import ENV, binary, f32, gemma, q4_1, q8_0, require, serve, step
from typer.testing import CliRunner

from detcheck.cli import app

pytestmark = pytest.mark.interop
BUILT = "python .ci/llama_server.py; python .ci/smollm2.py; python .ci/variants.py"
require(binary(), q4_1(), f32(), q8_0(), step(0.01), gemma(), how=BUILT)
# --no-repack: this CPU advertises AMX, and llama.cpp's repacked quantized kernels crash on it
EXTRA = ("--no-repack",)


def verify(reference: str, candidate_url: str, out) -> tuple[int, dict]:
    result = CliRunner().invoke(
        app,
        ["verify", "--reference", reference, "--base-url", candidate_url, "--model", "smol",
         "-o", str(out), "--json", "-q"],
        env=ENV,
    )  # fmt: skip
    assert result.exit_code in (0, 1), result.stderr
    return result.exit_code, json.loads(result.stdout)


@pytest.fixture(scope="module")
def f32_reference(tmp_path_factory):
    """The F32 reference (8 slots) measured against the same weights on 2 slots: the
    verification, whose reference side the variants are then verified against, stored."""
    out = tmp_path_factory.mktemp("verify-f32")
    with (
        serve(f32(), slots=8, extra=EXTRA, alias="smol") as reference,
        serve(f32(), slots=2, extra=EXTRA, alias="smol") as other,
    ):
        return verify(reference, other, out)


def test_the_same_weights_with_other_batching_are_not_another_model(f32_reference):
    code, data = f32_reference
    assert code == 0 and data["verdict"] in ("identical", "consistent"), data["verdict"]
    assert data["reference_spread_nats"] > 0  # F32 moves with the batch: measured, allowed for
    assert data["calls"] == {"reference": 24 * 9, "candidate": 24 * 9}
    assert not data["vocabulary"]["other_family"]


@pytest.mark.parametrize("variant", ["q4_1", "q8_0", "step-1%", "gemma"])
def test_other_weights_kernels_and_families_differ(variant, f32_reference, tmp_path):
    path = {"q4_1": q4_1, "q8_0": q8_0, "step-1%": lambda: step(0.01), "gemma": gemma}[variant]()
    stored = f32_reference[1]["out"]
    with serve(path, slots=8, extra=EXTRA, alias="smol") as candidate:
        code, data = verify(stored, candidate, tmp_path)
    assert (code, data["verdict"]) == (1, "differs")
    assert data["calls"]["reference"] == 0 and data["calls"]["candidate"] <= 24 * 9
    assert data["vocabulary"]["other_family"] is (variant == "gemma")
    assert data["distance_nats"] > data["reference_spread_nats"]


def test_q4_1_against_itself_is_identical_live_and_stored(tmp_path):
    with (
        serve(q4_1(), slots=8, extra=EXTRA, alias="smol") as reference,
        serve(q4_1(), slots=8, extra=EXTRA, alias="smol") as candidate,
    ):
        code, live = verify(reference, candidate, tmp_path / "live")
        assert (code, live["verdict"]) == (0, "identical")
        code, stored = verify(live["out"], candidate, tmp_path / "stored")
    assert (code, stored["verdict"]) == (0, "identical")
    assert stored["calls"]["reference"] == 0
