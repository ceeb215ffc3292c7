"""--background-load: extra requests in flight beside the measured ones, never recorded; and
sweep over concurrency and background load, one JSON object with a test across levels."""

from __future__ import annotations

import itertools
import json

from typer.testing import CliRunner

from detcheck.cli import app
from detcheck.store import read_run
from fake_openai import FakeOpenAI, coin_flip

runner = CliRunner()
KEY = "sk-test-background-0123456789"


def flip_alone_with_background(respond, n: int, out) -> tuple[FakeOpenAI, dict]:
    """`flip --n n --concurrency 1 --background-load 3` against `respond`: the server, the JSON."""
    with FakeOpenAI(respond) as server:
        result = runner.invoke(
            app,
            ["flip", "--n", str(n), "--concurrency", "1", "--background-load", "3",
             "--out", str(out), "-q", "--json"],
            env={"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": server.base_url},
        )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    return server, json.loads(result.stdout)


def test_background_load_is_sent_counted_and_never_recorded(tmp_path):
    import time

    def slow(i, request):
        time.sleep(0.01)  # so the background streams overlap the measured one
        return coin_flip(i, request)

    server, data = flip_alone_with_background(slow, 30, tmp_path)
    assert data["n"] == 30
    prompts = [r["messages"][0]["content"] for r in server.requests]
    measured = [p for p in prompts if p.startswith("Flip a coin")]
    background = [p for p in prompts if p.startswith("Request ")]
    assert len(measured) == 30 and len(background) >= 3
    assert len({len(p) for p in background}) > 1  # prompts of varying lengths
    run = read_run(data["run_path"])
    assert run.table.num_rows == 30  # only the measured calls are rows
    assert run.meta["background_load"] == 3
    # every one sent reached the server and was let finish
    assert run.meta["notes"]["background_requests"] == len(background)
    # the measured stream ran alone (concurrency 1) but shared the server with the others
    assert max(run.table.column("in_flight").to_pylist()) > 1


def test_sweep_over_concurrency_and_background_load(tmp_path):
    measured = itertools.count()

    def by_measured_call(i, request):
        # values cycle with the measured call's number (12 a level, 3 values): every level
        # holds the same values, however many background requests came between
        if request["messages"][0]["content"].startswith("Flip a coin"):
            return coin_flip(next(measured), request)
        return coin_flip(i, request)

    with FakeOpenAI(by_measured_call) as server:
        result = runner.invoke(
            app,
            ["sweep", "--concurrency", "1,2", "--background-loads", "0,2", "--n", "12",
             "--out", str(tmp_path), "--json"],
            env={"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": server.base_url},
        )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    levels = [(r["concurrency"], r["background_load"], r["n"]) for r in data["levels"]]
    assert levels == [(1, 0, 12), (1, 2, 12), (2, 0, 12), (2, 2, 12)]
    assert all(r["mean_in_flight"] >= 1 for r in data["levels"])
    # the values do not depend on the level: the test finds no dependence
    assert data["test"]["p_value"] > 0.5
    assert "does not explain" in data["test"]["verdict"]
    assert "across levels:" in result.stderr


def test_a_sweep_holds_its_concurrency_through_429s_and_says_the_level_was_not_held(tmp_path):
    from fake_openai import Reply, coin_flip

    def burst(i, request):
        if i < 40:
            return Reply(429, b'{"error": {"message": "Rate limit reached"}}')
        return coin_flip(i, request)

    def sweep(*extra):
        with FakeOpenAI(burst) as server:
            return runner.invoke(
                app,
                ["sweep", "--concurrency", "16", "--n", "60", "--out", str(tmp_path), "--json",
                 "--backoff-s", "0.01", "--max-backoff-s", "0.05", *extra],
                env={"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": server.base_url},
            )  # fmt: skip

    held = sweep()
    assert held.exit_code == 0, held.stderr
    (level,) = json.loads(held.stdout)["levels"]
    assert level["throttled"] == 40 and level["held"] is False
    assert "lowered concurrency" not in held.stderr  # the level was not cut
    assert "no (40 x 429)" in held.stderr  # the table marks it
    adaptive = sweep("--adaptive")
    assert "429s lowered concurrency to" in adaptive.stderr  # as flip does


def test_the_background_in_flight_is_let_finish_before_the_run_ends(tmp_path):
    """Background requests cut off at the end would still run on the server (it does not see
    the client go) and share the batch of whatever is measured next: an audit's control arm
    after its mixed_load arm measured exactly that on llama-server with F32 weights."""
    import datetime
    import threading
    import time

    lock = threading.Lock()
    finished_at = []  # when the server finished each background request

    def slow_background(i, request):
        background = request["messages"][0]["content"].startswith("Request ")
        time.sleep(1.5 if background else 0.01)  # far longer than the 10 measured calls take
        if background:
            with lock:
                finished_at.append(datetime.datetime.now(datetime.timezone.utc))
        return coin_flip(i, request)

    server, data = flip_alone_with_background(slow_background, 10, tmp_path)
    run = read_run(data["run_path"])
    ended_at = datetime.datetime.fromisoformat(run.meta["ended_at"])
    sent = sum(1 for r in server.requests if r["messages"][0]["content"].startswith("Request "))
    assert len(finished_at) == sent == run.meta["notes"]["background_requests"] >= 3
    assert max(finished_at) <= ended_at  # none was still running when the run ended
    assert run.meta["notes"]["background_failed"] == 0  # none cut off and counted as failed
