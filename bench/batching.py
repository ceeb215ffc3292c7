"""llama.cpp's own server under batching, measured several times: distinct values per level.

    uv run python bench/batching.py [--repeats 3]

Needs `python .ci/llama_server.py` and `uv sync --group interop` (gguf). Each repeat starts a
fresh server on a small generated model (tests/interop/tiny_gguf.py), sends one warm-up call
(and records its value: the first-call effect), then measures 200 calls at concurrency 1,
300 at concurrency 8, and 200 at concurrency 1 with --background-load 6.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "tests" / "interop"))

from tabulate import tabulate  # noqa: E402
from test_llama_cpp_batching import SMALL, llama_server, measure  # noqa: E402
from tiny_gguf import write_tiny_llama  # noqa: E402

LEVELS = [
    ("concurrency 1", ["--n", 200, "--concurrency", 1]),
    ("concurrency 8", ["--n", 300, "--concurrency", 8]),
    ("concurrency 1 + background 6", ["--n", 200, "--concurrency", 1, "--background-load", 6]),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model = write_tiny_llama(Path(tmp) / "small.gguf", **SMALL)
        for repeat in range(args.repeats):
            with llama_server(model) as url:
                first = measure(url, Path(tmp) / f"first{repeat}", "flip", "--n", 1)
                first_lp = first["clusters"][0]["values"][0]["logprob"]
                row = [repeat + 1]
                for name, level in LEVELS:
                    data = measure(url, Path(tmp) / f"{repeat}-{name}", "flip", *level)
                    values = [v["logprob"] for c in data["clusters"] for v in c["values"]]
                    spread = max(values) - min(values)
                    row.append(f"{data['distinct']} ({spread:.1e})")
                    if name == "concurrency 1":
                        row.append("yes" if first_lp not in values else "no")
                rows.append(row)
    headers = ["run", "c=1: distinct (logprob range)", "first call differs from every c=1 call"]
    headers += ["c=8", "c=1 + background 6"]
    print(tabulate(rows, headers=headers))


if __name__ == "__main__":
    main()
