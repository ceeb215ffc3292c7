"""The pages people share, looked at in a real browser (headless Chromium, tests/browser.py) at
a desktop's width (1280 px) and a phone's (390 px): the page of a flip run, a generate run, a
prompt set, an imported prompt set without logprobs, a comparison, an audit and a verification.

On each: no table cell is clipped; nothing is wider than the screen but a figure that says it
scrolls; an audit's verdicts are on screen without scrolling sideways; there is no empty
figure; what is not known reads "unknown", never null; whole answers are a page, not terminal
text in a <pre>; and the figure's text is at least as large as the page's.

The screenshots are kept: under $DETCHECK_ARTIFACTS/browser/ (`.ci/run` sets it to artifacts/),
else in the test's temporary directory. Skipped without Chromium, unless
DETCHECK_REQUIRE_BROWSER=1 (`.ci/run` sets it when it could install Chromium)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from browser import Browser, chromium
from conftest import RECORDING, ROOT
from detcheck.cli import app
from fake_openai import FakeOpenAI
from test_audit import Engine
from verify_engine import Model

runner = CliRunner()
WIDTHS = {"desktop": 1280, "phone": 390}
PAGES = ("flip", "generate", "prompt-set", "imported", "compare", "audit", "verify")

# what the browser measures on a page, at the size it was opened at
MEASURE = (Path(__file__).parent / "measure_page.js").read_text()


def _ok(result) -> None:
    assert result.exit_code in (0, 1), result.stderr  # compare: 1 is drift


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, Path]:
    """Each kind of page, written by detcheck as a user would write it."""
    root = tmp_path_factory.mktemp("pages")
    recordings = ROOT / "recordings"

    def report(name, *paths):
        out = root / f"{name}.html"
        _ok(runner.invoke(app, ["report", *map(str, paths), "-o", str(out)]))
        return out

    built = {
        "flip": report("flip", RECORDING),
        "generate": report("generate", recordings / "story-generate-200"),
        "prompt-set": report("prompt-set", recordings / "smollm2-f32-prompts-c8"),
    }
    files = sorted((ROOT / "examples" / "import").glob("run-*.csv"))
    args = ["import", *map(str, files), "--text", "response", "--id", "question", "--prompt",
            "prompt", "--answer-regex", r'"Answer":"\(?([A-Za-z]+)', "-o", str(root / "imp"),
            "-q"]  # fmt: skip
    _ok(runner.invoke(app, args))
    built["imported"] = report("imported", root / "imp")
    replay = ["flip", "-n", "500", "--replay", str(RECORDING), "-o", str(root / "c"), "-q"]
    _ok(runner.invoke(app, replay))
    built["compare"] = root / "compare.html"
    _ok(runner.invoke(app, ["compare", str(RECORDING), str(root / "c"), "--html",
                            str(built["compare"])]))  # fmt: skip
    with FakeOpenAI(Engine(batch=True)) as server:
        env = {"OPENAI_API_KEY": "sk-test"}
        audit = ["audit", "--base-url", server.base_url, "--model", "gpt-4o-2024-08-06", "-n",
                 "8", "-o", str(root / "a"), "-q", "--json"]  # fmt: skip
        done = runner.invoke(app, audit, env=env)
    _ok(done)
    built["audit"] = report("audit", root / "a" / json.loads(done.stdout)["audit_id"])
    with FakeOpenAI(Model(batch_noise=1e-4)) as ref, FakeOpenAI(Model(step=1e-2)) as cand:
        verify = ["verify", "--base-url", cand.base_url, "--model", "m", "--reference",
                  ref.base_url, "-o", str(root / "v"), "-q", "--json"]  # fmt: skip
        done = runner.invoke(app, verify, env={"OPENAI_API_KEY": "sk-test"})
    _ok(done)
    built["verify"] = report("verify", json.loads(done.stdout)["out"])
    return built


@pytest.fixture(scope="module")
def browser():
    if chromium() is None:
        if os.environ.get("DETCHECK_REQUIRE_BROWSER") == "1":
            pytest.fail("no chromium to render the pages with")
        pytest.skip("no headless browser (Debian: apt install chromium)")
    with Browser() as b:
        yield b


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    kept = os.environ.get("DETCHECK_ARTIFACTS")
    where = Path(kept) / "browser" if kept else tmp_path_factory.mktemp("screenshots")
    where.mkdir(parents=True, exist_ok=True)
    return where


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("page", PAGES)
def test_the_page_reads_well_in_a_browser(page, width, pages, browser, shots):
    browser.open(pages[page], WIDTHS[width])
    seen = json.loads(browser.evaluate(MEASURE))
    png = browser.screenshot(shots / f"{page}-{width}.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert seen["viewport"] == WIDTHS[width]
    assert seen["wide"] == [], seen["wide"][:5]
    assert seen["page_width"] <= seen["visible"]  # the page itself never scrolls sideways
    assert seen["clipped"] == [], seen["clipped"][:5]
    assert seen["nulls"] == [], "null where 'unknown' belongs"
    assert seen["pre"] == 0, "terminal text in a <pre>"
    for figure in seen["figures"]:
        assert figure["marks"] > 20, "an empty figure"
        assert not figure["scrolls"] or figure["says_it_scrolls"], "a figure scrolls unsaid"
        assert figure["texts"] > 5  # real text, that can be measured (and searched)
        assert figure["smallest_text_px"] >= seen["body_px"] - 0.05, figure
    # a prompt set is a table; answers compared by their text only have no value to draw
    assert len(seen["figures"]) == (1 if page in ("flip", "generate", "verify") else 0)
    if page == "audit":
        assert len(seen["verdicts"]) >= 8
        assert all(v["on_screen"] for v in seen["verdicts"]), seen["verdicts"]
