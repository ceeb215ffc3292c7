"""What a hostile endpoint (or a user's odd input) could do on every path: a long prompt in the
footers, server text read as markup by each renderer, values of the wrong type from the Python
API, a replay server sent nonsense. Each test failed on 20a5643 (the code before issue 25)."""

from __future__ import annotations

import http.client
import json
import re
from urllib.parse import urlsplit

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import detcheck
from conftest import reference_calls, write_run
from detcheck.cli import app
from detcheck.errors import UsageError
from detcheck.store import read_run
from detcheck.store.schema import RUN_META_KEY
from detcheck.testing import ReplayServer
from fake_openai import COIN_LOGPROBS, FakeOpenAI, Reply, chat_body

runner = CliRunner()
KEY = "sk-test-everywhere-0123456789"


def flip(server, out, *args):
    return runner.invoke(
        app,
        ["flip", "-o", str(out), "-q", "--json", *map(str, args)],
        env={"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": server.base_url},
    )


def test_a_long_prompt_stays_out_of_the_footers_and_the_run_reads_back(tmp_path):
    """Before: the prompt twice in every footer and in _run.json (a 100 MB prompt: 'Exceeded
    size limit' reading it back, and a 205 MB _run.json)."""
    prompt = "Flip a coin, and think about it first. " * 5_000  # 195,000 characters
    with FakeOpenAI() as server:
        result = flip(server, tmp_path, "-n", 5, "--prompt", prompt)
    assert result.exit_code == 0, result.stderr
    (run_dir,) = tmp_path.iterdir()
    meta_text = (run_dir / "_run.json").read_text()
    assert meta_text.count("think about it first") == 5_000  # once, as config.prompt
    (part,) = run_dir.glob("part-*.parquet")
    footer = pq.ParquetFile(part).schema_arrow.metadata[RUN_META_KEY]
    assert len(footer) < 20_000 and b"sha256" in footer
    assert read_run(run_dir).meta["config"]["prompt"] == prompt
    assert runner.invoke(app, ["analyze", str(run_dir), "--json"]).exit_code == 0
    alone = read_run(part)  # a part read without its _run.json names the prompt by hash
    assert "195,000 characters, sha256" in alone.meta["config"]["prompt"]


FINGERPRINT = "fp_$\\foo{$"


def test_a_fingerprint_that_looks_like_mathtext_is_drawn_as_text(tmp_path):
    """Before: matplotlib's mathtext parser failed on it, and report and plot crashed."""

    def respond(i, request):
        body = chat_body(i, COIN_LOGPROBS[i % 3], fingerprint=FINGERPRINT if i % 2 else "fp_a")
        return Reply(200, json.dumps(body).encode())

    with FakeOpenAI(respond) as server:
        result = flip(server, tmp_path / "runs", "-n", 10)
    assert result.exit_code == 0, result.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    page, png = tmp_path / "page.html", tmp_path / "plot.png"
    made = runner.invoke(app, ["report", str(run_dir), "-o", str(page)])
    assert made.exit_code == 0, made.stderr
    assert "No figure" not in page.read_text() and "<svg" in page.read_text()
    drawn = runner.invoke(app, ["plot", str(run_dir), "-o", str(png)])
    assert drawn.exit_code == 0, drawn.stderr
    assert png.stat().st_size > 10_000


def test_a_fingerprint_with_table_syntax_adds_no_cells_to_the_compare_page(tmp_path):
    """Before: `\\|` was split as a cell boundary, so a fingerprint added cells."""
    lps, fps = reference_calls()
    pick = np.random.default_rng(1).choice(lps.size, 3000)
    fps = fps[pick].copy()
    base = write_run(tmp_path / "base", lps[pick], fps)
    fps[:300] = "fp_x | forged | cells |"
    cand = write_run(tmp_path / "cand", lps[pick], fps)
    page = tmp_path / "compare.html"
    result = runner.invoke(app, ["compare", str(base), str(cand), "--html", str(page)])
    assert result.exit_code == 1, result.stderr  # a new fingerprint is drift
    html = page.read_text()
    findings = html[html.index("<th>finding</th>") :].split("</table>")[0]
    rows = re.findall(r"<tr>(.*?)</tr>", findings, re.S)
    assert rows and all(row.count("<td") == 3 for row in rows[1:])
    assert "fp_x | forged | cells |" in html.replace("&#x27;", "'")
    terminal = runner.invoke(app, ["compare", str(base), str(cand)])
    assert "fp_x | forged | cells |" in " ".join(terminal.stdout.split())


def test_the_python_api_refuses_values_of_the_wrong_type_as_usage_errors(tmp_path):
    """Before: detcheck.flip(n="five") raised TypeError from inside the validation."""
    with pytest.raises(UsageError, match="--n must be a whole number, got 'five'"):
        detcheck.flip(n="five", out=tmp_path)
    with pytest.raises(UsageError, match="--timeout must be a number"):
        detcheck.flip(timeout_s="soon", out=tmp_path)


def test_the_replay_server_refuses_a_bad_length_and_streaming(recording, capfd):
    """Before: a traceback for an invalid Content-Length, and an empty stream for stream=True."""
    with ReplayServer(recording) as server:
        url = urlsplit(server.base_url)
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
        conn.putrequest("POST", "/v1/chat/completions")
        conn.putheader("Content-Length", "banana")
        conn.endheaders()
        bad = conn.getresponse()
        assert bad.status == 400 and b"Content-Length" in bad.read()
        conn.close()
        import openai

        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        with pytest.raises(openai.BadRequestError, match="does not stream"):
            client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "x"}], stream=True
            )
    assert "Traceback" not in capfd.readouterr().err
