"""`detcheck import`: responses made elsewhere (logged API objects, Batch API output, a table of
completions) as ordinary runs, one per prompt, so that every command reads them as its own.

Two passes, so that memory does not grow with the input: the files are read once, a chunk at a
time, each row redacted and given its prompt, and spilled as Arrow (import_read); then each
prompt's run is written from the spill straight to Parquet (import_runs).

All or nothing: everything is built in a hidden staging directory under --out (locked while the
import runs) and appears in one rename at the end: the run itself, or, for several prompts, the
prompt set's directory holding all of them. A killed import's staging directory is removed by
the next import into the same --out."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from detcheck.commands.import_runs import LACKS, Prompt
from detcheck.errors import DataError, DetcheckError, RunBusy, UsageError

Log = Callable[[str], None]
STAGING_SUFFIX = ".partial"
IMPORT_JSON = "_import.json"  # a prompt set's directory: what was imported into it


def import_command(paths: list[Path], out: Path, fmt: str | None, columns: dict, *,
                   batch_input: Path | None = None, skip_bad: bool = False,
                   answer_regex: str | None = None, log: Log = lambda _: None) -> dict:  # fmt: skip
    """Import `paths` into runs under `out`; returns the report of what was imported, with
    `run_paths` and `imported` (rows, skipped, runs, files)."""
    from detcheck.analysis.report import report_of
    from detcheck.commands.import_formats import FORMATS
    from detcheck.commands.import_read import Reader
    from detcheck.commands.import_runs import (
        Groups,
        Spill,
        attach_unknown_models,
        sync_files,
        write_runs,
    )
    from detcheck.store import read_runs
    from detcheck.store.lock import LOCK_NAME, RunLock
    from detcheck.store.runs import new_run_id

    if not paths:
        raise UsageError("give the files to import")
    if answer_regex is not None and columns.get("answer"):
        log(f"--answer-regex gives TARa@N here, not the --answer column {columns['answer']!r} "
            "(stored too: analyze without --answer-regex reads it)")  # fmt: skip
    fmt = fmt or guess_format(paths[0])
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: one of {', '.join(FORMATS)}")
    sources = [source_of(p) for p in [*paths, *([batch_input] if batch_input else [])]]
    out = Path(out)
    _refuse_twice(out, sources)
    set_id = new_run_id("import")
    staging = out / f".{set_id}{STAGING_SUFFIX}"
    try:
        staging.mkdir(parents=True)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot create ({exc.strerror or exc})") from None
    lock = RunLock(staging)  # held until the end: the next import knows this one is alive
    spill = Spill(staging)
    try:
        _clear_killed(out, log)
        groups = Groups()
        reader = Reader(spill, groups, skip_bad=skip_bad, log=log)
        reader.read(paths, fmt, columns, batch_input)
        if not spill.rows:
            raise DataError(f"{paths[0]}: no responses in it")
        log(f"read {spill.rows:,} responses; writing the runs")
        prompts = groups.prompts()
        aliases = attach_unknown_models(prompts)

        def meta_of(p: Prompt, run_id: str) -> dict:
            several = len(prompts) - len(aliases) > 1
            return _meta(p, run_id, set_id if several else None, fmt, sources, reader.skipped)

        names = write_runs(spill, prompts, aliases, staging, set_id=set_id, meta_of=meta_of,
                           progress=log)  # fmt: skip
        spill.remove()
        sync_files(staging)
        if len(names) == 1:  # one run: it appears in one rename
            final = [out / names[0]]
            (staging / names[0]).rename(final[0])
        else:  # a prompt set: its directory, with every run in it, appears in one rename
            record = {"set_id": set_id, "files": sources, "runs": names}
            (staging / IMPORT_JSON).write_text(json.dumps(record, indent=2))
            _sync_dir(staging)
            os.replace(staging, out / set_id)  # the lock goes with it, still held
            (out / set_id / LOCK_NAME).unlink(missing_ok=True)
            final = [out / set_id / name for name in names]
        _sync_dir(out)
    finally:
        lock.release()
        shutil.rmtree(staging, ignore_errors=True)
    runs = read_runs([str(p) for p in final])
    report = report_of(runs, answer_regex=answer_regex, allow_mixed=len(runs) > 1)
    report["run_paths"] = [str(p) for p in final]
    rows = sum(p.n for p in prompts)
    twice = sum(p.twice for p in prompts)
    report["imported"] = {"format": fmt, "rows": rows, "skipped": reader.skipped,
                          "runs": len(final), "files": sources}  # fmt: skip
    if twice:
        log(f"{twice:,} responses logged twice (the same response id and choice): each "
            "counted once")  # fmt: skip
    log(f"imported {rows:,} responses ({reader.skipped:,} skipped) into {len(final):,} run(s) "
        f"under {out}")  # fmt: skip
    return report


def _sync_dir(path: Path) -> None:
    """A directory's entries on disk (a rename is durable only then)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _refuse_twice(out: Path, sources: list[dict]) -> None:
    """Stop before anything is read if a file (by its sha256) was already imported into `out`:
    a retry of an import that worked would count every response twice."""
    if not out.is_dir():
        return
    mine = {s["sha256"]: s["name"] for s in sources}
    for child in out.iterdir():
        if child.name.startswith("."):
            continue
        for name in (IMPORT_JSON, "_run.json"):
            try:
                record = json.loads((child / name).read_text())
            except (OSError, ValueError):
                continue
            files = record.get("files") or (record.get("imported") or {}).get("files") or []
            for f in files if isinstance(files, list) else []:
                if isinstance(f, dict) and f.get("sha256") in mine:
                    raise UsageError(
                        f"{mine[f['sha256']]} was already imported into {out} ({child.name}, as "
                        f"{f.get('name')}, sha256 {f['sha256'][:12]}...): importing it again "
                        "would count its responses twice; import into another --out"
                    )
            break


