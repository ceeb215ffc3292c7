"""Time and peak memory of what a hostile endpoint (or a large input) costs detcheck, each case
in a fresh process, optionally against an earlier revision (checked out in a temporary worktree
and imported from there) for a before/after table.

    uv run python bench/hostile.py                          # every case, this tree
    uv run python bench/hostile.py --against 20a5643        # and the same cases there
    uv run python bench/hostile.py --only compaction,overlong --completions 200000

Cases:
  compaction   a journal of 200 answers of 10,000 tokens (top 20) compacted into a part
  overlong     `analyze` of 1,000 answers of 20 tokens and one of 120,000 (max_tokens ignored)
  analyze      `analyze` of --completions stored 128-token completions (default 1,000,000)
  bomb         `flip --via batch` whose output file is a 2 MB gzip that decodes to 2 GiB
  labels       resolving 5,000 labels with an empty tiktoken memory
  prompt       a run's start after one run with a --prompt-mb prompt was remembered
  audit_money  an audit with background arms, --max-cost at its own estimate: requests planned
               and received by the server
  audit_rpm    an audit under --rpm 300 (about 90 s): the most requests in any 60 s and 1 s
  audit_resume_dry_run  `audit --resume --dry-run` of a killed audit: requests it sent
  audit_outage 15 requests answered 503 mid-audit, then `--resume`: the exit and final verdicts
  audit_seeds  the seed check's seeds per call: repeats (or the fixed arm's seed) among them
  audit_require  `--require seed` where seed was not tested (--no-seed): the exit code
  audit_backend_change  a new backend right after the warm-up: first_call's verdict
  audit_false_alarm  4,000 checks with the same noise (4 values) in both arms: broken share
  import-cell  `import` of a CSV table with one --cell-mb cell (over the limit of one response)
  import-input `import --format batch` whose --batch-input has --batch-lines lines
  import-keys  `import` of a log with credentials under 12 names and shapes: how many reach disk
  import-kill  `import` of --kill-prompts prompts SIGKILLed --kills times at random moments (the
               final moves included): how often some but not all runs were visible, and whether
               the next import cleaned up
  import-ids   `import` of a CSV table of --id-prompts prompts (one row each): distinct run ids
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fake_openai import chat_body  # noqa: E402

PRELUDE = """
import json, sys, time
sys.path.insert(1, {tests!r})
t0 = time.perf_counter()
def done(**extra):
    # VmHWM, not ru_maxrss: the latter keeps the forking parent's size across exec
    status = open("/proc/self/status").read().split("VmHWM:")[1]
    peak = int(status.split()[0]) / 1024
    print(json.dumps({{"seconds": time.perf_counter() - t0, "peak_mb": peak, **extra}}))
"""

CASES = {
    "compaction": """
from detcheck.store import RunWriter
meta = {{"run_id": "r", "schema_version": 4, "config": {{"kind": "generate"}}}}
writer = RunWriter(Path({tmp!r}) / "run", meta, flush_every_s=1e9)
tokens = [f" t{{k % 5000}}" for k in range(10_000)]
others = [f" alt{{j}}" for j in range(19)]
row = {{"run_id": "r", "call": 0, "attempt": 1, "ok": True, "gen_tokens": tokens,
       "gen_logprobs": [-0.5] * 10_000, "gen_top_tokens": [[t, *others] for t in tokens],
       "gen_top_logprobs": [[-0.5 - j for j in range(20)]] * 10_000}}
for call in range(200):
    writer.append({{**row, "seq": call, "call": call}})
writer.close(status="complete")
done()
""",
    "overlong": """
from detcheck.api import analyze
report = analyze({run!r})
done(unique=report.unique_completions)
""",
    "analyze": """
from detcheck.api import analyze
report = analyze({run!r})
done(unique=report.unique_completions)
""",
    "bomb": """
