"""Kill-at-random soak of `detcheck audit`: real processes SIGKILLed at random moments (start-up,
between arms, mid-round, inside resumes), each audit resumed until it completes. Prints a table
per audit: kills, calls paid twice, whether every round holds exactly its calls, and whether
the verdicts are those of an audit never killed (run first, on the same engine).

    uv run python bench/audit_soak.py                   # 4 audits x 4 kills
    uv run python bench/audit_soak.py --audits 2 --kills 6 --n 40

"Paid twice": a response the server sent for an arm's call that was already recorded (a round
sent again, or a call asked for again after it was kept). "Lost": what the server answered but
no process recorded (in flight at a kill: sent, answered, never read), which --resume asks for
again; the measured calls in flight at a kill are at most the audit's concurrency.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from tabulate import tabulate  # noqa: E402

from audit_engine import PROMPT, Engine  # noqa: E402
from detcheck.store import read_run  # noqa: E402
from fake_openai import FakeOpenAI  # noqa: E402

KEY = "sk-soak-0123456789abcdef"
CHECKS = "batch,mixed_load,top_logprobs,first_call"


def audit_args(out: Path, n: int) -> list[str]:
    return ["audit", "--only", CHECKS, "--n", str(n), "--out", str(out), "-q", "--json"]


def verdicts(data: dict) -> dict:
    return {c["name"]: c["verdict"] for c in data["checks"]}


def unbroken(tmp: Path, n: int) -> dict:
    """The verdicts of the same audit, never killed."""
    with FakeOpenAI(Engine(top_logprobs=True)) as server:
        env = {**os.environ, "OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": server.base_url}
        done = subprocess.run([sys.executable, "-m", "detcheck.cli", *audit_args(tmp, n)],
                              env=env, capture_output=True, text=True, check=True)  # fmt: skip
    return verdicts(json.loads(done.stdout))


def soak_one(out: Path, n: int, kills: int, rng: random.Random) -> dict:
    engine = Engine(top_logprobs=True)
    with FakeOpenAI(engine) as server:
        env = {**os.environ, "OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": server.base_url}
        base = [sys.executable, "-m", "detcheck.cli"]
        quiet = {"env": env, "stdout": subprocess.PIPE, "stderr": subprocess.DEVNULL}
        proc = subprocess.Popen([*base, *audit_args(out, n)], **quiet)
        done_kills = resumes = 0
        root = None
        while done_kills < kills:
            if rng.random() < 0.25:  # anywhere: start-up, reading the audit, or later
                time.sleep(rng.uniform(0.05, 1.5))
            else:  # once this process is sending, at a random moment
                asked = len(server.requests)
                while len(server.requests) <= asked and proc.poll() is None:
                    time.sleep(0.005)
                time.sleep(rng.uniform(0.0, 1.0))
            if proc.poll() is not None:
                break
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            done_kills += 1
            found = [p for p in out.iterdir() if (p / "_audit.json").is_file()]
            if not found:  # killed before the audit existed: start it again
                proc = subprocess.Popen([*base, *audit_args(out, n)], **quiet)
                continue
            root = found[0]
            resumes += 1
            proc = subprocess.Popen([*base, "audit", "--resume", str(root), "-q", "--json"],
                                    **quiet)  # fmt: skip
        stdout, _ = proc.communicate(timeout=600)
        code = proc.returncode
        replies, requests = list(server.replies), list(server.requests)
    root = root or next(p for p in out.iterdir() if (p / "_audit.json").is_file())
    data = json.loads((root / "_audit.json").read_text())
    # what the server answered usably to the measured prompt, by response id
    sent = {
        f"chatcmpl-test-{i}"
        for i, (r, q) in enumerate(zip(replies, requests))
        if r.status == 200 and r.usable and q["messages"][0]["content"] == PROMPT
    }
    kept, slots, rounds_twice, exact = [], [], 0, True
    for arm in data.get("arms", {}).values():
        runs = [read_run(p) for p in arm["runs"]]
        labels = [r.meta["tags"].get("audit_round") for r in runs]
        rounds_twice += len(labels) - len(set(labels))
        for run in runs:
            ok = run.table.column("ok").to_pylist()
            ids = [i for i, g in zip(run.table.column("response_id").to_pylist(), ok) if g]
            calls = [c for c, g in zip(run.table.column("call").to_pylist(), ok) if g]
            kept += ids
            slots += [(run.meta["run_id"], c) for c in calls]
            exact &= sum(ok) == run.meta["n_requested"]
    return {
        "kills": done_kills,
        "resumes": resumes,
        "exit": code,
        "status": data.get("status"),
        "verdicts": verdicts(data) if data.get("checks") else None,
        "rounds_twice": rounds_twice,
        "calls_recorded_twice": len(slots) - len(set(slots)),
        "ids_recorded_twice": len(kept) - len(set(kept)),
        "every_round_exact": exact,
        "answered": len(sent),
        "lost": len(sent - set(kept)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audits", type=int, default=4)
    parser.add_argument("--kills", type=int, default=4, help="SIGKILLs per audit")
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="detcheck-audit-soak-") as tmp:
        expected = unbroken(Path(tmp) / "unbroken", args.n)
        print(f"never killed: {expected}", flush=True)
        for k in range(args.audits):
            out = Path(tmp) / f"audit{k}"
            out.mkdir()
            result = soak_one(out, args.n, args.kills, rng)
            result["same_verdicts"] = result.pop("verdicts") == expected
            rows.append({"audit": k, **result})
            print(rows[-1], flush=True)
    print()
    print(tabulate(rows, headers="keys"))
    twice = sum(r["rounds_twice"] + r["calls_recorded_twice"] + r["ids_recorded_twice"]
                for r in rows)  # fmt: skip
    print(
        f"\n{sum(r['kills'] for r in rows)} SIGKILLs over {len(rows)} audits "
        f"({sum(r['resumes'] for r in rows)} resumes, killed too): "
        f"{sum(r['status'] == 'complete' for r in rows)} of {len(rows)} complete, "
        f"{sum(r['same_verdicts'] for r in rows)} with the verdicts of the audit never killed; "
        f"paid twice (a round or a kept call sent again): {twice}; "
        f"{sum(r['lost'] for r in rows)} of {sum(r['answered'] for r in rows)} measured "
        "responses lost in flight at a kill"
    )


if __name__ == "__main__":
    main()
