"""A real trained model under llama-server: SmolLM2-135M-Instruct in two weight formats (Q4_1 as
shipped, and an F32 copy), each at concurrency 1 and 8, each case on a fresh server.

    uv run --group interop python bench/real_model.py [--repeat 2] [--only flip,generate,set]

Needs the model and the server (`python .ci/smollm2.py`, `python .ci/llama_server.py`). Per
format, concurrency and repeat it measures, with detcheck's own commands (`--json`):
- flip: the coin-flip prompt below on /v1/completions (SmolLM2 answers Heads or Tails to it):
  distinct Heads probabilities in --flip-n calls, the Heads probability, top-token flips;
- generate: the article's prompt on chat, --gen-n answers of --gen-tokens tokens: unique
  completions, positions whose logprob drifted, the largest drift;
- set: bench/real_model_prompts.jsonl (22 varied prompts), --set-n answers each of --set-tokens
  tokens: unique completions, the prompts that parted, where, the top-2 gap there, TARr@N.
Every case starts its own server, and its first call (the cold prompt cache) is sent and left
out before the measurement, so a case measures batching, not the cache.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / ".ci"))
from llama_server import serve  # noqa: E402
from smollm2 import f32, q4_1  # noqa: E402

# A few-shot prefix: SmolLM2-135M answers the article's prompt with "This" (Heads is not in its
# top 20); after four flips it answers " Heads" or " T"(ails), close to even.
COIN_PROMPT = (
    "Coin flip 1: Heads\nCoin flip 2: Tails\nCoin flip 3: Tails\nCoin flip 4: Heads\nCoin flip 5:"
)
PROMPTS = ROOT / "bench" / "real_model_prompts.jsonl"
FORMATS = {"q4_1": q4_1, "f32": f32}
# --no-repack: this CPU advertises AMX and llama.cpp's repacked Q4_1 kernels crash on it
SERVER_ARGS = ("--no-repack",)
ENV = {**os.environ, "OPENAI_API_KEY": "unused-by-llama-server"}


def detcheck(url: str, out: Path, *args) -> dict:
    command = [sys.executable, "-m", "detcheck.cli", *map(str, args), "--base-url", url]
    command += ["--model", "smol"]
    command += ["-o", str(out), "-q", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, env=ENV)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args[:1])} failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout)


def warm(url: str, out: Path, api: str, prompt: str) -> None:
    detcheck(
        url, out / "warm", "flip", "--api", api, "--prompt", prompt, "-n", 1, "--concurrency", 1
    )


def flip_case(url, out, concurrency, args) -> dict:
    warm(url, out, "completions", COIN_PROMPT)
    r = detcheck(
        url, out, "flip", "--api", "completions", "--prompt", COIN_PROMPT,
        "-n", args.flip_n, "--concurrency", concurrency,
    )  # fmt: skip
    modal = r["modal"] or {}
    return {
        "case": "flip",
        "N": r["n"],
        "distinct": r["distinct"],
        "result": f"Heads {modal.get('prob_pct', float('nan')):.4f}% "
        f"(modal, {modal.get('share', 0):.1%})",
        "detail": f"top token {r['top_token']['modal_token']!r}, flips {r['top_token']['flips']}",
        "run": r["run_path"],
    }


def generate_case(url, out, concurrency, args) -> dict:
    warm(url, out, "chat", "Flip a coin. Return Heads or Tails only.")
    r = detcheck(
        url, out, "generate", "-n", args.gen_n, "--max-tokens", args.gen_tokens,
        "--concurrency", concurrency,
    )  # fmt: skip
    drifted = [p for p in r["positions"] if p["distinct_logprobs"] > 1]
    spread = max((p["logprob_spread"] for p in drifted), default=0.0)
    return {
        "case": "generate",
        "N": r["n"],
        "distinct": r["unique_completions"],
        "result": f"{r['unique_completions']} completion(s) of {r['max_tokens_seen']} tokens",
        "detail": f"logprob drifted at {len(drifted)} of {len(r['positions'])} positions "
        f"(largest {spread:.2g})",
        "run": r["run_path"],
    }


def set_case(url, out, concurrency, args) -> dict:
    warm(url, out, "chat", "Hello")
    r = detcheck(
        url, out, "generate", "--prompts", PROMPTS, "-n", args.set_n,
        "--max-tokens", args.set_tokens, "--concurrency", concurrency,
    )  # fmt: skip
    parted = [p for p in r["prompts"] if p["unique_completions"] > 1]
    where = "; ".join(
        f"{p['id']}: {p['unique_completions']} at token {p['first_divergence']['min']}, "
        f"gap {p['first_split_gap_logprob']:.2g}"
        for p in parted
    )
    agreement = r["agreement"] or {}
    return {
        "case": f"set ({len(r['prompts'])} prompts)",
        "N": r["n"],
        "distinct": r["unique_completions"],
        "result": f"TARr@{args.set_n} {agreement.get('raw', float('nan')):.1%}",
        "detail": f"{len(parted)} prompt(s) parted" + (f": {where}" if where else ""),
        "run": ", ".join(r["run_paths"][:1]) + (" ..." if len(r["run_paths"]) > 1 else ""),
    }


CASES = {"flip": flip_case, "generate": generate_case, "set": set_case}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--only", default="flip,generate,set")
    parser.add_argument("--formats", default="q4_1,f32")
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--flip-n", type=int, default=300)
    parser.add_argument("--gen-n", type=int, default=96)
    parser.add_argument("--gen-tokens", type=int, default=64)
    parser.add_argument("--set-n", type=int, default=8)
    parser.add_argument("--set-tokens", type=int, default=48)
    parser.add_argument("--out", type=Path, default=None, help="keep the runs here")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="detcheck-real-model-"))
    rows = []
    for repeat in range(1, args.repeat + 1):
        for name in args.formats.split(","):
            model = FORMATS[name]()
            if not model.exists():
                raise SystemExit(f"{model} is missing: python .ci/smollm2.py")
            for concurrency in map(int, args.concurrency.split(",")):
                for case in args.only.split(","):
                    where = out / f"r{repeat}-{name}-c{concurrency}-{case}"
                    started = time.monotonic()
                    with serve(model, extra=SERVER_ARGS, alias="smol") as url:  # a fresh server
                        row = CASES[case](url, where, concurrency, args)
                    row = {"repeat": repeat, "format": name, "c": concurrency, **row}
                    row["s"] = round(time.monotonic() - started)
                    print(json.dumps(row), file=sys.stderr)
                    rows.append(row)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    shown = [{k: v for k, v in r.items() if k != "run"} for r in rows]
    print(tabulate(shown, headers="keys"))
    print(f"\nruns kept in {out}")


if __name__ == "__main__":
    main()
