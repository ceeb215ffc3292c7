"""The HTML page: self-contained (nothing outside itself), says what was measured, and escapes
what servers send. How it reads in a real browser: tests/test_browser.py."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

from typer.testing import CliRunner

from detcheck.cli import app
from fake_openai import FakeOpenAI, Reply, chat_body

runner = CliRunner()


class _Refs(HTMLParser):
    """Every attribute that could make a browser fetch something, and every tag."""

    def __init__(self):
        super().__init__()
        self.refs: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        for name, value in attrs:
            if name in ("src", "href", "xlink:href", "srcset", "poster", "data", "action"):
                self.refs.append(value or "")


def assert_self_contained(html: str) -> None:
    parser = _Refs()
    parser.feed(html)
    outside = [r for r in parser.refs if not r.startswith("#")]
    assert outside == [], outside[:5]
    assert not parser.tags & {"script", "link", "iframe", "img", "object", "embed", "base"}
    assert "@import" not in html
    assert all(u.startswith("#") for u in re.findall(r"url\(\s*['\"]?([^)'\"]*)", html))


def _report(paths, out, *args):
    result = runner.invoke(app, ["report", *map(str, paths), "-o", str(out), *args])
    assert result.exit_code == 0, result.stderr
    return out.read_text()


def test_the_report_page_is_self_contained_and_says_what_was_measured(recording, tmp_path):
    html = _report([recording], tmp_path / "r.html")
    assert_self_contained(html)
    data = json.loads(runner.invoke(app, ["analyze", str(recording), "--json"]).stdout)
    assert data["headline"] in html
    facts = ["gpt-4o-2024-08-06", "https://api.openai.com/v1", "gpt-4o-2024-08-06-coinflip-10000"]
    facts += ["Flip a coin. Return Heads or Tails only.", "fp_eb9dce56a8 (5,512)"]
    for fact in facts:
        assert fact in html, fact
    assert html.count("<tbody>") == len(data["clusters"])  # one block per cluster
    assert html.count("<tr><td class=num>") == data["distinct"]
    assert "<svg" in html and "Chao1" in html  # the figure, inline
    raw = re.search(r"<pre>(\{.*?\})</pre>", html, re.S).group(1)
    import html as html_lib

    assert json.loads(html_lib.unescape(raw)) == data  # the JSON, whole
    assert '<meta name="viewport"' in html  # a phone lays it out for its width


def test_a_generate_run_gets_its_divergence_picture(tmp_path):
    html = _report(["recordings/story-generate-200"], tmp_path / "g.html")
    assert_self_contained(html)
    assert "3 different completions in 200 calls" in html and "<svg" in html
    figure_text = " ".join(re.findall(r"<text[^>]*>(.*?)</text>", html, re.S))  # the figure's
    assert "responses on the modal path" in figure_text and "position (0-based)" in figure_text
    assert "labels" not in re.sub(r"<pre>.*?</pre>", "", html, flags=re.S)


def test_compare_writes_its_page_too(recording, tmp_path):
    runner.invoke(
        app, ["flip", "-n", "300", "--replay", str(recording), "-o", str(tmp_path / "c"), "-q"]
    )
    result = runner.invoke(
        app, ["compare", str(recording), str(tmp_path / "c"), "--html", str(tmp_path / "c.html")]
    )
    assert result.exit_code in (0, 1), result.stderr
    html = (tmp_path / "c.html").read_text()
    assert_self_contained(html)
    assert "detcheck compare: no drift" in html and '<table class="cards">' in html


def test_what_a_server_sends_is_escaped(tmp_path):
    def hostile(i, request):
        body = chat_body(i, -0.2, fingerprint='<script>alert("fp")</script>')
        return Reply(200, json.dumps(body).encode())

    with FakeOpenAI(hostile) as server:
        args = [
            "flip",
            "-n",
            "3",
            "--base-url",
            server.base_url,
            "-o",
            str(tmp_path / "runs"),
            "-q",
        ]
        assert runner.invoke(app, args, env={"OPENAI_API_KEY": "sk-test"}).exit_code == 0
    html = _report([tmp_path / "runs"], tmp_path / "h.html")
    assert "<script" not in html and "&lt;script&gt;" in html
    assert_self_contained(html)
