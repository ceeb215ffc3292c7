"""How far a `flip` option travels: one replayed flip (and one resume of it) traced call by call.

    uv run python bench/option_path.py [--n 50]

Printed per case:
- options reach: the detcheck modules one of whose functions is handed the options as given
  (the FlipOptions object) - where the command line's values are still being interpreted;
- plan reaches: the modules handed the resolved Plan (detcheck.plan) instead;
- calls out: the distinct functions of other detcheck modules that the flip command's own
  modules (commands/flip.py, and commands/resume.py or commands/planning.py, whichever the
  tree has) call directly (each one a return to the command), and how many modules they are in;
- widest call out: the most parameters (self aside) of one of those functions, and which.
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
START = {"detcheck.commands.flip", "detcheck.commands.resume", "detcheck.commands.planning"}
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
    planned: set[str] = set()
    calls_out: set[tuple[str, str, int]] = set()

    def profile(frame, event, _arg):
        if event != "call":
            return
        callee = module_of(frame.f_code)
        if callee is None or callee in IGNORED:
            return
        for value in frame.f_locals.values():
            if type(value).__name__ == "FlipOptions":
                reached.add(callee)
            elif type(value).__module__ == "detcheck.plan" and type(value).__name__ == "Plan":
                planned.add(callee)
        caller = frame.f_back
        if caller is not None and module_of(caller.f_code) in START and callee not in START:
            code = frame.f_code
            name = code.co_qualname if hasattr(code, "co_qualname") else code.co_name
            width = code.co_argcount + code.co_kwonlyargcount - ("self" in code.co_varnames[:1])
            calls_out.add((callee, name, width))

    sys.setprofile(profile)
    try:
        run()
    finally:
        sys.setprofile(None)
    return {
        "options reach (modules)": len(reached),
        "plan reaches (modules)": len(planned),
        "calls out of the command (returns)": len(calls_out),
        "modules called": len({m for m, _, _ in calls_out}),
        "widest call out": "{2} ({1})".format(*max(calls_out, key=lambda c: c[2])),
        "options reached": ", ".join(sorted(m.removeprefix("detcheck.") for m in reached)),
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
