"""`detcheck audit` against engines made to break one cause each, on 127.0.0.1: a check is broken
exactly where the engine breaks it, holds elsewhere, and an engine that varies on every call is
not read as broken everywhere."""

from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner

from audit_engine import Engine, audit, verdict_of
from detcheck.analysis import audit as verdicts
from detcheck.cli import app
from detcheck.store import read_run
from fake_openai import FakeOpenAI

EVERY_CHECK = (
    "batch", "mixed_load", "shared_prefix", "logprobs_toggle", "top_logprobs", "seed",
    "temperature_zero", "first_call",
)  # fmt: skip


def holds_except(**changed: str) -> dict[str, str]:
    """Every check's verdict, in the table's order: holds, but for those named."""
    assert set(changed) <= set(EVERY_CHECK), set(changed) - set(EVERY_CHECK)
    return {name: changed.get(name, "holds") for name in EVERY_CHECK}


def test_a_deterministic_engine_passes_every_check(tmp_path):
    code, data = audit(Engine(), tmp_path, "--require", "batch,seed")
    assert code == 0
    assert verdict_of(data) == holds_except()
    assert [c["name"] for c in data["checks"]] == list(EVERY_CHECK)  # the table's order
    assert data["drift"] == {"p_value": 1.0, "drifted": False}


@pytest.mark.parametrize(
    "cause, check",
    [
        ("batch", "batch"),
        ("mixed", "mixed_load"),
        ("prefix", "shared_prefix"),
        ("top_logprobs", "top_logprobs"),
        ("first_call", "first_call"),
        ("ignores_seed", "seed"),
        ("greedy_samples", "temperature_zero"),
        ("logprobs_text", "logprobs_toggle"),
    ],
)
def test_each_broken_cause_is_found_and_only_it(cause, check, tmp_path):
    # 20 calls per arm: the least at which one first call can tell (1/21 < 0.05)
    code, data = audit(Engine(**{cause: True}), tmp_path, "--require", check, "--n", "20")
    verdicts_seen = verdict_of(data)
    assert verdicts_seen[check] == "broken"
    assert code == 1  # --require names it
    others = {name: v for name, v in verdicts_seen.items() if name != check}
    assert set(others.values()) == {"holds"}, others  # the one factor, not its neighbours
    broken = next(c for c in data["checks"] if c["name"] == check)
    assert broken["meaning"] == verdicts_meaning(check)


def verdicts_meaning(check: str) -> str:
    from detcheck.checks import CHECKS

    return CHECKS[check].MEANING[1]


def test_an_engine_that_varies_everywhere_is_not_broken_everywhere(tmp_path):
    code, data = audit(Engine(noisy=True), tmp_path, "--only", "batch,mixed_load,top_logprobs")
    assert code == 0
    for check in data["checks"]:
        assert check["control"]["distinct"] == 3  # the control varies on its own
        assert check["verdict"] == "holds", check


def test_every_arm_is_an_ordinary_run_and_the_audit_is_stored(tmp_path):
    _, data = audit(Engine(batch=True), tmp_path, "--only", "batch", "--n", "10")
    stored = json.loads((tmp_path / data["audit_id"] / "_audit.json").read_text())
    assert stored == data
    assert set(data["arms"]) == {"warmup", "alone", "batched"}
    for name, arm in data["arms"].items():
        runs = [read_run(p) for p in arm["runs"]]
        assert sum(r.meta["successes"] for r in runs) == (1 if name == "warmup" else 10)
        assert {r.meta["tags"]["audit_arm"] for r in runs} == {name}
    batched = [read_run(p).meta["concurrency"] for p in data["arms"]["batched"]["runs"]]
    assert batched == [8, 8, 8, 8]  # four rounds: 3, 3, 2 and 2 calls
    result = CliRunner().invoke(app, ["analyze", str(tmp_path / data["audit_id"] / "batched")])
    assert result.exit_code == 0 and "20 calls" not in result.stdout  # n = 10 over two runs
    assert "10 calls" in result.stdout


def test_seed_checks_are_not_tested_where_the_api_takes_no_seed(tmp_path):
    _, data = audit(Engine(), tmp_path, "--only", "seed,temperature_zero,batch", "--no-seed")
    assert verdict_of(data) == {"seed": "not tested", "temperature_zero": "not tested",
                                "batch": "holds"}  # fmt: skip
    assert all("--no-seed" in c["reason"] for c in data["checks"][:2])
    assert "one_seed" not in data["arms"]  # nothing was sent for them


