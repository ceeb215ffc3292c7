"""How far a `flip` option travels: one replayed flip (and one resume of it) traced call by call.

    uv run python bench/option_path.py [--n 50]

Printed per case:
- options reach: the detcheck modules one of whose functions is handed the options as given
  (the FlipOptions object) - where the command line's values are still being interpreted;
- calls out: the distinct functions of other detcheck modules that commands/flip.py calls
  directly (each one a return to flip.py), and how many modules they are in.
The log callback and the errors module are not counted (they carry messages, not options).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from tabulate import tabulate

ROOT = Path(__file__).resolve().parents[1]
RECORDING = ROOT / "recordings" / "gpt-4o-2024-08-06-coinflip-10000"
SRC = str(ROOT / "src" / "detcheck")
START = "detcheck.commands.flip"
IGNORED = {"detcheck.errors", "detcheck.cli", "bench.option_path"}


def module_of(code) -> str | None:
    path = code.co_filename
    if not path.startswith(SRC):
        return None
    rel = Path(path).relative_to(Path(SRC).parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def traced(run) -> dict:
    reached: set[str] = set()
    calls_out: set[tuple[str, str]] = set()

    def profile(frame, event, _arg):
        if event != "call":
            return
        callee = module_of(frame.f_code)
        if callee is None or callee in IGNORED:
            return
        for value in frame.f_locals.values():
            if type(value).__name__ == "FlipOptions":
                reached.add(callee)
                break
        caller = frame.f_back
        if caller is not None and module_of(caller.f_code) == START and callee != START:
            calls_out.add((callee, frame.f_code.co_name))

    sys.setprofile(profile)
    try:
        run()
    finally:
        sys.setprofile(None)
    return {
        "options reach (modules)": len(reached),
        "calls out of flip.py (returns)": len(calls_out),
        "modules called from flip.py": len({m for m, _ in calls_out}),
        "reached": ", ".join(sorted(m.removeprefix("detcheck.") for m in reached)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50)
    args = parser.parse_args()
    from detcheck.commands import FlipOptions, flip_command

    out = Path(tempfile.mkdtemp(prefix="detcheck-option-path-"))
    quiet = lambda message: None  # noqa: E731
    try:
        rows = []
        new = FlipOptions(replay=RECORDING, n=args.n, out=out, progress=False)
        result = {}

        def first():
            result["run"] = flip_command(new, quiet)[1]

        rows.append({"case": f"flip --replay --n {args.n}", **traced(first)})
        run_dir = Path(result["run"])
        # a resume: the stored run asked for more than it holds
        import json

        meta_path = next(p for p in run_dir.iterdir() if p.name.endswith("run.json"))
        meta = json.loads(meta_path.read_text())
        meta["n_requested"] = args.n * 2
        meta["status"] = "interrupted"
        meta_path.write_text(json.dumps(meta))
        again = FlipOptions(resume=run_dir, progress=False)
        rows.append({"case": "flip --resume", **traced(lambda: flip_command(again, quiet))})
    finally:
        shutil.rmtree(out, ignore_errors=True)
    print(tabulate(rows, headers="keys"))


if __name__ == "__main__":
    main()
