"""Where each measurement parameter is defined, counted in a source tree: declarations (a
function parameter or dataclass field with a default, typer options included), experiment-file
field tables, validation messages, and Param(...) entries of the spec. Run it on two checkouts to
compare:  uv run python bench/params.py [SRC_DIR]   (default: src/detcheck)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

PARAMS = {  # Python name -> CLI flag
    "n": "--n",
    "model": "--model",
    "prompt": "--prompt",
    "labels": "--labels",
    "target_token": "--target-token",
    "temperature": "--temperature",
    "seed": "--seed",
    "no_seed": "--no-seed",
    "top_logprobs": "--top-logprobs",
    "max_tokens": "--max-tokens",
    "api": "--api",
    "base_url": "--base-url",
    "concurrency": "--concurrency",
    "rpm": "--rpm",
    "max_attempts": "--max-attempts",
    "backoff_s": "--backoff-s",
    "max_backoff_s": "--max-backoff-s",
    "timeout": "--timeout",
    "threshold": "--threshold",
}


def places(source: str, name: str, flag: str) -> int:
    names = f"(?:{name}|{name}_s|{name}s)" if name in ("timeout", "threshold") else name
    patterns = [
        rf"^\s+{names}\s*:[^=\n]*=",  # a declaration with a default (options, fields, args)
        rf"^\s+\"{names}\":\s*\(\(",  # an experiment-file field entry
        rf"{re.escape(flag)}(?: takes| needs)? must|\"{re.escape(flag)}\", options\.",  # checks
        rf"^\s+\(\"{re.escape(flag)}\", ",  # a (flag, value) row of a check loop
        rf"Param\(\s*\"{names}\"",  # the spec
        rf"key in \([^)]*\"{names}\"",  # a shared check in the file loader
    ]
    return sum(len(re.findall(p, source, re.MULTILINE)) for p in patterns)


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "src/detcheck")
    source = "\n".join(p.read_text() for p in sorted(root.rglob("*.py")))
    rows = [(name, places(source, name, flag)) for name, flag in PARAMS.items()]
    width = max(len(n) for n, _ in rows)
    for name, count in rows:
        print(f"{name:<{width}}  {count}")
    print(f"{'total':<{width}}  {sum(c for _, c in rows)}")


if __name__ == "__main__":
    main()