def test_usage_errors(tmp_path):
    runner = CliRunner()
    for args, said in [
        (["--only", "batchy"], "no check 'batchy'"),
        (["--only", "batch", "--skip", "batch"], "leave no check"),
        (["--only", "batch", "--require", "seed"], "not run"),
        (["--n", "3"], "at least 4"),
    ]:
        result = runner.invoke(app, ["audit", "--out", str(tmp_path), *args])
        assert result.exit_code == 2 and said in result.stderr, (args, result.stderr)


def test_a_dry_run_counts_the_whole_audit_and_sends_nothing(tmp_path):
    engine = Engine()
    with FakeOpenAI(engine) as server:
        env = {"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": server.base_url}
        result = CliRunner().invoke(
            app, ["audit", "--dry-run", "--json", "--n", "10", "--out", str(tmp_path)], env=env
        )
        assert server.requests == []
    assert result.exit_code == 0, result.stderr
    plan = json.loads(result.stdout)
    # the warm-up + 9 arms: alone is in five checks, greedy and seed_per_call in two each;
    # mixed_load and shared_prefix each keep 7 background streams, each stream at most one
    # request ahead of the measured calls of each of the 4 rounds
    assert plan["measured_requests"] == 1 + 9 * 10 and plan["arms"] == 9
    assert plan["background_requests"] == 2 * 7 * (10 + 4)
    assert plan["requests"] == plan["measured_requests"] + plan["background_requests"]


def test_verdicts_compare_against_the_control_not_against_zero_variation():
    # the control gives 3 values; a treatment of the same mix holds, one that leaves the mode
    # broken; two deterministic arms with different values: broken
    control = ["a"] * 20 + ["b"] * 10 + ["c"] * 10
    assert verdicts.differs("x", control, ["a"] * 21 + ["b"] * 9 + ["c"] * 10)["verdict"] == "holds"
    assert verdicts.differs("x", control, ["b"] * 35 + ["a"] * 5)["verdict"] == "broken"
    assert verdicts.differs("x", ["a"] * 10, ["z"] * 10)["verdict"] == "broken"
    one_new = verdicts.differs("x", ["a"] * 20, ["a"] * 19 + ["z"])
    assert one_new["verdict"] == "holds" and one_new["new_values"] == 1  # one odd call: little
    assert one_new["p_value"] == pytest.approx(1.0)  # two-sided: twice 0.5
    # the treatment settling where the control wanders differs too, and a treatment with more
    # calls than its control is judged alike (the pooled mode may be the treatment's)
    assert verdicts.differs("x", ["a", "b", "c"] * 10, ["b"] * 30)["verdict"] == "broken"
    assert verdicts.differs("x", ["a"] * 30, ["b"] * 40)["verdict"] == "broken"
    # the first call: unseen among later calls that never vary is surprising; among later calls
    # that all differ, it is not
    assert verdicts.first_call("z", ["a"] * 40)["verdict"] == "broken"
    assert verdicts.first_call("z", [str(k) for k in range(40)])["verdict"] == "holds"
    assert verdicts.first_call("z", ["a"] * 40)["p_value"] == pytest.approx(1 / 41)  # exact
    assert verdicts.first_call("z", ["a"] * 10)["verdict"] == "holds"  # too few to tell


def test_an_arm_the_endpoint_refuses_leaves_its_check_not_tested_and_the_rest_decided(tmp_path):
    code, data = audit(Engine(refuses_top1=True), tmp_path, "--only", "top_logprobs,batch")
    assert code == 0
    top = next(c for c in data["checks"] if c["name"] == "top_logprobs")
    assert top["verdict"] == "not tested"
    assert "refused the top1 arm" in top["reason"] and "at least 5" in top["reason"]
    assert verdict_of(data)["batch"] == "holds"


