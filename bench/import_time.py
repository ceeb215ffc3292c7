"""How long `import detcheck` takes (and what it loads), against the same for the CLI's --help:
the API is imported lazily, so `import detcheck` must stay as cheap as the version string.

    uv run python bench/import_time.py [--repeats 9] [--against REV]

Each figure is the median wall time of a fresh interpreter running the statement, minus that of
an interpreter importing nothing. `--against REV` measures a git revision's src/ too.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

ROOT = Path(__file__).resolve().parents[1]
STATEMENTS = {
    "nothing": "pass",
    "import detcheck": "import detcheck",
    "detcheck.__version__": "import detcheck; detcheck.__version__",
    "import detcheck.cli": "import detcheck.cli",
    "detcheck.analyze (first use)": "import detcheck; detcheck.analyze",
}
HEAVY = ("openai", "pyarrow", "numpy", "pandas", "typer")


def timed(statement: str, src: Path, repeats: int) -> float | None:
    """Median seconds, or None where the statement fails (an older tree without the API)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", statement], env={"PYTHONPATH": str(src)}, capture_output=True
        )
        if done.returncode:
            return None
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def loaded(src: Path) -> list[str]:
    code = f"import sys, detcheck; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True,
        env={"PYTHONPATH": str(src)},
    )  # fmt: skip
    return done.stdout.split()


def checkout(rev: str) -> Path:
    target = Path(tempfile.mkdtemp(prefix="detcheck-rev-"))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src"], check=True,
                             capture_output=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target / "src"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--against", help="a git revision to measure too")
    args = parser.parse_args()
    sources = {"this tree": ROOT / "src"}
    if args.against:
        sources[args.against] = checkout(args.against)
    rows = []
    for label, src in sources.items():
        base = timed("pass", src, args.repeats)
        for name, statement in STATEMENTS.items():
            if name == "nothing":
                continue
            seconds = timed(statement, src, args.repeats)
            shown = "n/a" if seconds is None else f"{(seconds - base) * 1000:.0f}"
            rows.append([label, name, shown])
        rows.append(
            [label, "heavy modules `import detcheck` loads", " ".join(loaded(src)) or "none"]
        )
    print(tabulate(rows, headers=["source", "statement", "ms over a bare interpreter"]))


if __name__ == "__main__":
    main()
