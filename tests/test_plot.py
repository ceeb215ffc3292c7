"""The figure says what was measured and shows what the table shows: total counts per value,
each cluster's neighbouring values apart, Chao1 with its interval. Read from an SVG's text."""

from __future__ import annotations

import json
import struct

from typer.testing import CliRunner

from detcheck.cli import app

runner = CliRunner()


def _plot(recording, out, *args):
    result = runner.invoke(app, ["plot", str(recording), "-o", str(out), *args])
    assert result.exit_code == 0, result.stderr
    return out


def _svg_text(path) -> str:
    import re

    # matplotlib writes text as paths with the string in a comment (svg.fonttype "path")
    return " ".join(re.findall(r"<!-- (.*?) -->", path.read_text()))


def test_the_figure_is_titled_with_what_was_measured_and_shows_each_cluster(recording, tmp_path):
    text = _svg_text(_plot(recording, tmp_path / "p.svg"))
    report = json.loads(runner.invoke(app, ["analyze", str(recording), "--json"]).stdout)
    assert "gpt-4o-2024-08-06 at https://api.openai.com/v1" in text
    assert "n = 10,000" in text
    lo, hi = report["unseen"]["chao1_ci95"]
    assert f"95% interval {lo:,.1f} to {hi:,.1f}" in text and "Chao1 = 82.5" in text
    assert "all calls" in text  # total counts, not only per fingerprint
    several = [c for c in report["clusters"] if len(c["values"]) > 1]
    for cluster in several:  # a close-up of every cluster with values to tell apart
        assert f"{cluster['min_pct']:.6f}%" in text and f"{len(cluster['values'])} values" in text
    # the log axes' labels as numbers (their mathtext, with math off, printed as source)
    assert "mathdefault" not in text and "1,000" in text and "10,000" in text


def test_title_dpi_and_jpg(recording, tmp_path):
    text = _svg_text(_plot(recording, tmp_path / "t.svg", "--title", "GPT-4o, 10,000 flips"))
    assert "GPT-4o, 10,000 flips" in text and "api.openai.com" not in text
    small = _plot(recording, tmp_path / "small.png", "--dpi", "50").read_bytes()
    large = _plot(recording, tmp_path / "large.png", "--dpi", "200").read_bytes()
    width = lambda png: struct.unpack(">I", png[16:20])[0]  # noqa: E731 (IHDR width)
    assert width(large) == 4 * width(small)
    assert _plot(recording, tmp_path / "p.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
    bad = runner.invoke(app, ["plot", str(recording), "-o", str(tmp_path / "p.png"), "--dpi", "5"])
    assert bad.exit_code == 2 and "--dpi" in bad.stderr