def test_report_writes_an_audit_page_with_every_verdict_escaped(tmp_path):
    hostile = "<b>m</b>"  # a model name is the user's (or a config file's) text: escaped
    _, data = audit(
        Engine(batch=True), tmp_path / "a", "--only", "batch,top_logprobs", "--model", hostile
    )
    page = tmp_path / "audit.html"
    result = CliRunner().invoke(
        app, ["report", str(tmp_path / "a" / data["audit_id"]), "-o", str(page)]
    )
    assert result.exit_code == 0, result.stderr
    html = page.read_text()
    assert "broken: batch" in html and ">top_logprobs</td>" in html  # a cell of the checks
    assert "the answer depends on the batch" in html
    assert hostile not in html and "&lt;b&gt;m&lt;/b&gt;" in html


def test_the_python_api_runs_an_audit(tmp_path, monkeypatch):
    import detcheck

    with FakeOpenAI(Engine(top_logprobs=True)) as server:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        plan = detcheck.audit(
            base_url=server.base_url, n=10, checks="top_logprobs", dry_run=True, out=str(tmp_path)
        )
        assert server.requests == [] and plan["requests"] == 1 + 2 * 10
        result = detcheck.audit(
            base_url=server.base_url, n=10, checks=["top_logprobs"], out=str(tmp_path)
        )
    assert [(c["name"], c["verdict"]) for c in result["checks"]] == [("top_logprobs", "broken")]


def test_a_generation_without_logprobs_is_an_ordinary_run_known_by_its_text(tmp_path):
    code, data = audit(
        Engine(logprobs_text=True), tmp_path, "--only", "logprobs_toggle", "--n", "6"
    )
    check = data["checks"][0]
    assert check["verdict"] == "broken" and check["new_values"] == 6
    arm = tmp_path / data["audit_id"] / "greedy_text"
    runs = [read_run(p) for p in data["arms"]["greedy_text"]["runs"]]
    assert all(r.meta["config"]["logprobs"] is False for r in runs)
    rows = runs[0].table.filter(runs[0].table.column("ok"))
    assert rows.column("gen_tokens").null_count == rows.num_rows  # unknown: null, not made up
    assert set(rows.column("text").to_pylist()) == {"Heads"}
    runner = CliRunner()
    shown = runner.invoke(app, ["analyze", str(arm), "--json"])
    assert shown.exit_code == 0, shown.stderr
    report = json.loads(shown.stdout)
    assert report["text_only"] is True and report["unique_completions"] == 1
    assert report["n"] == 6 and report["common_prefix_tokens"] is None
    text = runner.invoke(app, ["analyze", str(arm)])
    assert text.exit_code == 0 and "where they part is not known" in text.stdout
    page = tmp_path / "page.html"
    drawn = runner.invoke(app, ["report", str(arm), "-o", str(page)])
    assert drawn.exit_code == 0, drawn.stderr
    assert "Heads" in page.read_text()
    # pooled with the arm that had logprobs: compared by text, the two answers
    both = runner.invoke(app, ["analyze", str(arm), str(tmp_path / data["audit_id"] / "greedy"),
                               "--json"])  # fmt: skip
    assert both.exit_code == 0, both.stderr
    assert json.loads(both.stdout)["unique_completions"] == 2


def test_an_arm_stops_once_its_verdict_cannot_change(tmp_path):
    # top_logprobs 1 and 20 give two different constant logprobs: after 30 of 40 calls each,
    # no 10 more of any kind can make the control's mode the treatment's, so the check is
    # broken whatever follows, and both of its arms stop
    _, data = audit(Engine(top_logprobs=True), tmp_path, "--only", "top_logprobs", "--n", "40")
    assert verdict_of(data) == {"top_logprobs": "broken"}
    assert data["stopped_early"] == {"top1": 30, "alone": 30}
    assert (data["calls"], data["calls_every_arm_to_n"]) == (1 + 30 + 30, 1 + 40 + 40)
    # a check that holds on a deterministic engine: at 40 calls, 10 strays in the last round
    # would still break it (p 0.0005), so both arms go to n; at 8, once 4 agree, 4 strays
    # could not (p 0.04): settled
    _, data = audit(Engine(), tmp_path, "--only", "batch", "--n", "40")
    assert verdict_of(data) == {"batch": "holds"}
    assert data["stopped_early"] == {} and data["calls"] == data["calls_every_arm_to_n"] == 81
    _, data = audit(Engine(), tmp_path, "--only", "batch", "--n", "8")
    assert verdict_of(data) == {"batch": "holds"}
    assert data["stopped_early"] == {"alone": 4, "batched": 4} and data["calls"] == 9


