"""The terminal report says what was measured, in words that are true, in 80 columns."""

from __future__ import annotations

import json
import math
import re

from typer.testing import CliRunner

from detcheck.cli import app
from fake_openai import FakeOpenAI, Reply, chat_body

runner = CliRunner()


def _analyze(path, *args):
    result = runner.invoke(app, ["analyze", str(path), *args])
    assert result.exit_code == 0, result.stderr
    return result.stdout


def test_every_line_of_the_report_fits_80_columns(recording):
    text = _analyze(recording)
    assert max(len(line) for line in text.splitlines()) <= 80, text
    # folded at word boundaries under its label, not cut: every word is still there
    assert "the replaying client's, not the endpoint's)" not in text  # not a replay: no caveat
    assert "explains?     the concurrency" in text


def test_the_report_names_model_endpoint_date_run_and_n(tmp_path):
    with FakeOpenAI() as server:
        args = ["flip", "-n", "7", "--base-url", server.base_url, "--out", str(tmp_path), "-q"]
        result = runner.invoke(app, args, env={"OPENAI_API_KEY": "sk-test"})
    assert result.exit_code == 0, result.stderr
    (run_dir,) = tmp_path.iterdir()
    meta = json.loads((run_dir / "_run.json").read_text())
    flat = " ".join(_analyze(run_dir).split())  # as read, across folded lines
    assert f"measured {meta['config']['model']} at {server.base_url}" in flat
    assert f"on {meta['started_at'][:10]}, run {meta['run_id']}, n = 7" in flat
    data = json.loads(_analyze(run_dir, "--json"))
    assert data["measured"]["run_ids"] == [meta["run_id"]]


def test_a_replay_does_not_offer_its_in_flight_counts_as_evidence(recording, tmp_path):
    args = ["flip", "-n", "300", "--replay", str(recording), "--out", str(tmp_path), "-q"]
    result = runner.invoke(app, [*args, "--concurrency", "8", "--json"])
    data = json.loads(result.stdout)
    assert data["replayed"] is True and data["concurrency_association"] is None
    flat = " ".join(result.stderr.split())
    assert "the concurrency: not tested (a replay: its in-flight counts are the replaying" in flat
    assert "the concurrency does not explain" not in flat


def test_a_deterministic_endpoint_is_called_that(tmp_path):
    def same(i, request):
        return Reply(200, json.dumps(chat_body(i, -0.25)).encode())

    with FakeOpenAI(same) as server:
        args = ["flip", "-n", "5", "--base-url", server.base_url, "--out", str(tmp_path), "-q"]
        result = runner.invoke(app, args, env={"OPENAI_API_KEY": "sk-test"})
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(
        "Deterministic: all 5 calls returned the same Heads probability."
    )


def test_chao1_is_given_with_its_interval(recording):
    data = json.loads(_analyze(recording, "--json"))
    lo, hi = data["unseen"]["chao1_ci95"]
    assert lo <= data["unseen"]["chao1"] <= hi
    flat = " ".join(_analyze(recording).split())
    if hi > lo:
        assert f"(95% {lo:,.1f} to {hi:,.1f})" in flat


def test_one_is_singular_in_the_run_summary_and_the_report(tmp_path):
    def same(i, request):
        return Reply(200, json.dumps(chat_body(i, -0.25)).encode())

    with FakeOpenAI(same) as server:
        exp = tmp_path / "e.toml"
        exp.write_text(f'[[measurement]]\nname = "one"\nbase_url = "{server.base_url}"\nn = 1\n')
        result = runner.invoke(
            app, ["run", str(exp), "-o", str(tmp_path / "runs"), "-q"], env={"OPENAI_API_KEY": "k"}
        )
    assert result.exit_code == 0, result.stderr
    assert "one: 1 response, 1 distinct, 1 cluster at 0.01 pp" in result.stdout
    assert "0 failed attempts" in result.stdout
    (run_dir,) = (tmp_path / "runs").glob("model=*/date=*/*")
    text = _analyze(run_dir)
    assert "in 1 call = 100.0%" in text and "1 calls" not in text


