"""`detcheck verify` against fake models on 127.0.0.1 (tests/verify_engine.py): the same model is
identical (or consistent, when batching moves it), never `differs`; a model a step away, or
of another vocabulary, differs; a stored reference is reused without calling it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from detcheck.cli import app
from fake_openai import FakeOpenAI
from verify_engine import Model

PROMPTS = [
    {"id": f"p{k}", "prompt": text}
    for k, text in enumerate(
        [
            "The capital of France is",
            "2 + 2 =",
            "def f(x):",
            "Roses are red,",
            "Once upon a time",
            "SELECT * FROM",
            "Hello! How are",
            "The sky is",
        ]
    )  # fmt: skip
]


@pytest.fixture
def prompts(tmp_path) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in PROMPTS))
    return path


@pytest.fixture
def many(tmp_path) -> Path:
    """24 prompts, as the built-in set has: where batch noise is on, 8 are too few to decide
    (on a loaded machine two prompts whose halves caught other batch states keep p above
    alpha / 3)."""
    path = tmp_path / "many.jsonl"
    path.write_text("".join(json.dumps({"id": f"q{k}", "prompt": f"Question {k}:"}) + "\n"
                            for k in range(24)))  # fmt: skip
    return path


def verify(reference, candidate, out: Path, prompts: Path, *args: str):
    """Run `detcheck verify --json` of `candidate` against `reference` (a Model, whose server is
    started, or a stored verification's path); (exit code, result, reference server, candidate
    server)."""
    with (
        FakeOpenAI(candidate) as cand,
        FakeOpenAI(reference if isinstance(reference, Model) else Model()) as ref,
    ):
        given = ref.base_url if isinstance(reference, Model) else str(reference)
        env = {"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": cand.base_url}
        extra = ["--prompts", str(prompts)] if isinstance(reference, Model) else []
        result = CliRunner().invoke(
            app, ["verify", "--reference", given, "-o", str(out), "--json", "-q", *extra, *args],
            env=env,
        )  # fmt: skip
    assert result.exit_code in (0, 1), result.stderr or result.exception
    return result.exit_code, json.loads(result.stdout), ref, cand


def test_the_same_model_is_identical_and_a_step_away_differs(tmp_path, prompts):
    code, data, ref, cand = verify(Model(), Model(), tmp_path, prompts)
    assert (code, data["verdict"]) == (0, "identical")
    assert data["calls"] == {"reference": 8 * 9, "candidate": 8 * 9}
    assert len(ref.requests) == len(cand.requests) == 8 * 9
    assert data["distance_nats"] == 0 and data["top_token_agrees"] == 1.0
    code, data, _, cand = verify(Model(), Model(step=0.05), tmp_path, prompts)
    assert (code, data["verdict"]) == (1, "differs")
    assert data["p_value"] < data["alpha"] / 3  # one look of three
    assert data["moved_prompts"] == 8 and data["distance_nats"] > 0.01
    assert data["calls"]["candidate"] == 8 * 3  # decided after the first round: it stopped
    assert not data["vocabulary"]["other_family"]
    assert len(data["most_moved"]) == 5 and data["most_moved"][0] in {p["id"] for p in PROMPTS}


def test_batching_noise_is_never_read_as_another_model(tmp_path, prompts, many):
    # the reference and the candidate both move with the batch they share (1e-4 of a logit);
    # a test blind to the reference's own variation would call the second side `differs`
    for k in range(3):
        code, data, _, _ = verify(
            Model(batch_noise=1e-4), Model(batch_noise=1e-4), tmp_path / str(k), prompts
        )
        assert code == 0 and data["verdict"] in ("identical", "consistent"), data["verdict"]
        assert data["reference_spread_nats"] > 0  # it did vary, and that was measured
    # a real difference, 100 times the noise, is told apart from it (over 24 prompts)
    code, data, _, _ = verify(
        Model(batch_noise=1e-4), Model(batch_noise=1e-4, step=1e-2), tmp_path / "x", many
    )
    assert (code, data["verdict"]) == (1, "differs"), data["reference_moved_against_itself"]
    assert data["distance_x_spread"] > 5
    assert 0 < data["floor_nats"] < data["distance_nats"]


def test_another_vocabulary_is_named_another_model_family(tmp_path, prompts):
    code, data, _, _ = verify(Model(), Model(weights=2, prefix="piece"), tmp_path, prompts)
    assert (code, data["verdict"]) == (1, "differs")
    assert data["vocabulary"]["other_family"] and data["vocabulary"]["shared"] == 0
    result = CliRunner().invoke(app, ["report", data["out"], "-o", str(tmp_path / "v.html")])
    assert result.exit_code == 0, result.stderr
    page = (tmp_path / "v.html").read_text()
    assert "another model family" in page and "<svg" in page
    # token ids, where both sides send them: the same text as another id is another tokenizer
    code, data, _, _ = verify(
        Model(ids=True), Model(ids=True, weights=2, id_shift=7), tmp_path / "ids", prompts
    )
    assert data["vocabulary"]["id_clashes"] > 0
    assert "another tokenizer" in data["vocabulary"]["why"]


def test_a_stored_reference_is_reused_without_calling_it(tmp_path, many):
    prompts = many
    _, first, _, _ = verify(Model(batch_noise=1e-4), Model(batch_noise=1e-4), tmp_path, prompts)
    stored = Path(first["out"])
    assert (stored / "reference").is_dir() and (stored / "candidate").is_dir()
    for given in (stored, tmp_path):  # the verification's directory, or the -o holding it
        code, data, ref, cand = verify(given, Model(batch_noise=1e-4), tmp_path / "again",
                                       prompts)  # fmt: skip
        assert ref.requests == []  # the reference is not called
        assert data["calls"]["reference"] == 0 and data["reference_calls_stored"] == 24 * 9
        assert code == 0 and data["verdict"] in ("identical", "consistent")
        assert data["settings"]["reference_stored"] == str(stored)
    code, data, ref, _ = verify(stored, Model(batch_noise=1e-4, step=0.05), tmp_path / "x",
                                prompts)  # fmt: skip
    assert (code, data["verdict"]) == (1, "differs") and ref.requests == []


def test_every_answer_is_an_ordinary_run(tmp_path, prompts):
    _, data, _, _ = verify(Model(), Model(), tmp_path, prompts)
    root = Path(data["out"])
    stored = json.loads((root / "_verify.json").read_text())
    assert stored == data
    for side in ("reference", "candidate"):
        for prompt in PROMPTS:  # each prompt's answers: its rounds, alone and batched
            result = CliRunner().invoke(app, ["analyze", str(root / side / prompt["id"]),
                                              "--json"])  # fmt: skip
            assert result.exit_code == 0, result.stderr
            assert json.loads(result.stdout)["n"] == 9


def test_a_dry_run_counts_both_sides_and_sends_nothing(tmp_path, prompts):
    with FakeOpenAI(Model()) as ref, FakeOpenAI(Model()) as cand:
        env = {"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": cand.base_url}
        args = ["verify", "--reference", ref.base_url, "--prompts", str(prompts), "-o",
                str(tmp_path)]  # fmt: skip
        dry = CliRunner().invoke(app, [*args, "--dry-run", "--json"], env=env)
        assert dry.exit_code == 0, dry.stderr
        plan = json.loads(dry.stdout)
        assert plan["requests"] == 2 * 8 * 9 and plan["sides"] == ["candidate", "reference"]
        capped = CliRunner().invoke(app, [*args, "--max-cost", "0.000001"], env=env)
        assert capped.exit_code == 2 and "above --max-cost" in capped.stderr
        assert ref.requests == [] and cand.requests == []


def test_a_reference_that_cannot_be_measured_exits_3(tmp_path, prompts):
    with FakeOpenAI(Model(down=True)) as ref, FakeOpenAI(Model()) as cand:
        env = {"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": cand.base_url}
        result = CliRunner().invoke(app, [
            "verify", "--reference", ref.base_url, "--prompts", str(prompts), "-o",
            str(tmp_path), "--max-attempts", "1"], env=env)  # fmt: skip
    assert result.exit_code == 3, result.stderr
    assert "the reference" in result.stderr
    # nothing listens there at all
    with FakeOpenAI(Model()) as cand:
        env = {"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": cand.base_url}
        result = CliRunner().invoke(app, [
            "verify", "--reference", "http://127.0.0.1:9/v1", "--prompts", str(prompts), "-o",
            str(tmp_path)], env=env)  # fmt: skip
    assert result.exit_code == 3 and "cannot reach" in result.stderr


def test_usage_errors(tmp_path, prompts):
    runner = CliRunner()
    env = {"OPENAI_API_KEY": "sk-test"}
    for args, said in [
        (["--reference", "http://127.0.0.1:9/v1", "--n", "5"], "at least 6"),
        (["--reference", "http://127.0.0.1:9/v1", "--concurrency", "1"], "at least 2"),
        (["--reference", str(tmp_path / "nothing")], "no such directory"),
        (["--reference", str(tmp_path)], "neither a base URL"),
        (["--reference", "http://127.0.0.1:9/v1", "--alpha", "0.7"], "--alpha"),
    ]:
        result = runner.invoke(app, ["verify", "-o", str(tmp_path), *args], env=env)
        assert result.exit_code == 2 and said in result.stderr, (args, result.stderr)


def test_the_python_api_and_an_experiment_file(tmp_path, prompts, monkeypatch):
    import detcheck

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with FakeOpenAI(Model()) as ref, FakeOpenAI(Model()) as cand:
        result = detcheck.verify(base_url=cand.base_url, reference=ref.base_url,
                                 prompts=prompts, out=str(tmp_path / "api"))  # fmt: skip
    assert result["verdict"] == "identical"
    stored = result["out"]
    # a schedule: the endpoint against the stored reference, exit 1 once it differs
    with FakeOpenAI(Model(step=0.05)) as moved:
        experiment = tmp_path / "watch.toml"
        experiment.write_text(
            f'[[measurement]]\nname = "provider"\nbase_url = "{moved.base_url}"\n'
            f'reference = "{stored}"\n'
        )
        ran = CliRunner().invoke(app, ["run", str(experiment), "-o", str(tmp_path / "runs")])
    assert ran.exit_code == 1, ran.stderr
    assert "provider: differs" in ran.stdout


def test_rpm_paces_each_side_across_its_prompts_and_rounds(tmp_path, prompts):
    # 1,200 a minute: a request every 0.05 s on each side, all prompts and rounds together
    with FakeOpenAI(Model()) as ref, FakeOpenAI(Model()) as cand:
        env = {"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": cand.base_url}
        result = CliRunner().invoke(app, [
            "verify", "--reference", ref.base_url, "--prompts", str(prompts), "-o",
            str(tmp_path), "--rpm", "1200", "-q"], env=env)  # fmt: skip
        assert result.exit_code == 0, result.stderr
        for server in (ref, cand):
            times = sorted(server.times)
            assert len(times) == 8 * 9
            # no second holds more than 20 (+2 where the loaded loopback's jitter moves one);
            # a pacer per run let each of the 8 prompts' runs go at 20 a second
            most = max(sum(1 for u in times if t <= u < t + 1.0) for t in times)
            assert most <= 22, most


def test_a_prompt_id_never_writes_outside_the_verification(tmp_path):
    prompts = tmp_path / "hostile.jsonl"
    ids = ["../../escape", "/abs/path", "a b", "ok-id", "..", "x/../../y"]
    prompts.write_text("".join(json.dumps({"id": i, "prompt": f"Say {k}"}) + "\n"
                               for k, i in enumerate(ids)))  # fmt: skip
    _, data, _, _ = verify(Model(), Model(), tmp_path / "out", prompts)
    root = Path(data["out"])
    made = {p.parent.parent.name for p in (root / "candidate").rglob("_run.json")}
    assert len(made) == 6 and "ok-id" in made
    assert not Path("/abs/path").exists()
    assert all(root in p.parents for p in tmp_path.rglob("_run.json"))  # none escaped
    assert set(data["per_prompt"]) == set(ids)  # the ids as given, in the results


def test_a_missing_key_for_either_side_is_said_before_anything_is_made_or_sent(tmp_path, prompts):
    with FakeOpenAI(Model()) as cand, FakeOpenAI(Model()) as ref:
        for side, env in (
            ("candidate", {"OPENAI_API_KEY": ""}),
            ("reference", {"OPENAI_API_KEY": "sk-test", "REF_KEY": ""}),
        ):
            result = CliRunner().invoke(
                app,
                ["verify", "--base-url", cand.base_url, "--model", "m", "--reference",
                 ref.base_url, "--reference-key-env", "REF_KEY", "--prompts", str(prompts),
                 "-o", str(tmp_path / "out")],
                env=env,
            )  # fmt: skip
            assert result.exit_code == 2, result.stderr
            assert f"error: the {side}: " in result.stderr and "is not set" in result.stderr
        assert cand.requests == [] and ref.requests == []
    assert not (tmp_path / "out").exists()
