"""detcheck's TARr@N and TARa@N against the published ones: the raw runs of Atil et al.,
"Non-Determinism of Deterministic LLM Settings" (github.com/breckbaldwin/llm-stability, Apache
2.0; not shipped here), imported with `detcheck import --format csv`, one CSV per repetition.
Prints, per task, detcheck's figures beside those in the experiment's stability_eval.csv.

    git clone https://github.com/breckbaldwin/llm-stability /tmp/llm-stability
    uv run python bench/llm_stability.py /tmp/llm-stability [--experiment strict_json_schema]
"""

from __future__ import annotations

import argparse
import csv
import sys
import tarfile
import tempfile
from pathlib import Path

from tabulate import tabulate

from detcheck.commands.imports import import_command

# their answer parser reads "(C)", "C" and "(B) No gain or loss.." as one choice each: so does this
ANSWER = r'"Answer":\s*"\(?([A-Za-z]+)'
COLUMNS = {"text": "response", "id": "rubric_id", "prompt": "prompt", "model": "model"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", type=Path, help="a checkout of breckbaldwin/llm-stability")
    parser.add_argument("--experiment", default="strict_json_schema")
    args = parser.parse_args()
    experiment = args.repo / "experiments" / args.experiment
    csv.field_size_limit(sys.maxsize)
    table = experiment / "stability_eval.csv"  # not every experiment publishes one
    rows = csv.DictReader(open(table)) if table.exists() else []
    published = {(r["model"], r["task"]): r for r in rows}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(experiment / "runs.tgz") as tar:
            tar.extractall(tmp, filter="data")
        # (a tar made on a Mac holds "._name" resource forks beside the files: not tables)
        for task_dir in sorted(p for p in Path(tmp).rglob("*") if p.is_dir()):
            files = sorted(p for p in task_dir.glob("*.csv") if not p.name.startswith("._"))
            if not files:
                continue
            first = next(csv.DictReader(open(files[0], newline="")))
            theirs = published.get((first["model"], first["task"]))
            report = import_command(files, Path(tmp) / "out", "csv", COLUMNS, answer_regex=ANSWER)
            agreement = report["agreement"]
            rows.append([
                first["model"], first["task"], len(files), agreement["prompts"],
                f"{agreement['raw']:.1%}", theirs["TARr"] if theirs else "-",
                f"{agreement['answer']:.1%}", theirs["TARa"] if theirs else "-",
            ])  # fmt: skip
    headers = ["model", "task", "N", "questions", "TARr", "published", "TARa", "published"]
    print(tabulate(rows, headers=headers))


if __name__ == "__main__":
    main()
