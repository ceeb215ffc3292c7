"""Build the SmolLM2-135M-Instruct recordings: a real trained model under llama.cpp's own server
(`.ci/llama_server.py`, 8 parallel slots, continuous batching, `-t 2`, `--no-repack`), the model
fetched and converted by `.ci/smollm2.py`. After one warm-up call on a fresh server each:

- smollm2-q4_1-coinflip-c8-300 and smollm2-f32-coinflip-c8-300: `detcheck flip --api completions
  --prompt <COIN> --n 300 --concurrency 8` (the few-shot coin prompt of bench/real_model.py);
- smollm2-f32-prompts-c8: `detcheck generate --prompts bench/real_model_prompts.jsonl --n 8
  --max-tokens 48 --concurrency 8`, one run per prompt.

    uv run --group interop python recordings/build_smollm2.py
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / ".ci"))
sys.path.insert(0, str(ROOT / "bench"))

from llama_server import serve  # noqa: E402
from real_model import COIN_PROMPT, PROMPTS  # noqa: E402
from smollm2 import f32, q4_1  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from detcheck.cli import app  # noqa: E402

ENV = {"OPENAI_API_KEY": "unused-by-llama-server"}


def measure(url: str, out: Path, *args: str) -> dict:
    common = ["--base-url", url, "--model", "smol", "--json", "-q", "--out", str(out)]
    result = CliRunner().invoke(app, [*args, *common], env=ENV)
    if result.exit_code:
        raise SystemExit(result.stderr)
    return json.loads(result.stdout)


def keep(run_dir: Path, target: Path) -> None:
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(run_dir, target, ignore=shutil.ignore_patterns("_detcheck.lock"))
    print(f"wrote {target}")


def main() -> None:
    coin = ["flip", "--api", "completions", "--prompt", COIN_PROMPT]
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in (("q4_1", q4_1()), ("f32", f32())):
            with serve(model, extra=("--no-repack",), alias="smol") as url:
                measure(url, Path(tmp) / "warm", *coin, "--n", "1", "--concurrency", "1")
                data = measure(url, Path(tmp) / name, *coin, "--n", "300", "--concurrency", "8")
            keep(Path(data["run_path"]), HERE / f"smollm2-{name}-coinflip-c8-300")
        with serve(f32(), extra=("--no-repack",), alias="smol") as url:
            measure(url, Path(tmp) / "warm-set", "generate", "--n", "1", "--max-tokens", "8")
            data = measure(
                url, Path(tmp) / "set", "generate", "--prompts", str(PROMPTS), "--n", "8",
                "--max-tokens", "48", "--concurrency", "8",
            )  # fmt: skip
        target = HERE / "smollm2-f32-prompts-c8"
        shutil.rmtree(target, ignore_errors=True)
        for run_path in data["run_paths"]:
            keep(Path(run_path), target / Path(run_path).name)


if __name__ == "__main__":
    main()
