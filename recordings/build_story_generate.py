"""Build `story-generate-200`: a synthetic whole-generation recording with a known ground truth,
for the README demo and the tests (`detcheck generate --replay recordings/story-generate-200`).

The story (tests/fake_openai.py `Story`) is served over 127.0.0.1 by the tests' fake server and
measured by `detcheck generate` through the real request path and writer: 200 calls, 40 tokens
each; calls i % 10 == 3 part at position 17 and calls i % 25 == 7 at position 5, each on a
near-tie (top-2 gap 0.002 nats); at positions 0-9 the chosen token's logprob takes 3
bit-distinct values. So: 3 completions, all sharing their first 5 tokens.

    uv run python recordings/build_story_generate.py
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "tests"))

from typer.testing import CliRunner  # noqa: E402

from detcheck.cli import app  # noqa: E402
from fake_openai import FakeOpenAI, Story, story_reply  # noqa: E402

SENTENCE = (
    "The coin spun twice in the lamplight , hung for a moment above the table , and then "
    "fell flat with the queen facing up while the whole room held its breath and waited "
    "for someone to speak"
)
WORDS = tuple(SENTENCE.split(" "))[:40]
NAME = "story-generate-200"


def main() -> None:
    story = Story(words=WORDS)
    with tempfile.TemporaryDirectory() as out, FakeOpenAI(story_reply(story)) as server:
        result = CliRunner().invoke(
            app,
            ["generate", "--n", "200", "--concurrency", "8", "--model", "story-synthetic",
             "--prompt", "Flip a coin and tell how it landed, in one sentence.",
             "--target-token", "The", "--out", out, "--json", "-q"],
            env={"OPENAI_API_KEY": "not-a-key-synthetic", "OPENAI_BASE_URL": server.base_url},
        )  # fmt: skip
        if result.exit_code:
            raise SystemExit(result.stderr)
        run_dir = Path(json.loads(result.stdout)["run_path"])
        target = HERE / NAME
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(run_dir, target, ignore=shutil.ignore_patterns("_detcheck.lock"))
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
