"""The engineered near-tie on llama.cpp's server, measured several times: completions alone
and under batching, where they part, and the top-2 gap there.

    uv run python bench/near_tie.py [--repeats 3]

Needs `python .ci/llama_server.py` and `uv sync --group interop` (gguf). Each repeat tunes a
fresh model against a fresh server (tests/interop/near_tie.py), then runs `detcheck generate
--max-tokens 8`: 40 calls at concurrency 1 and 80 at concurrency 8, after one warm-up call.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "tests" / "interop"))

from near_tie import engineer  # noqa: E402
from tabulate import tabulate  # noqa: E402
from test_llama_cpp_batching import SMALL, llama_server, measure  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for k in range(args.repeats):
        work = Path(tempfile.mkdtemp(prefix="detcheck-tie-"))
        started = time.perf_counter()
        model, tuning = engineer(work, SMALL, llama_server, log=lambda _: None)
        tuned_s = time.perf_counter() - started
        with llama_server(model) as url:
            measure(url, work / "warm", "generate", "--n", 1, "--max-tokens", 8)
            alone = measure(
                url, work / "c1", "generate", "--n", 40, "--max-tokens", 8, "--concurrency", 1
            )
            batched = measure(
                url, work / "c8", "generate", "--n", 80, "--max-tokens", 8, "--concurrency", 8
            )
        split = batched["splits"][0] if batched["splits"] else {}
        rows.append([
            k + 1, f"{tuning['alone']:.2g}", f"{tuned_s:.1f} s", alone["unique_completions"],
            batched["unique_completions"], f"{batched['modal_completion']['share']:.1%}",
            split.get("position", ""), f"{split.get('top_gap_logprob', float('nan')):.2g}",
        ])  # fmt: skip
    print(tabulate(rows, headers=["run", "gap alone (nats)", "tuning", "c=1 completions",
                                  "c=8 completions", "c=8 modal share", "split at",
                                  "top-2 gap there (nats)"]))  # fmt: skip


if __name__ == "__main__":
    main()
