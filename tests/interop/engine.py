"""What the llama-server interop tests share: the server runner and the model paths from .ci/
(`serve`, `binary`, `q4_1`, `f32`), the skip when something is missing (an error instead with
DETCHECK_REQUIRE_LLAMA_SERVER=1, as in CI), and `measure`: one detcheck command's --json."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from detcheck.cli import app

ROOT = Path(__file__).parents[2]
ENV = {"OPENAI_API_KEY": "unused-by-llama-server"}
sys.path.insert(0, str(ROOT / ".ci"))
try:
    from llama_server import binary, serve
    from smollm2 import f32, q4_1
    from variants import gemma, q8_0, step
finally:
    sys.path.pop(0)

__all__ = ["binary", "f32", "gemma", "measure", "q4_1", "q8_0", "require", "serve", "step"]


def require(*paths: Path, how: str) -> None:
    """Skip the calling test module unless every path exists (in CI: fail)."""
    missing = [str(p) for p in paths if not p.exists()]
    if not missing:
        return
    if os.environ.get("DETCHECK_REQUIRE_LLAMA_SERVER") == "1":
        raise RuntimeError(f"missing {', '.join(missing)}: {how}")
    pytest.skip(f"not built or fetched: {', '.join(missing)} ({how})", allow_module_level=True)


def measure(url: str, out: Path, command: str, *args, model: str = "small") -> dict:
    result = CliRunner().invoke(
        app,
        [command, "--base-url", url, "--model", model, "--out", str(out), "-q", "--json",
         *map(str, args)],
        env=ENV,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)
