"""Build `llama-server-c8-300`: a real engine's run, recorded. llama.cpp's own server (built by
`.ci/llama_server.py`) serves a small generated model (tests/interop/tiny_gguf.py: LLaMA
architecture, n_embd 256, 4 layers, random weights with Heads and Tails on top) with 8 parallel
slots and continuous batching; `detcheck flip --n 300 --concurrency 8` measures it after one
warm-up call. Batches differ from call to call, and so do the logprobs.

    uv run python recordings/build_llama_server.py
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "tests" / "interop"))

from test_llama_cpp_batching import SMALL, llama_server  # noqa: E402
from tiny_gguf import write_tiny_llama  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from detcheck.cli import app  # noqa: E402

NAME = "llama-server-c8-300"


def main() -> None:
    runner = CliRunner()
    with tempfile.TemporaryDirectory() as tmp:
        model = write_tiny_llama(Path(tmp) / "small.gguf", **SMALL)
        with llama_server(model) as url:
            common = ["--base-url", url, "--model", "small", "--json", "-q"]
            env = {"OPENAI_API_KEY": "unused-by-llama-server"}
            warm = ["flip", *common, "--n", "1", "--out", f"{tmp}/warm"]
            runner.invoke(app, warm, env=env)
            run = ["flip", *common, "--n", "300", "--concurrency", "8", "--out", f"{tmp}/runs"]
            result = runner.invoke(app, run, env=env)
        if result.exit_code:
            raise SystemExit(result.stderr)
        run_dir = Path(json.loads(result.stdout)["run_path"])
        target = HERE / NAME
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(run_dir, target, ignore=shutil.ignore_patterns("_detcheck.lock"))
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
