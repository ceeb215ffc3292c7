"""examples/tour.sh: every step says what it shows, and shows it. Each step's title is checked
against its output (the facts a title promises are in what the step prints)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow

# title (start) -> what its output must hold
PROMISES = {
    "GPT-4o's coin flip, rebuilt from the published figures, replayed (1,000 of its 10,000": [
        "in 1,000 calls", "reconstructed from published figures", "replayed",
    ],
    "The first of those responses: its top-20 logprobs": ["response 0 of 10,000", '"Heads"'],
    "A real engine under batching: SmolLM2-135M (F32) on llama-server at concurrency 8": [
        "smol at", "distinct ' Heads' probabilities in 300 calls",
    ],
    "The same model as Q4_1 against F32: compare exits 1 when they differ": [
        "detcheck compare: drift",
    ],
    "Whole generations, replayed: how many different answers, and where they part": [
        "3 different completions in 200 calls", "split at",
    ],
    "Responses made elsewhere: a table of repeated questions becomes a prompt set (TARr, TARa)": [
        "5 prompts, 15 calls", "TARr@N", "TARa@N",
    ],
    "What an audit would send": ["dry run: nothing was sent", "to smol at http://localhost:8080/v1"],
    "The shareable page of the whole GPT-4o recording (10,000 calls)": ["wrote "],
}  # fmt: skip


def test_every_step_of_the_tour_shows_what_its_title_says(tmp_path):
    env = {**os.environ, "DETCHECK": f"{sys.executable} -m detcheck", "OUT": str(tmp_path)}
    env.pop("OPENAI_API_KEY", None)
    done = subprocess.run(
        ["bash", str(ROOT / "examples" / "tour.sh")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # one stream: each step's output follows its title
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:]
    steps = re.split(r"\n=== ", "\n" + done.stdout)[1:]
    assert len(steps) == len(PROMISES)
    for step, (title, facts) in zip(steps, PROMISES.items()):
        assert step.startswith(title), (step[:100], title)
        shown = " ".join(step.split())  # as read, across folded lines
        for fact in facts:
            assert fact in shown, (title, fact)
    page = (tmp_path / "report.html").read_text()
    assert "42 distinct Heads probabilities in 10,000 calls" in page
