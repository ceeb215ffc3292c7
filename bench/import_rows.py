"""`detcheck import` on large inputs: a CSV table of --rows completions (--prompts questions,
repeated), and an openai-format JSONL of one-token chat completions (top 20 logprobs) about
--jsonl-mb megabytes. Each import runs in its own process; prints the wall time, the rows per
second and the process's peak memory (max RSS).

    uv run python bench/import_rows.py [--rows 1000000] [--prompts 1000] [--jsonl-mb 1024]
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fake_openai import chat_body  # noqa: E402


def write_table(path: Path, rows: int, prompts: int) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["rubric_id", "prompt", "response"])
        for i in range(rows):
            q = i % prompts
            answer = "Yes" if (q * 7 + i // prompts) % 11 else "No"  # some questions disagree
            w.writerow([q, f"Question {q}: is it so?", f'{{"Answer":"{answer}"}}'])


def write_jsonl(path: Path, megabytes: int) -> int:
    lines = 0
    with open(path, "w") as f:
        while f.tell() < megabytes * 1_000_000:
            body = chat_body(lines, -0.1 - 1e-9 * (lines % 40))
            f.write(json.dumps(body) + "\n")
            lines += 1
    return lines


def timed_import(args: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one `detcheck import` in a child process."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "detcheck", "import", *args, "-q", "--json"],
                          capture_output=True, text=True)  # fmt: skip
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(done.stderr)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return seconds, peak_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--prompts", type=int, default=1000)
    parser.add_argument("--jsonl-mb", type=int, default=1024)
    args = parser.parse_args()
    table = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_table(tmp / "table.csv", args.rows, args.prompts)
        size_mb = (tmp / "table.csv").stat().st_size / 1e6
        columns = ["--text", "response", "--id", "rubric_id", "--prompt", "prompt"]
        seconds, peak = timed_import([str(tmp / "table.csv"), *columns, "-o", str(tmp / "a")])
        table.append(["csv table", f"{args.rows:,}", f"{size_mb:,.0f}", args.prompts,
                      f"{seconds:.1f}", f"{args.rows / seconds:,.0f}", f"{peak:,.0f}"])  # fmt: skip
        if args.jsonl_mb:
            lines = write_jsonl(tmp / "log.jsonl", args.jsonl_mb)
            size_mb = (tmp / "log.jsonl").stat().st_size / 1e6
            seconds, peak_all = timed_import([str(tmp / "log.jsonl"), "-o", str(tmp / "b")])
            # RUSAGE_CHILDREN is the largest child so far: a larger figure is this one's
            shown = f"{peak_all:,.0f}" if peak_all > peak else f"<= {peak:,.0f}"
            table.append(["openai jsonl", f"{lines:,}", f"{size_mb:,.0f}", 1, f"{seconds:.1f}",
                          f"{lines / seconds:,.0f}", shown])  # fmt: skip
    headers = ["input", "rows", "MB", "prompts", "seconds", "rows/s", "peak RSS MB"]
    print(tabulate(table, headers=headers))


if __name__ == "__main__":
    main()
