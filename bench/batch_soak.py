"""Kill-at-random soak of `--via batch`: real `detcheck flip --via batch` processes SIGKILLed at
random moments (start-up, upload, create, polling, collection, inside resumes), each run resumed
until complete, against the fake Batch API of the tests (tests/fake_batch.py) with every upload,
create and download slowed so that kills land inside them, some lines failing and some batches
expiring part-way (so follow-up batches happen too).

    uv run python bench/batch_soak.py                    # 5 runs x 5 kills = 25 SIGKILLs
    uv run python bench/batch_soak.py --runs 2 --kills 3 --n 30

Per run: kills (and in which phase the process was), whether it reached exactly N, duplicates
(calls with more than one success stored), and paid lines: for every call, the lines the provider
ran and answered 200 for it. Want exactly 1 for every call, so "paid twice" must be 0.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from tabulate import tabulate  # noqa: E402

from detcheck.store import read_run  # noqa: E402
from fake_batch import FakeBatchAPI  # noqa: E402

KEY = "sk-batch-soak-0123456789abcdef"


def phase(api: FakeBatchAPI, since: int) -> str:
    """What the process was doing when killed: the last request it made."""
    if len(api.requests) <= since:
        return "start-up"
    method, path, _, _ = api.requests[-1]
    if path == "/v1/files":
        return "upload"
    if path == "/v1/batches" and method == "POST":
        return "create"
    if path.endswith("/content"):
        return "collect"
    return "poll"


def soak_one(out: Path, n: int, kills: int, rng: random.Random) -> dict:
    api = FakeBatchAPI(
        seconds=1.5,
        fail=lambda i: i % 11 == 5,
        expire_after=None,
        phase_delay_s=0.4,
        create_delay_s=0.0,
    )
    with api:
        env = {**os.environ, "OPENAI_API_KEY": KEY}
        quiet = {"env": env, "stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "text": True}
        first = [sys.executable, "-m", "detcheck.cli", "flip", "--via", "batch", "-q"]
        first += ["--base-url", api.base_url, "-n", str(n), "-o", str(out), "--batch-poll-s", "0.2"]
        proc = subprocess.Popen(first, **quiet)
        run_dir, phases, resumes = None, Counter(), 0
        for _ in range(kills):
            since = len(api.requests)
            if rng.random() < 0.2:  # anywhere, start-up (importing, reading the run) included
                time.sleep(rng.uniform(0.2, 4.0))
            else:  # once this process talks to the API, at a random moment after
                deadline = time.monotonic() + 120
                while len(api.requests) <= since and proc.poll() is None:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.01)
                time.sleep(rng.uniform(0.0, 2.5))
            if proc.poll() is not None:
                break
            phases[phase(api, since)] += 1
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            found = list(out.glob("*/_run.json"))
            if not found:  # killed before the run existed: start it again
                proc = subprocess.Popen(first, **quiet)
                continue
            run_dir = found[0].parent
            resumes += 1
            resume = [sys.executable, "-m", "detcheck.cli", "flip", "--resume", str(run_dir)]
            proc = subprocess.Popen([*resume, "-q"], **quiet)
        _, stderr = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"the last process failed ({proc.returncode}): {stderr[-800:]}")
        run_dir = run_dir or next(out.glob("*/_run.json")).parent
        table = read_run(run_dir).table
        ok_calls = Counter(c for c, ok in zip(table.column("call").to_pylist(),
                                              table.column("ok").to_pylist()) if ok)  # fmt: skip
        paid = Counter()
        for custom_id, times in api.ok_lines.items():
            paid[int(custom_id.split("-")[1])] += times
        return {
            "kills": sum(phases.values()),
            "phases": ", ".join(f"{k} {v}" for k, v in sorted(phases.items())),
            "resumes": resumes,
            "n": len(ok_calls),
            "exact": len(ok_calls) == n,
            "duplicates": sum(1 for c in ok_calls.values() if c > 1),
            "batches": api.created,
            "lines sent": len(api.sent_ids),
            "paid once": sum(1 for v in paid.values() if v == 1),
            "paid twice+": sum(1 for v in paid.values() if v > 1),
            "lines sent twice": sum(1 for v in Counter(api.sent_ids).values() if v > 1),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--seed", type=int, default=25)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.runs):
            row = soak_one(Path(tmp) / f"run{k}", args.n, args.kills, rng)
            rows.append({"run": k, **row})
            print(json.dumps(rows[-1]), file=sys.stderr)
    print(tabulate(rows, headers="keys"))
    total = {k: sum(r[k] for r in rows) for k in ("kills", "paid twice+", "duplicates")}
    exact = sum(r["exact"] for r in rows)
    print(
        f"\n{total['kills']} SIGKILLs; {exact}/{len(rows)} runs reached exactly n = {args.n}; "
        f"{total['duplicates']} duplicates; {total['paid twice+']} calls paid twice or more"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