def _clear_killed(out: Path, log: Log) -> None:
    """Remove what a killed import left: a staging directory whose lock nobody holds."""
    from detcheck.store.lock import RunLock

    for staging in out.glob(f".*{STAGING_SUFFIX}"):
        if not staging.is_dir():
            continue
        try:
            held = RunLock(staging)
        except RunBusy:
            continue  # another import, still running
        except DetcheckError:  # a directory we cannot lock is not ours to remove
            continue
        held.release()
        shutil.rmtree(staging, ignore_errors=True)
        log(f"removed {staging.name}: what a killed import into {out} left (no run of it was "
            "visible)")  # fmt: skip


def guess_format(path: Path) -> str:
    """The --format a file most likely is: csv by its name; else by its first line."""
    from detcheck.commands.import_files import open_input

    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".csv"):
        return "csv"
    with open_input(path) as f:
        try:
            first = f.readline(1 << 20)
        except (OSError, EOFError) as exc:
            raise UsageError(f"{path}: cannot read ({exc})") from None
    try:
        line = json.loads(first)
    except ValueError:
        raise UsageError(f"{path}: give --format (openai, batch, csv or jsonl)") from None
    if isinstance(line, dict) and "custom_id" in line:
        return "batch"
    if isinstance(line, dict) and (
        {"object", "choices", "output"} & set(line) or "response" in line
    ):
        return "openai"
    return "jsonl"


def source_of(path: Path) -> dict:
    """The name, size and sha256 of a source file (streamed: a 1 GB file is not held)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        size = path.stat().st_size
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return {"name": path.name, "bytes": size, "sha256": digest.hexdigest()}


def _meta(p: Prompt, run_id: str, set_id: str | None, fmt: str, sources: list,
          skipped: int) -> dict:  # fmt: skip
    """run.json of an imported run: what the data says, null where it says nothing."""
    from detcheck.store import utc_now
    from detcheck.store.schema import RUN_JSON_VERSION, SCHEMA_VERSION

    request = p.request or {}
    model = _model(p)
    target = p.first_tokens.most_common(1)[0][0] if p.kind == "flip" else None
    label = target.strip() if target else None
    # no format carries when a call was sent, or what else was in flight
    known = {"timing": False, "fingerprint": p.fingerprinted, "logprobs": p.logprobs,
             "request": p.request is not None}  # fmt: skip
    lacks = [LACKS[k] for k, it_is in known.items() if not it_is]
    prompt_id = p.prompt_id if p.prompt_id is not None else f"{p.key[0]}/{p.key[2]}"
    tags = {"prompt_set": set_id, "prompt_id": prompt_id} if set_id else {}
    return {
        "tags": tags,
        "schema_version": SCHEMA_VERSION,
        "run_json_version": RUN_JSON_VERSION,
        "run_id": run_id,
        "status": "complete",
        "n_requested": p.n,
        "started_at": None,
        "ended_at": None,
        "config": {
            "model": model,
            "prompt": p.prompt,
            "labels": [label] if label else [],
            "temperature": request.get("temperature"),
            "seed": request.get("seed"),
            "top_logprobs": request.get("top_logprobs"),
            "max_tokens": request.get("max_tokens")
            or request.get("max_completion_tokens")
            or request.get("max_output_tokens"),
            "targets": {label: target} if label else {},
            "api": p.api,
            "kind": p.kind,
            **({} if p.logprobs else {"logprobs": False}),
        },
        "request": request,
        "label": label,
        "target": target,
        "targets": {label: target} if label else {},
        "target_how": {label: "imported: the most common first token"} if label else {},
        "endpoint": None,
        "api": p.api,
        "replay_of": None,
        "concurrency": None,
        "rpm": None,
        "timeout_s": None,
        "versions": _versions(),
        "via": "import",
        "imported": {
            "at": utc_now().isoformat(),
            "format": fmt,
            "files": sources,
            "skipped": skipped,
            "lacks": lacks,
        },  # fmt: skip
        "successes": p.ok,
        "attempts": p.n,
    }


def _model(p: Prompt) -> str:
    return (p.request or {}).get("model") or p.model or "unknown"


@functools.lru_cache(maxsize=1)
def _versions() -> dict:
    """The packages' versions, looked up once for every run of an import (~2 ms each)."""
    from detcheck.store.runs import versions

    return versions()