import zlib
from typer.testing import CliRunner
from detcheck.cli import app
from fake_batch import FakeBatchAPI
def bomb(content, size=2 * 1024**3):
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b"x" * (1024 * 1024)
    parts = [z.compress(content)] + [z.compress(chunk) for _ in range(size // len(chunk))]
    return b"".join([*parts, z.flush()])
with FakeBatchAPI(seconds=0.2, gzip_output=bomb) as api:
    t0 = time.perf_counter()
    result = CliRunner().invoke(app, ["flip", "--via", "batch", "--base-url", api.base_url,
        "-n", "4", "-o", {tmp!r}, "-q", "--batch-poll-s", "0.1", "--max-attempts", "2"],
        env={{"OPENAI_API_KEY": "sk-bench-0123456789"}})
done(exit_code=result.exit_code)
""",
    "labels": """
import os
os.environ["TIKTOKEN_CACHE_DIR"] = {tmp!r}
from detcheck.send.tokens import resolve_targets
resolve_targets("gpt-4o", tuple(f"label{{k}}" for k in range(5000)))
done()
""",
    # --- the audit: money, pace, resume and verdicts (issue 38); requests counted at the server
    "audit_money": """
from typer.testing import CliRunner
from audit_engine import Engine
from fake_openai import FakeOpenAI
from detcheck.cli import app
args = ["audit", "--only", "mixed_load,shared_prefix", "--n", "40", "--out", {tmp!r}, "--json",
        "-q"]
with FakeOpenAI(Engine()) as server:
    env = {{"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": server.base_url}}
    plan = json.loads(CliRunner().invoke(app, [*args, "--dry-run"], env=env).stdout)
    cap = str(plan["estimated_cost_usd"])  # --max-cost at the audit's own estimate
    result = CliRunner().invoke(app, [*args, "--max-cost", cap], env=env)
    done(planned=plan["requests"], sent=len(server.requests), exit=result.exit_code)
""",
    "audit_rpm": """
from typer.testing import CliRunner
from audit_engine import Engine
from fake_openai import FakeOpenAI
from detcheck.cli import app
args = ["audit", "--only", "batch,mixed_load", "--n", "40", "--rpm", "300", "--out", {tmp!r},
        "-q"]
with FakeOpenAI(Engine()) as server:
    env = {{"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": server.base_url}}
    CliRunner().invoke(app, args, env=env)
    times = sorted(server.times)
def most(window):
    return max(sum(1 for u in times if t <= u < t + window) for t in times)
done(requests=len(times), rpm=300, max_in_60s=most(60.0), max_in_1s=most(1.0))
""",
    "audit_resume_dry_run": """
import os, signal, subprocess, sys
from audit_engine import Engine
from fake_openai import FakeOpenAI
cli = [sys.executable, "-m", "detcheck.cli", "audit"]
quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
with FakeOpenAI(Engine()) as server:
    env = {{**os.environ, "OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": server.base_url}}
    args = ["--only", "batch,top_logprobs", "--n", "40", "--out", {tmp!r}, "-q"]
    proc = subprocess.Popen([*cli, *args], env=env, **quiet)
    while len(server.requests) < 30:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    root = next(p for p in Path({tmp!r}).iterdir() if p.is_dir())
    before = len(server.requests)
    dry = subprocess.run([*cli, "--resume", str(root), "--dry-run", "-q"], env=env,
                         capture_output=True, text=True)
    said = (dry.stderr.strip().splitlines() or [""])[-1][:50]
    done(sent=len(server.requests) - before, exit=dry.returncode, said=said)
""",
    "audit_outage": """
from typer.testing import CliRunner
from audit_engine import Engine
from fake_openai import FakeOpenAI
from detcheck.cli import app
engine = Engine(top_logprobs=True, down=range(30, 45))  # 15 requests answered 503
args = ["audit", "--only", "batch,top_logprobs", "--n", "40", "--out", {tmp!r}, "--json", "-q",
        "--max-attempts", "3"]
with FakeOpenAI(engine) as server:
    env = {{"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": server.base_url}}
    first = CliRunner().invoke(app, args, env=env)
    root = next(p for p in Path({tmp!r}).iterdir() if p.is_dir())
    engine.down = range(0)  # the outage is over
    again = CliRunner().invoke(app, ["audit", "--resume", str(root), "--json", "-q"], env=env)
data = json.loads((root / "_audit.json").read_text())
final = ", ".join(f"{{c['name']}} {{c['verdict']}}" for c in data["checks"])
done(first_exit=first.exit_code, after_resume=final)
""",
    "audit_seeds": """
from typer.testing import CliRunner
from audit_engine import Engine
from fake_openai import FakeOpenAI
from detcheck.cli import app
with FakeOpenAI(Engine()) as server:
    env = {{"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": server.base_url}}
    CliRunner().invoke(app, ["audit", "--only", "seed", "--n", "12", "--out", {tmp!r}, "-q"],
                       env=env)
    seeds = [r["seed"] for r in server.requests if r.get("temperature") == 1.0]
# the fixed arm sends one seed k times; the other k must be new and distinct
repeated = len(seeds) - len(set(seeds)) - (len(seeds) // 2 - 1)
done(calls=len(seeds), seeds_repeated=repeated)
""",
    "audit_require": """
from typer.testing import CliRunner
from audit_engine import Engine
from fake_openai import FakeOpenAI
from detcheck.cli import app
with FakeOpenAI(Engine()) as server:
    env = {{"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": server.base_url}}
    result = CliRunner().invoke(app, ["audit", "--only", "batch,seed", "--no-seed", "--require",
                                      "seed", "--n", "4", "--out", {tmp!r}, "-q"], env=env)
done(exit=result.exit_code)  # seed was not tested: the gate must not pass
""",
    "audit_backend_change": """
from typer.testing import CliRunner
from audit_engine import Engine
from fake_openai import FakeOpenAI
from detcheck.cli import app
with FakeOpenAI(Engine(new_backend_from=1)) as server:  # a new backend after the warm-up
    env = {{"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": server.base_url}}
    result = CliRunner().invoke(app, ["audit", "--only", "first_call,batch", "--n", "20",
                                      "--out", {tmp!r}, "-q", "--json"], env=env)
data = json.loads(result.stdout)
first = next(c for c in data["checks"] if c["name"] == "first_call")
done(first_call=first["verdict"], named="endpoint_changes" in data)
""",
    "audit_false_alarm": """
import numpy as np
from detcheck.analysis import audit as verdicts
rng = np.random.default_rng(20261207)
trials = 4000
broken = sum(
    verdicts.differs("x", rng.choice(4, size=40).tolist(), rng.choice(4, size=40).tolist())[
        "verdict"] == "broken" for _ in range(trials))
done(level=verdicts.ALPHA, false_alarms=broken / trials)
""",
    "import-cell": """
from typer.testing import CliRunner
from detcheck.cli import app
result = CliRunner().invoke(app, ["import", {data!r} + "/cell.csv", "--text", "response", "--id",
    "q", "-o", {tmp!r} + "/runs", "--skip-bad", "-q", "--json"])
done(exit_code=result.exit_code, rows=json.loads(result.stdout)["n"] if result.exit_code == 0
     else result.stderr.strip()[-60:])
""",
    "import-input": """
from typer.testing import CliRunner
from detcheck.cli import app
result = CliRunner().invoke(app, ["import", {data!r} + "/out.jsonl", "--format", "batch",
    "--batch-input", {data!r} + "/in.jsonl", "-o", {tmp!r} + "/runs", "-q", "--json"])
done(exit_code=result.exit_code)
""",
    "import-keys": """
from typer.testing import CliRunner
from detcheck.cli import app
secrets = json.loads(Path({data!r} + "/secrets.json").read_text())
result = CliRunner().invoke(app, ["import", {data!r} + "/keys.jsonl", "-o", {tmp!r} + "/runs",
    "--json"])
written = b"".join(f.read_bytes() for f in Path({tmp!r}).rglob("*") if f.is_file())
written += (result.stdout + result.stderr).encode()
done(exit_code=result.exit_code, leaked=sum(s.encode() in written for s in secrets),
     of=len(secrets))
""",
    "import-kill": """
import os, random, signal, subprocess, shutil
random.seed(7)
def visible(out):
    found = 0
    for where, dirs, files in os.walk(out):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += "_run.json" in files
    return found
command = [sys.executable, "-m", "detcheck", "import", {data!r} + "/kill.csv", "--text",
           "response", "--id", "q", "-q"]
out = Path({tmp!r}) / "probe"
t = time.perf_counter()
subprocess.run([*command, "-o", str(out)], check=True)
whole = time.perf_counter() - t
prompts = visible(out)
partial = left = cleaned = 0
kills = {kills}
for k in range(kills):
    out = Path({tmp!r}) / f"k{{k}}"
    child = subprocess.Popen([*command, "-o", str(out)])
    time.sleep(random.uniform(0.5, 1.0) * whole)
    child.send_signal(signal.SIGKILL)
    child.wait()
    seen = visible(out)
    partial += 0 < seen < prompts
    hidden = [p for p in out.iterdir() if p.name.startswith(".")] if out.exists() else []
    if hidden:
        left += 1
        subprocess.run([sys.executable, "-m", "detcheck", "import", {data!r} + "/other.csv",
                        "--text", "response", "-q", "-o", str(out)], check=True)
        cleaned += not [p for p in out.iterdir() if p.name.startswith(".")]
    shutil.rmtree(out, ignore_errors=True)
done(prompts=prompts, kills=kills, some_but_not_all=partial, staging_left=left,
     cleaned_by_next=cleaned, import_s=whole)
""",
    "import-ids": """
from typer.testing import CliRunner
from detcheck.cli import app
from detcheck.store import read_runs
result = CliRunner().invoke(app, ["import", {data!r} + "/ids.csv", "--text", "response", "--id",
    "q", "-o", {tmp!r} + "/runs", "-q", "--json"])
ids = [] if result.exit_code else [r.meta["run_id"] for r in read_runs([{tmp!r} + "/runs"])]
done(exit_code=result.exit_code, runs=len(ids), distinct=len(set(ids)),
     error=result.stderr.strip()[-80:] if result.exit_code else None)
""",
    "prompt": """
import os
os.environ["TIKTOKEN_CACHE_DIR"] = {tmp!r}
from detcheck.send.tokens import resolve_targets, count_prompt_tokens
resolve_targets("gpt-4o", ("Heads", "Tails"))
count_prompt_tokens("gpt-4o", "Flip a coin. Return Heads or Tails only.")
done()
""",
}


def make_generate_run(path: Path, rows: int, length: int, outlier: int | None) -> Path:
    """A generate run written as a part directly (pyarrow): `rows` answers of `length` tokens,
    one in 1,000 parting at position 60, and optionally one answer of `outlier` tokens."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from detcheck.config import FlipConfig
    from detcheck.plan import Control, Plan, RetryPolicy, Target
    from detcheck.store import PARQUET_OPTIONS
    from detcheck.store.files import _schema_metadata, with_run_columns
    from detcheck.store.runs import run_meta
    from detcheck.store.schema import RUN_SCHEMA

    config = FlipConfig.of_kind("generate")
    config = FlipConfig(**{**config.__dict__, "max_tokens": length})
    targets = [Target("Heads", "Heads", "given")]
    plan = Plan(config, targets, None, rows, Control(concurrency=1), RetryPolicy(), {}, {})
    meta = run_meta(plan, "bench")
    meta.update(status="complete", via="online")
    path.mkdir(parents=True, exist_ok=True)
    (path / "_run.json").write_text(json.dumps(meta))
    vocab = pa.array([f" w{k}" for k in range(length)] + [" other"])
    lengths = np.full(rows, length, np.int64)
    if outlier:
        lengths[rows // 2] = outlier
    index = np.concatenate([np.arange(n) % length for n in lengths])
    starts = np.concatenate([[0], np.cumsum(lengths)])
    index[starts[:-1][::1000] + min(60, length - 1)] = length  # the parting token
    offsets = pa.array(starts.astype(np.int32) if starts[-1] < 2**31 else starts)
    tokens = pa.ListArray.from_arrays(offsets, vocab.take(pa.array(index)))
    values = pa.array(np.full(index.size, -0.01))
    logprobs = pa.ListArray.from_arrays(offsets, values)
    columns = {
        "seq": pa.array(np.arange(rows)), "call": pa.array(np.arange(rows)),
        "attempt": pa.array(np.ones(rows, np.int32)), "ok": pa.array(np.ones(rows, bool)),
        "gen_tokens": tokens, "gen_logprobs": logprobs,
        "text": pa.array(["answer"] * rows), "finish_reason": pa.array(["length"] * rows),
    }  # fmt: skip
    arrays = []
    for f in RUN_SCHEMA:
        if f.name in columns:
            arrays.append(columns[f.name].cast(f.type))
        else:
            arrays.append(pa.nulls(rows, f.type))
    table = pa.Table.from_arrays(arrays, schema=RUN_SCHEMA)
    table = with_run_columns(table, meta).replace_schema_metadata(_schema_metadata(meta))
    pq.write_table(table, path / "part-00000.parquet", row_group_size=10_000, **PARQUET_OPTIONS)
    return path


def make_import_inputs(where: Path, names: list[str], args) -> Path:
    """The import cases' files, under `where` (a temporary directory: never the repo)."""
    import base64
    import csv

    from detcheck.send.batch_api import MAX_LINE_BYTES  # noqa: F401 - the cap the cell passes

    where.mkdir(parents=True, exist_ok=True)
    if "import-cell" in names:
        with open(where / "cell.csv", "w") as f:
            f.write("q,response\n1,yes\n1,")
            chunk = "x" * (1 << 20)
            for _ in range(int(args.cell_mb)):
                f.write(chunk)
            f.write("\n1,no\n")
    if "import-input" in names:
        body = {"model": "gpt-4o", "max_tokens": 1, "logprobs": True, "top_logprobs": 20,
                "messages": [{"role": "user", "content": "Flip a coin. " * 40}]}  # fmt: skip
        with open(where / "in.jsonl", "w") as fin, open(where / "out.jsonl", "w") as fout:
            for i in range(args.batch_lines):
                fin.write(json.dumps({"custom_id": f"c-{i}", "method": "POST",
                                      "url": "/v1/chat/completions",
                                      "body": {**body, "seed": i}}) + "\n")  # fmt: skip
                if i < 1000:  # the output: a few lines are enough to need every request
                    fout.write(json.dumps({"custom_id": f"c-{i}", "response": {
                        "status_code": 200, "body": chat_body(i, -0.1)}}) + "\n")  # fmt: skip
    if "import-keys" in names:
        basic = base64.b64encode(b"admin:s3cret-basic-0002").decode()
        named = {"default_headers": {"X-Custom-Auth": "custom-header-0001"},
                 "http_headers": {"Authorization": f"Basic {basic}"},
                 "api-key": "azure-value-0003-abc", "x-api-key": "anthropic-value-0004",
                 "openai_api_key": "plainvalue-0005-xyz", "token": "session-token-0006",
                 "db_password": "hunter2-hunter2-0007", "client_secret": "client-secret-0008",
                 "metadata": {"service_key": "service-key-0009-q"}}  # fmt: skip
        google = "AIza" + "SyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q"
        github = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
        request = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}], **named}
        body = chat_body(0, -0.1)
        body["choices"][0]["message"]["content"] = f"try {google} or {github}"
        key = "sk-" + "Zq9Xw7" * 5  # a key that is the one-token answer
        answer = chat_body(1, -0.1)
        answer["choices"][0]["logprobs"]["content"][0]["token"] = key
        answer["choices"][0]["logprobs"]["content"][0]["bytes"] = list(key.encode())
        lines = [{"request": request, "response": body}, answer, answer]
        (where / "keys.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
        secrets = [google, github, basic, key, "custom-header-0001", "azure-value-0003-abc",
                   "anthropic-value-0004", "plainvalue-0005-xyz", "session-token-0006",
                   "hunter2-hunter2-0007", "client-secret-0008", "service-key-0009-q"]  # fmt: skip
        (where / "secrets.json").write_text(json.dumps(secrets))
    for name, prompts, rows in [("kill", args.kill_prompts, 2), ("ids", args.id_prompts, 1),
                                ("other", 2, 1)]:  # fmt: skip
        with open(where / f"{name}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["q", "response"])
            for k in range(rows):
                w.writerows([f"{name}{q:06d}", f"answer {(q + k) % 3}"] for q in range(prompts))
    return where


def worktree(rev: str, where: Path) -> Path:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), rev],
                   check=True, capture_output=True)  # fmt: skip
    return where / "src"


