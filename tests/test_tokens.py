"""Target tokens come from tiktoken, offline: the rank files come from an installed package."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from detcheck.send import tokens


def fresh_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tiktoken"))
    tokens.encoding_for_model.cache_clear()
    tokens._remembered.cache_clear()


def test_gpt4o_targets_offline_from_an_empty_cache(monkeypatch, tmp_path):
    fresh_cache(monkeypatch, tmp_path)  # network is blocked by conftest: a download would fail
    targets = tokens.resolve_targets("gpt-4o-2024-08-06", ("Heads", "Tails"))
    assert [(t.label, t.token) for t in targets] == [("Heads", "Heads"), ("Tails", "T")]
    assert any((tmp_path / "tiktoken").iterdir())


def test_cl100k_models_split_heads(monkeypatch, tmp_path):
    fresh_cache(monkeypatch, tmp_path)
    targets = tokens.resolve_targets("gpt-3.5-turbo", ("Heads", "Tails"))
    assert [t.token for t in targets] == ["He", "T"]


def test_unknown_model_uses_label_or_override():
    targets = tokens.resolve_targets("llama-3-8b", ("Heads", "Tails"))
    assert [t.token for t in targets] == ["Heads", "Tails"]
    assert "does not know" in targets[0].how
    targets = tokens.resolve_targets("llama-3-8b", ("Heads",), override=" Heads")
    assert targets[0].token == " Heads"


def test_prompt_token_count_and_cost():
    assert (
        tokens.count_prompt_tokens("gpt-4o-2024-08-06", "Flip a coin. Return Heads or Tails only.")
        == 18
    )
    assert tokens.count_prompt_tokens("some-local-model", "x") is None
    # 10,000 calls x (18 x $2.50 + 1 x $10.00) / 1M tokens
    assert abs(tokens.estimate_cost_usd("gpt-4o-2024-08-06", 18, 1, 10_000) - 0.55) < 1e-9
    assert tokens.estimate_cost_usd("unknown-model", 18, 1, 10) is None


def test_answers_are_remembered_so_a_later_run_need_not_load_the_encoding(monkeypatch, tmp_path):
    fresh_cache(monkeypatch, tmp_path)
    prompt = "Flip a coin. Return Heads or Tails only."
    cold = (
        tokens.resolve_targets("gpt-4o", ("Heads", "Tails")),
        tokens.count_prompt_tokens("gpt-4o", prompt),
    )
    enc = tokens.encoding_for_model("gpt-4o")
    assert tokens.tokenize("gpt-4o", prompt) == (
        len(enc.encode(prompt)),
        enc.decode(enc.encode(prompt)[:1]),
    )
    (remembered,) = (tmp_path / "tiktoken").glob("detcheck-*/o200k_base-*.json")
    keys = {tokens._key(t) for t in ("Heads", "Tails", "user", prompt)}
    assert set(json.loads(remembered.read_text())) == keys
    # another process, as the next run: the same answers, and tiktoken never loads an encoding
    code = (
        "import tiktoken.registry as r; from detcheck.send import tokens as t; print(repr(("
        "t.resolve_targets('gpt-4o', ('Heads', 'Tails')), "
        f"t.count_prompt_tokens('gpt-4o', {prompt!r}), sorted(r.ENCODINGS))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == repr((*cold, []))


def test_the_memory_is_private_keyed_by_hash_bounded_and_written_once(monkeypatch, tmp_path):
    """Before (20a5643): the full prompt text as key, in a world-readable (0644) file of a
    shared directory, unbounded, rewritten whole for every new text (20,000 labels: 5 minutes)."""
    fresh_cache(monkeypatch, tmp_path)
    secret_prompt = "my private prompt " * 50
    tokens.count_prompt_tokens("gpt-4o", secret_prompt)
    (remembered,) = (tmp_path / "tiktoken").glob("detcheck-*/o200k_base-*.json")
    assert "private prompt" not in remembered.read_text()
    assert remembered.stat().st_mode & 0o777 == 0o600
    assert remembered.parent.stat().st_mode & 0o777 == 0o700
    writes = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (writes.append(b), real_replace(a, b)))
    labels = tuple(f"label{k}" for k in range(tokens.MAX_REMEMBERED + 500))
    tokens.resolve_targets("gpt-4o", labels)
    assert len([w for w in writes if "texts" in str(w)]) == 1  # once, not once per label
    assert len(json.loads(remembered.read_text())) == tokens.MAX_REMEMBERED


def test_a_memory_directory_others_can_write_is_not_used(monkeypatch, tmp_path):
    fresh_cache(monkeypatch, tmp_path)
    shared = tmp_path / "tiktoken" / f"detcheck-{os.getuid()}"
    shared.mkdir(parents=True)
    shared.chmod(0o777)
    assert tokens.resolve_targets("gpt-4o", ("Heads",))[0].token == "Heads"
    assert list(shared.iterdir()) == []


def test_an_unreadable_memory_is_rebuilt_from_tiktoken(monkeypatch, tmp_path):
    fresh_cache(monkeypatch, tmp_path)
    targets = tokens.resolve_targets("gpt-4o", ("Tails",))
    (remembered,) = (tmp_path / "tiktoken").glob("detcheck-*/o200k_base-*.json")
    remembered.write_text('{"Heads": {"count": 1, "fi')  # cut off mid-write by something else
    tokens._remembered.cache_clear()
    targets = tokens.resolve_targets("gpt-4o", ("Heads",))
    assert targets[0].token == "Heads"
    assert json.loads(remembered.read_text())[tokens._key("Heads")]["first"] == "Heads"


def test_an_empty_cache_variable_means_no_cache_not_the_current_directory(monkeypatch, tmp_path):
    # tiktoken reads TIKTOKEN_CACHE_DIR="" as "cache off"; Path("") would be "."
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")
    monkeypatch.chdir(tmp_path)
    tokens.seed_tiktoken_cache("o200k_base")
    tokens._remember("o200k_base", {"Heads": {"count": 1, "first": "Heads"}})
    assert list(tmp_path.iterdir()) == []


def test_a_label_split_into_several_tokens_is_matched_by_its_first():
    from detcheck.send.tokens import match_label

    # SmolLM2's coin flip (recordings/smollm2-f32-coinflip-c8-300, most likely first): " Heads"
    # is one token, " Tails" arrives as " T" + "ails" (41%); " tails" (1.3%) and " Tail" (0.3%)
    # are there too, and a rule that preferred either measured the wrong token
    seen = [" Heads", " T", " ", " tails", " S", " Double", " F", " Any", " No", " Tail"]
    assert match_label("Heads", seen)[0] == " Heads"  # the leading-space rule comes first
    token, how = match_label("Tails", seen)
    assert token == " T" and "first token" in how
    assert match_label("Tails", [" T", " Ta"])[0] == " T"  # the more likely prefix, not the longer
    assert match_label("Tails", [" Ta", " T"])[0] == " Ta"
    assert match_label("Tails", [" ", "", " x"]) is None  # whitespace is no prefix of anything
    assert match_label("Heads", ["heads", "H"])[0] == "heads"  # the more likely of the two
    assert match_label("Tails", ["T", "tails"])[0] == "T"


def test_a_label_is_matched_by_probability_mass_not_by_how_often_it_appears(tmp_path):
    """A model tiktoken does not know: " tails" comes back in every response at 1.3%, " T" in
    half of them at 40%. Ranked by presence, " tails" would stand for Tails; by mass, " T"."""
    import json
    import math

    from typer.testing import CliRunner

    from detcheck.cli import app
    from fake_openai import FakeOpenAI, Reply, chat_body

    def respond(i: int, request: dict) -> Reply:
        body = chat_body(i, math.log(0.45), top_k=3, model="smol")
        top = [(" Heads", 0.45), (" T", 0.40), (" tails", 0.013)] if i % 2 else [
            (" Heads", 0.45), (" tails", 0.013), (" S", 0.01)]  # fmt: skip
        entries = [{"token": t, "logprob": math.log(p), "bytes": None} for t, p in top]
        body["choices"][0]["logprobs"]["content"] = [dict(entries[0], top_logprobs=entries)]
        return Reply(200, json.dumps(body).encode())

    with FakeOpenAI(respond) as server:
        env = {"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": server.base_url}
        result = CliRunner().invoke(
            app, ["flip", "--model", "smol", "--n", "10", "--out", str(tmp_path), "--json", "-q"],
            env=env,
        )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    meta = json.loads((next(tmp_path.rglob("_run.json"))).read_text())
    assert meta["targets"] == {"Heads": " Heads", "Tails": " T"}
    assert "first token" in meta["target_how"]["Tails"]