def test_a_settled_verdict_is_the_one_every_continuation_gives():
    # by enumeration on small arms: whatever the remaining calls return (values seen or new),
    # the verdict at the end is one of those possible_verdicts allows
    import itertools
    import random

    rng = random.Random(7)
    for _ in range(150):
        test = rng.choice(["differs", "concentrated", "first_call"])
        one = test == "first_call"
        control = [rng.choice("ab") for _ in range(1 if one else rng.randint(1, 4))]
        treatment = [rng.choice("abc") for _ in range(rng.randint(1, 4))]
        more_c, more_t = (0 if one else rng.randint(0, 2)), rng.randint(1, 2)
        allowed = verdicts.possible_verdicts(test, control, treatment, more_c, more_t)
        for extra_c in itertools.product("abcxy", repeat=more_c):
            for extra_t in itertools.product("abcxy", repeat=more_t):
                end = verdicts.verdict_of(
                    test, control + list(extra_c), treatment + list(extra_t), cannot_tell="-"
                )
                assert end["verdict"] in allowed, (test, control, treatment, extra_c, extra_t)
    # and it does settle where it should: two constant, different arms, most calls in
    assert verdicts.possible_verdicts("differs", ["a"] * 30, ["b"] * 30, 10, 10) == {"broken"}
    assert verdicts.possible_verdicts("differs", ["a"] * 20, ["b"] * 20, 20, 20) == {
        "holds", "broken"}  # fmt: skip


@pytest.mark.slow
def test_a_killed_audit_resumes_to_the_verdicts_of_one_never_killed(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    engine = Engine(top_logprobs=True)
    args = ["audit", "--only", "batch,top_logprobs", "--n", "40", "--out", str(tmp_path), "-q"]
    with FakeOpenAI(engine) as server:
        env = {**os.environ, "OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": server.base_url}
        proc = subprocess.Popen([sys.executable, "-m", "detcheck.cli", *args], env=env)
        deadline = time.monotonic() + 60
        while server.successes < 75 and time.monotonic() < deadline:  # into round 2 or 3
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        (root,) = tmp_path.iterdir()
        state = json.loads((root / "_audit.json").read_text())
        assert state["status"] == "running"
        sent_before = server.successes
        again = CliRunner().invoke(app, ["audit", "--resume", str(root), "--json", "-q"], env=env)
    assert again.exit_code == 0, again.stderr or again.exception
    data = json.loads(again.stdout)
    assert verdict_of(data) == {"batch": "holds", "top_logprobs": "broken"}
    for arm in data["arms"].values():
        runs = [read_run(p) for p in arm["runs"]]
        rounds = [r.meta["tags"].get("audit_round") for r in runs]
        assert len(rounds) == len(set(rounds))  # one run per round: none started twice
        for run in runs:
            ok = run.table.column("ok").to_pylist()
            ids = [i for i, g in zip(run.table.column("response_id").to_pylist(), ok) if g]
            assert sum(ok) == run.meta["n_requested"] == len(set(ids))
    cut = [
        p for arm in data["arms"].values() for p in arm["runs"] if read_run(p).meta.get("resumed")
    ]
    assert len(cut) == 1  # the run the kill cut was carried on, not started again
    # what the first process kept was not asked for again: the resume sent only the rest
    # (and what was in flight at the kill, at most the batch's 8)
    assert data["calls"] <= server.successes - sent_before + 75 + 8
    assert server.successes - sent_before < data["calls"]


def test_on_the_responses_api_the_seed_checks_are_not_tested_and_the_rest_decided(tmp_path):
    code, data = audit(
        Engine(logprobs_text=True), tmp_path, "--api", "responses", "--n", "20",
        "--max-tokens", "24", "--require", "logprobs_toggle",
    )  # fmt: skip
    assert code == 1
    assert verdict_of(data) == holds_except(
        logprobs_toggle="broken", seed="not tested", temperature_zero="not tested"
    )
    reasons = {c["name"]: c.get("reason") for c in data["checks"]}
    assert reasons["seed"] == "the responses API takes no seed"
    assert "one_seed" not in data["arms"] and "seed_per_call" not in data["arms"]