def run_case(name: str, fmt: dict, src: Path | None) -> dict:
    code = PRELUDE.format(tests=str(ROOT / "tests")) + "from pathlib import Path\n"
    code += textwrap.dedent(CASES[name]).format(**fmt)
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = f"{src}{os.pathsep}{env.get('PYTHONPATH', '')}"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1][:120]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(CASES))
    parser.add_argument("--against", help="a revision to measure too (before)")
    parser.add_argument("--completions", type=int, default=1_000_000)
    parser.add_argument("--prompt-mb", type=float, default=20)
    parser.add_argument("--cell-mb", type=float, default=512)
    parser.add_argument("--batch-lines", type=int, default=1_000_000)
    parser.add_argument("--kill-prompts", type=int, default=2000)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--id-prompts", type=int, default=10_000)
    args = parser.parse_args()
    from tabulate import tabulate

    names = [n.strip() for n in args.only.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        before = worktree(args.against, tmp / "before") if args.against else None
        data = {}
        if "overlong" in names:
            data["overlong"] = make_generate_run(tmp / "overlong", 1_001, 20, 120_000)
        if "analyze" in names:
            data["analyze"] = make_generate_run(tmp / "analyze", args.completions, 128, None)
        inputs = make_import_inputs(tmp / "inputs", names, args)
        for name in names:
            for label, src in [("now", None), *([("before", before)] if before else [])]:
                case_tmp = tmp / f"{name}-{label}"
                case_tmp.mkdir()
                if name == "prompt":  # remember one long prompt first, as an earlier run did
                    prompt = case_tmp / "prompt.txt"
                    prompt.write_text("Think, then flip a coin. " * int(args.prompt_mb * 4e4))
                    code = (
                        f"import os; os.environ['TIKTOKEN_CACHE_DIR'] = {str(case_tmp)!r}\n"
                        "from pathlib import Path\n"
                        "from detcheck.send.tokens import count_prompt_tokens\n"
                        f"count_prompt_tokens('gpt-4o', Path({str(prompt)!r}).read_text())"
                    )
                    env = dict(os.environ)
                    if src is not None:
                        env["PYTHONPATH"] = str(src)
                    subprocess.run([sys.executable, "-c", code], check=True, env=env)
                fmt = {"tmp": str(case_tmp), "run": str(data.get(name, "")), "data": str(inputs),
                       "kills": args.kills}  # fmt: skip
                result = run_case(name, fmt, src)
                rows.append({"case": name, "code": label, **result})
                print(json.dumps(rows[-1]), file=sys.stderr)
        if before is not None:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                            str(tmp / "before")], check=False)  # fmt: skip
    print(tabulate(rows, headers="keys", floatfmt=".2f"))


if __name__ == "__main__":
    main()
