"""`detcheck audit` against a real engine, llama-server (8 slots, continuous batching, -t 2,
--no-repack), serving SmolLM2-135M-Instruct as Q4_1 and as F32 (the coin prompt on
/v1/completions), and the tests' random-weight model (tests/interop/tiny_gguf.py, the article's
prompt on chat), each on a fresh server, --repeat times.
Prints one row per format and repeat: the wall time, the calls sent (and what running every arm
to N would have sent), and each check's verdict.

    uv run --group interop python bench/audit.py [--repeat 2] [--n 40]

Needs the model and the server (`python .ci/smollm2.py`, `python .ci/llama_server.py`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / ".ci"))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests" / "interop"))

from llama_server import serve  # noqa: E402
from real_model import COIN_PROMPT  # noqa: E402
from smollm2 import f32, q4_1  # noqa: E402
from test_llama_cpp_batching import SMALL  # noqa: E402
from tiny_gguf import write_tiny_llama  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from detcheck.cli import app  # noqa: E402


def audit_row(model: Path, request: list[str], n: int) -> tuple[list, list[str]]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        serve(model, extra=("--no-repack",), alias="smol") as url,
    ):
        t0 = time.perf_counter()
        result = CliRunner().invoke(
            app,
            ["audit", "--base-url", url, "--model", "smol", *request, "--n", str(n),
             "--out", tmp, "--json", "-q"],
            env={"OPENAI_API_KEY": "unused-by-llama-server"},
        )  # fmt: skip
        seconds = time.perf_counter() - t0
        if result.exit_code not in (0, 1):
            raise SystemExit(result.stderr)
        data = json.loads(result.stdout)
    verdicts = [c["verdict"] for c in data["checks"]]
    drifted = "yes" if data["drift"]["drifted"] else "no"
    calls = [data["calls"], data["calls_every_arm_to_n"]]
    return [f"{seconds:.1f}", *calls, *verdicts, drifted], [c["name"] for c in data["checks"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--n", type=int, default=40, help="calls per arm")
    args = parser.parse_args()
    rows, names = [], None
    coin = ["--api", "completions", "--prompt", COIN_PROMPT]
    with tempfile.TemporaryDirectory() as models:
        engines = [
            ("SmolLM2 Q4_1", q4_1(), coin),
            ("SmolLM2 F32", f32(), coin),
            ("random weights", write_tiny_llama(Path(models) / "small.gguf", **SMALL), []),
        ]
        for repeat in range(1, args.repeat + 1):
            for name, model, request in engines:
                row, names = audit_row(model, request, args.n)
                rows.append([name, repeat, *row])
    headers = ["engine", "repeat", "seconds", "calls", "every arm to N", *names, "drift"]
    print(tabulate(rows, headers=headers))


if __name__ == "__main__":
    main()
