"""history over a generated partitioned dataset: one line per run, newest last."""

from __future__ import annotations

import json
import math

from typer.testing import CliRunner

from conftest import write_run
from detcheck.cli import app

runner = CliRunner()


def test_history_lines_over_a_partitioned_dataset(tmp_path):
    days = ["2026-01-03", "2026-01-01", "2026-01-02"]
    for k, day in enumerate(days):
        part = tmp_path / "model=gpt-4o" / f"date={day}" / f"run-{k}"
        values = [math.log(0.9), math.log(0.95)] * (10 + k) + [math.log(0.5)] * k
        write_run(part, values, ["fp_a"] * len(values), started_at=f"{day}T00:00:00+00:00")
    bad = tmp_path / "model=gpt-4o" / "date=2026-01-04" / "broken"
    bad.mkdir(parents=True)
    (bad / "_run.json").write_text("{not json")
    result = runner.invoke(app, ["history", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.stderr
    lines = json.loads(result.stdout)["runs"]
    assert [x["started_at"][:10] for x in lines] == sorted(days)  # newest last
    by_day = {x["started_at"][:10]: x for x in lines}
    # k = 0, 1, 2 for 01-03, 01-01, 01-02: 20 + 3k calls, a third value from k = 1 on
    assert by_day["2026-01-03"]["n"] == 20 and by_day["2026-01-03"]["distinct"] == 2
    assert by_day["2026-01-03"]["clusters"] == 2 and by_day["2026-01-03"]["modal_share"] == 0.5
    assert by_day["2026-01-01"]["n"] == 23 and by_day["2026-01-01"]["distinct"] == 3
    assert by_day["2026-01-02"]["fingerprints"] == {"fp_a": 26}
    assert "skipped" in result.stderr and "broken" in result.stderr
    text = runner.invoke(app, ["history", str(tmp_path)])
    assert text.exit_code == 0
    rows = [line for line in text.stdout.splitlines() if line.startswith("2026-01-0")]
    assert [row[:10] for row in rows] == sorted(days)
