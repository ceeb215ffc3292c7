"""Kill-at-random soak: real `detcheck flip` processes SIGKILLed at random moments (start-up,
mid-run, compaction, inside resumes), each run resumed until complete. Prints a table per run:
kills, whether it reached exactly N, duplicates, and responses the server sent that were lost.

    uv run python bench/soak.py                   # 6 runs x 4 kills = 24 SIGKILLs
    uv run python bench/soak.py --runs 2 --kills 3 --n 500

"Lost" is what the server answered but no process recorded: requests in flight at a kill (sent,
answered, never read). Nothing a process received may be lost.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from tabulate import tabulate  # noqa: E402

from detcheck.store import read_run  # noqa: E402
from fake_openai import FakeOpenAI, coin_flip  # noqa: E402

KEY = "sk-soak-0123456789abcdef"


def soak_one(out: Path, n: int, kills: int, concurrency: int, rng: random.Random) -> dict:
    def respond(i, request):
        time.sleep(rng.uniform(0.0, 0.004))
        return coin_flip(i, request)

    with FakeOpenAI(respond) as server:
        env = {**os.environ, "OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": server.base_url}
        base = [sys.executable, "-m", "detcheck.cli", "flip", "-q"]
        cmd = [*base, "--n", str(n), "--out", str(out), "--concurrency", str(concurrency)]
        quiet = {"env": env, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        proc = subprocess.Popen(cmd, **quiet)
        run_dir, done_kills, landed = None, 0, []
        while done_kills < kills:
            if rng.random() < 0.25:  # anywhere: start-up (importing, reading the run) or later
                time.sleep(rng.uniform(0.05, 2.0))
            else:  # once this process is sending, at a random moment
                asked = len(server.requests)
                while len(server.requests) <= asked and proc.poll() is None:
                    time.sleep(0.005)
                time.sleep(rng.uniform(0.0, 0.8))
            if proc.poll() is not None:
                break  # finished before this kill: the next run gets it
            asked = len(server.requests)
            time.sleep(0.05)
            sending = len(server.requests) > asked  # this process was sending when killed
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            done_kills += 1
            landed.append(sending)
            found = list(out.glob("*/_run.json"))
            if not found:  # killed before the run existed: start it again
                proc = subprocess.Popen(cmd, **quiet)
                continue
            run_dir = found[0].parent
            resume = [*base, "--resume", str(run_dir)]
            proc = subprocess.Popen(resume, **quiet)
        code = proc.wait(timeout=600)
        run_dir = run_dir or next(out.glob("*/_run.json")).parent
        replies = list(server.replies)
    table = read_run(run_dir).table
    ok = table.column("ok").to_pylist()
    ids = [i for i, good in zip(table.column("response_id").to_pylist(), ok) if good]
    calls = [c for c, good in zip(table.column("call").to_pylist(), ok) if good]
    seqs = table.column("seq").to_pylist()
    sent = {f"chatcmpl-test-{i}" for i, r in enumerate(replies) if r.status == 200 and r.usable}
    return {
        "kills": done_kills,
        "while_sending": sum(landed),
        "exit": code,
        "kept": sum(ok),
        "exactly_n": sum(ok) == n,
        "duplicate_ids": len(ids) - len(set(ids)),
        "duplicate_calls": len(calls) - len(set(calls)),
        "duplicate_seqs": len(seqs) - len(set(seqs)),
        "sent": len(sent),
        "lost": len(sent - set(ids)),
        "lost_per_kill_max": concurrency,
        "kept_not_sent": len(set(ids) - sent),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--kills", type=int, default=4, help="SIGKILLs per run")
    parser.add_argument("--n", type=int, default=1_500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="detcheck-soak-") as tmp:
        for r in range(args.runs):
            result = soak_one(Path(tmp) / f"run{r}", args.n, args.kills, args.concurrency, rng)
            rows.append({"run": r, **result})
            print(rows[-1], flush=True)
    print()
    print(tabulate(rows, headers="keys"))
    keys = ("kills", "while_sending", "sent", "lost", "kept")
    total = {k: sum(row[k] for row in rows) for k in keys}
    print(
        f"\n{total['kills']} SIGKILLs ({total['while_sending']} while sending) over {len(rows)} "
        "runs: "
        f"{sum(r['exactly_n'] for r in rows)} of {len(rows)} reached exactly n={args.n}; "
        f"duplicates {sum(r['duplicate_ids'] + r['duplicate_calls'] for r in rows)}; "
        f"{total['lost']} of {total['sent']} responses the server sent were lost "
        f"(in flight at a kill; at most {args.concurrency} per kill)"
    )


if __name__ == "__main__":
    main()