def test_a_target_absent_from_every_response_is_said_plainly_with_what_to_measure(tmp_path):
    # SmolLM2-135M on the article's prompt: "This" first, no "Heads" in the top 20 at all
    def small_model(i, request):
        body = chat_body(i, -2.17)
        for entry in body["choices"][0]["logprobs"]["content"][0]["top_logprobs"]:
            entry["token"] = {"Heads": "This", "T": "The"}.get(entry["token"], entry["token"])
        content = body["choices"][0]["logprobs"]["content"][0]
        content.update(token="This", logprob=-2.17)
        return Reply(200, json.dumps(body).encode())

    with FakeOpenAI(small_model) as server:
        args = ["flip", "-n", "6", "--base-url", server.base_url, "--out", str(tmp_path), "-q"]
        result = runner.invoke(app, [*args, "--json"], env={"OPENAI_API_KEY": "sk-test"})
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["distinct"] == 0 and data["missing_target"] == 6
    headline = data["headline"]
    assert not headline.startswith("0 distinct")  # not a result that reads like a measurement
    assert "'Heads' was not among the top tokens of any of the 6 responses" in headline
    assert "'This'" in headline and "--token 'This'" in headline
    common = data["top_token"]["common"][0]
    assert common["token"] == "This" and common["calls"] == 6
    assert abs(common["prob_pct"] - 100 * math.exp(-2.17)) < 1e-4  # float32 storage
    (run_dir,) = tmp_path.iterdir()
    text = " ".join(_analyze(run_dir).split())  # as read, across folded lines
    assert text.startswith(headline.split(";")[0])  # the text says it first too


# the first clause of the recording's own `provenance` (run.json has the rest: where to read more)
PROVENANCE = "reconstructed from published figures by recordings/build_gpt4o_coinflip.py"


def test_the_rebuilt_recording_says_where_it_came_from_wherever_its_endpoint_is_shown(
    recording, tmp_path
):
    meta = json.loads((recording / "run.json").read_text())
    assert meta["provenance"].startswith(PROVENANCE)
    text = _analyze(recording)
    flat = " ".join(text.split())
    assert "measured gpt-4o-2024-08-06 at https://api.openai.com/v1" not in flat
    assert f"source gpt-4o-2024-08-06 at https://api.openai.com/v1 ({PROVENANCE})" in flat
    data = json.loads(_analyze(recording, "--json"))
    assert data["measured"]["provenance"] == [meta["provenance"]]
    # the page: next to the endpoint, in full
    page = tmp_path / "p.html"
    assert runner.invoke(app, ["report", str(recording), "-o", str(page)]).exit_code == 0
    html = page.read_text()
    assert f"<dt>provenance</dt><dd>{meta['provenance']}</dd>" in html
    assert "https://api.openai.com/v1 (not measured there: see provenance)" in html
    # the figure's title, drawn as text
    svg = tmp_path / "f.svg"
    assert runner.invoke(app, ["plot", str(recording), "-o", str(svg)]).exit_code == 0
    drawn = " ".join(re.findall(r"<!-- (.*?) -->", svg.read_text()))  # the figure's texts
    assert PROVENANCE in " ".join(drawn.split())


def test_a_replay_of_the_rebuilt_recording_keeps_its_provenance(tmp_path):
    args = ["flip", "-n", "100", "--replay", "gpt-4o-coinflip", "-o", str(tmp_path), "-q"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    flat = " ".join(result.stdout.split())
    assert f"replayed gpt-4o-2024-08-06 from gpt-4o-coinflip ({PROVENANCE}) on" in flat


def test_no_double_spaces_and_counted_nouns_agree():
    from conftest import ROOT

    text = _analyze(ROOT / "recordings" / "smollm2-f32-coinflip-c8-300")
    assert "  Heads" not in text.split("\n")[0]
    assert text.startswith("3 distinct ' Heads' probabilities in 300 calls")
    flat = " ".join(text.split())
    assert "1 responses only" not in flat and "1 response only the normaliser moved" in flat
    prose = [line for line in text.splitlines() if not line.startswith((" ", "-"))]
    for line in prose:  # the labelled detail lines align with spaces; sentences never do
        body = line[14:] if line[:14].rstrip() and line[13:14] == " " else line
        assert "  " not in body.strip(), line


def test_the_clustering_sentences_say_what_the_table_shows(tmp_path):
    from conftest import write_run

    # 16 distinct values 1e-7 apart: one cluster at 0.01 pp, two fingerprints
    values = [math.log(0.9 + k * 1e-9) for k in range(16)] * 3
    fps = ["fp_a", "fp_b"] * 24
    write_run(tmp_path / "run", values, fps)
    text = _analyze(tmp_path / "run")
    assert "16 distinct" in text and "clusters: 1 at 0.01 pp" in text
    flat = " ".join(text.split())
    assert "only one value" not in flat
    assert "the fingerprint: not tested (one cluster: nothing to explain)" in flat
    assert "the two fingerprints: not tested (one cluster: nothing to explain)" in flat
