"""`detcheck import` beside DuckDB's reader writing the same fields to Parquet, on the same files:
what a user would reach for instead. Each import, and each DuckDB conversion, runs in its own
process; the table gives the wall time, the rows per second and that process's peak memory.

Inputs (written once under --dir, reused by later runs; large files never go in the repo):
  one-token   openai JSONL, bare chat.completion objects of one token with 20 top logprobs
  with-req    openai JSONL, {"request", "response"} of 128-token completions (no top logprobs),
              --log-prompts prompts repeated
  batch       a Batch API output file of 128-token completions, with its input file
              (--log-prompts prompts)
  csv         a CSV table, one completion per row, --prompts questions repeated

detcheck runs as a plain `pip install detcheck` has it: bytecode cached (a warm-up import
first), and without pandas (a dev group package: pyarrow imports it, ~1.2 s, whenever it
converts Python objects, if it is there); --with-pandas measures the dev environment as it is.

    uv run python bench/import_rows.py                        # ~256 MB each, 1,000,000 CSV rows
    uv run python bench/import_rows.py --mb 1024 --only one-token,with-req
    uv run python bench/import_rows.py --against 4ac19ae      # and detcheck at that revision
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

ROOT = Path(__file__).resolve().parent.parent
SHAPES = ("one-token", "with-req", "batch", "csv")
VOCAB = [f" w{k}" for k in range(512)]


def one_token_body(i: int) -> dict:
    logprob = -0.1 - 1e-9 * (i % 40)
    tokens = [("Heads", logprob), ("T", -2.3)] + [(f"tok{j}", -12.0 - 0.125 * j) for j in range(18)]
    top = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in tokens]
    return {
        "id": f"chatcmpl-bench-{i}", "object": "chat.completion", "created": 1_700_000_000 + i,
        "model": "gpt-4o-2024-08-06", "system_fingerprint": "fp_bench",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Heads"},
                     "logprobs": {"content": [dict(top[0], top_logprobs=top)]},
                     "finish_reason": "length"}],
        "usage": {"prompt_tokens": 18, "completion_tokens": 1, "total_tokens": 19},
    }  # fmt: skip


def long_body(i: int, prompt: int, length: int = 128) -> dict:
    """A 128-token completion; one call in 20 parts from the common answer at position 60."""
    words = [VOCAB[(prompt * 7 + k) % len(VOCAB)] for k in range(length)]
    if i % 20 == 0:
        words[60:] = [VOCAB[(prompt * 11 + k) % len(VOCAB)] for k in range(60, length)]
    content = [{"token": w, "logprob": -0.01 * (k % 7), "bytes": list(w.encode()),
                "top_logprobs": []} for k, w in enumerate(words)]  # fmt: skip
    return {
        "id": f"chatcmpl-bench-{i}", "object": "chat.completion", "created": 1_700_000_000 + i,
        "model": "gpt-4o-2024-08-06", "system_fingerprint": "fp_bench",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(words)},
                     "logprobs": {"content": content}, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 18, "completion_tokens": length, "total_tokens": 18 + length},
    }  # fmt: skip


def request_of(prompt: int, seed: int) -> dict:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": f"Tell story {prompt}."}],
            "max_tokens": 128, "logprobs": True, "temperature": 0, "seed": seed}  # fmt: skip


def write_lines(path: Path, megabytes: float, line_of) -> int:
    lines = 0
    with open(path, "w") as f:
        while f.tell() < megabytes * 1_000_000:
            f.write(json.dumps(line_of(lines)) + "\n")
            lines += 1
    return lines


def make_inputs(where: Path, shape: str, mb: float, rows: int, prompts: int,
                log_prompts: int) -> tuple[list, int]:  # fmt: skip
    """(the import's arguments, rows) of one input, written unless already there."""
    stamp = where / f"{shape}-{mb:g}-{rows}-{prompts}-{log_prompts}.json"
    if stamp.exists():
        return json.loads(stamp.read_text())
    if shape == "one-token":
        path = where / "one-token.jsonl"
        n = write_lines(path, mb, one_token_body)
        args = [str(path), "--format", "openai"]
    elif shape == "with-req":
        prompts = log_prompts
        path = where / "with-req.jsonl"
        n = write_lines(path, mb, lambda i: {"request": request_of(i % prompts, 40 + i),
                                             "response": long_body(i, i % prompts)})  # fmt: skip
        args = [str(path), "--format", "openai"]
    elif shape == "batch":
        prompts = log_prompts
        path, inputs = where / "batch-out.jsonl", where / "batch-in.jsonl"
        n = write_lines(path, mb, lambda i: {
            "id": f"batch_req_{i}", "custom_id": f"c-{i}",
            "response": {"status_code": 200, "request_id": f"req_{i}",
                         "body": long_body(i, i % prompts)}})  # fmt: skip
        with open(inputs, "w") as f:
            for i in range(n):
                f.write(json.dumps({"custom_id": f"c-{i}", "method": "POST",
                                    "url": "/v1/chat/completions",
                                    "body": request_of(i % prompts, 42)}) + "\n")  # fmt: skip
        args = [str(path), "--format", "batch", "--batch-input", str(inputs)]
    else:
        path = where / "table.csv"
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["rubric_id", "prompt", "response"])
            for i in range(rows):
                q = i % prompts
                answer = "Yes" if (q * 7 + i // prompts) % 11 else "No"  # some questions disagree
                w.writerow([q, f"Question {q}: is it so?", f'{{"Answer":"{answer}"}}'])
        n = rows
        args = [str(path), "--text", "response", "--id", "rubric_id", "--prompt", "prompt"]
    stamp.write_text(json.dumps([args, n]))
    return args, n


# DuckDB's side: the fields detcheck keeps, parsed by its reader, written as Parquet
DUCKDB = {
    "one-token": "SELECT id, model, system_fingerprint, choices, usage FROM read_json({src}, "
    "format='newline_delimited')",
    "with-req": "SELECT request, response.id, response.model, response.system_fingerprint, "
    "response.choices, response.usage FROM read_json({src}, format='newline_delimited', "
    "maximum_object_size=67108864)",
    "batch": "SELECT o.custom_id, o.response.status_code, o.response.request_id, "
    "o.response.body.id, o.response.body.model, o.response.body.choices, o.response.body.usage, "
    "i.body AS request FROM read_json({src}, format='newline_delimited', "
    "maximum_object_size=67108864) o LEFT JOIN read_json({inputs}, format='newline_delimited') i "
    "USING (custom_id)",
    "csv": "SELECT * FROM read_csv({src})",
}


def timed(command: list[str], env: dict | None = None) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one child process (its own rusage, from wait4)."""
    with tempfile.TemporaryFile() as stderr:  # a file: a pipe would fill and block the child
        t0 = time.perf_counter()
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - t0
        stderr.seek(0)
        error = stderr.read().decode(errors="replace")[-4000:]
    if status != 0:
        sys.exit(f"{' '.join(command[:6])}...: exit {status}\n{error}")
    return seconds, usage.ru_maxrss / 1024


PLAIN = """
import sys
class NoPandas:  # as a plain install: pandas is not there
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "pandas":
            raise ModuleNotFoundError(name)
sys.meta_path.insert(0, NoPandas())
sys.argv = ["detcheck", *sys.argv[1:]]
from detcheck.cli import main
main()
"""


def detcheck_command(args: list[str], with_pandas: bool) -> list[str]:
    if with_pandas:
        return [sys.executable, "-m", "detcheck", *args]
    return [sys.executable, "-c", PLAIN, *args]


def duckdb_command(shape: str, args: list[str], dest: Path) -> list[str]:
    inputs = args[args.index("--batch-input") + 1] if "--batch-input" in args else None
    query = DUCKDB[shape].format(src=repr(args[0]), inputs=repr(inputs))
    code = (f"import duckdb; duckdb.connect().execute({f'COPY ({query}) TO ' + repr(str(dest))!r}"
            " + \" (FORMAT parquet)\")")  # fmt: skip
    return [sys.executable, "-c", code]


def worktree(rev: str, where: Path) -> Path:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), rev],
                   check=True, capture_output=True)  # fmt: skip
    return where / "src"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SHAPES))
    parser.add_argument("--mb", type=float, default=256, help="size of each JSONL input")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the CSV table")
    parser.add_argument("--prompts", type=int, default=1000, help="questions of the CSV table")
    parser.add_argument("--log-prompts", type=int, default=100, help="requests of the logs")
    parser.add_argument("--with-pandas", action="store_true")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "detcheck-import")
    parser.add_argument("--against", help="a revision to time too (checked out under --dir)")
    parser.add_argument("--repeat", type=int, default=1, help="best of this many runs")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    codes = [("now", None)]
    if args.against:
        tree = args.dir / f"rev-{args.against}"
        codes.append(
            (args.against, tree / "src" if tree.exists() else worktree(args.against, tree))
        )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    table = []
    for shape in [s.strip() for s in args.only.split(",")]:
        import_args, rows = make_inputs(args.dir, shape, args.mb, args.rows, args.prompts,
                                        args.log_prompts)  # fmt: skip
        size_mb = os.path.getsize(import_args[0]) / 1e6
        row = [shape, f"{rows:,}", f"{size_mb:,.0f}"]
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            best = min(timed(duckdb_command(shape, import_args, Path(tmp) / f"d{k}.parquet"),
                             env) for k in range(args.repeat))  # fmt: skip
            row += [f"{best[0]:.1f}", f"{best[1]:,.0f}"]
            for label, src in codes:
                env = dict(os.environ)
                if src is not None:
                    env["PYTHONPATH"] = str(src)
                ours = min(
                    timed(
                        [
                            sys.executable,
                            "-m",
                            "detcheck",
                            "import",
                            *import_args,
                            "-q",
                            "--json",
                            "-o",
                            str(Path(tmp) / f"{label}-{k}"),
                        ],
                        env,
                    )  # fmt: skip
                    for k in range(args.repeat)
                )
                row += [f"{ours[0]:.1f}", f"{ours[1]:,.0f}", f"{ours[0] / best[0]:.1f}x"]
        table.append(row)
        print(tabulate([row]), file=sys.stderr)
    headers = ["input", "rows", "MB", "DuckDB s", "DuckDB MB"]
    for label, _ in codes:
        headers += [f"{label} s", f"{label} peak MB", f"{label} / DuckDB"]
    print(tabulate(table, headers=headers))


if __name__ == "__main__":
    main()
