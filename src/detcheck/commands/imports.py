"""`detcheck import`: responses made elsewhere (logged API objects, Batch API output, a table of
completions) as ordinary runs, one per prompt, so that every command reads them as its own.

Two passes, so that memory does not grow with the input: the files are read once, each response
redacted, then counted, then spilled to one of BUCKETS files by its prompt (only a few counts
per prompt are kept); then each bucket is written out, one RunWriter per prompt in it.

All or nothing: everything is built in a hidden staging directory under --out (locked while the
import runs) and appears in one rename at the end: the run itself, or, for several prompts, the
prompt set's directory holding all of them. A killed import's staging directory is removed by
the next import into the same --out."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from detcheck.commands.import_formats import NO_MODEL, Record, read_records
from detcheck.commands.import_secrets import keys_in, redacted_json, secrets_of
from detcheck.errors import DataError, DetcheckError, RunBusy, UsageError

Log = Callable[[str], None]
BUCKETS = 64  # spill files open at once while reading; each is one pass of the writing
STAGING_SUFFIX = ".partial"
IMPORT_JSON = "_import.json"  # a prompt set's directory: what was imported into it
LACKS = {
    "timing": "timing unknown: the time and concurrency tests are not run",
    "fingerprint": "no system_fingerprint in the data",
    "logprobs": "no logprobs: completions are compared by their text only",
    "request": "the request is unknown: its parameters are null",
}


@dataclass
class Prompt:
    """What pass 1 keeps of one prompt: enough to write its run's metadata in pass 2."""

    index: int
    key: tuple
    prompt: str | None
    request: dict | None
    api: str | None
    prompt_id: str | None = None
    model: str | None = None
    n: int = 0
    ok: int = 0
    one_token: bool = True  # every usable response generated one token, with logprobs
    logprobs: bool = True
    fingerprinted: bool = False
    first_tokens: Counter = field(default_factory=Counter)
    several: bool = False  # one of a prompt set: compared by whole answers, prompt by prompt

    @property
    def kind(self) -> str:
        flip = self.ok and self.one_token and self.logprobs and not self.several
        return "flip" if flip else "generate"

    def absorb(self, other: Prompt) -> None:
        """Take in `other`'s counts (its rows are written into this prompt's run)."""
        self.n, self.ok = self.n + other.n, self.ok + other.ok
        self.one_token = self.one_token and other.one_token
        self.logprobs = self.logprobs and other.logprobs
        self.fingerprinted = self.fingerprinted or other.fingerprinted
        self.first_tokens.update(other.first_tokens)


def import_command(paths: list[Path], out: Path, fmt: str | None, columns: dict, *,
                   batch_input: Path | None = None, skip_bad: bool = False,
                   answer_regex: str | None = None, log: Log = lambda _: None) -> dict:  # fmt: skip
    """Import `paths` into runs under `out`; returns the report of what was imported, with
    `run_paths` and `imported` (rows, skipped, runs, files)."""
    from detcheck.analysis.report import report_of
    from detcheck.store import read_runs
    from detcheck.store.lock import LOCK_NAME, RunLock
    from detcheck.store.runs import new_run_id

    if not paths:
        raise UsageError("give the files to import")
    if answer_regex is not None and columns.get("answer"):
        log(f"--answer-regex gives TARa@N here, not the --answer column {columns['answer']!r} "
            "(stored too: analyze without --answer-regex reads it)")  # fmt: skip
    fmt = fmt or guess_format(paths[0])
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
    try:
        _clear_killed(out, log)
        prompts, skipped, twice = _spill(
            paths, fmt, columns, staging, batch_input=batch_input, skip_bad=skip_bad, log=log
        )
        if not prompts:
            raise DataError(f"{paths[0]}: no responses in it")
        aliases = _attach_unknown_models(prompts)
        names = _write_runs(prompts, aliases, staging, set_id, fmt=fmt, sources=sources,
                            skipped=skipped)  # fmt: skip
        if len(names) == 1:  # one run: it appears in one rename
            final = [out / names[0]]
            (staging / names[0]).rename(final[0])
        else:  # a prompt set: its directory, with every run in it, appears in one rename
            record = {"set_id": set_id, "files": sources, "runs": names}
            (staging / IMPORT_JSON).write_text(json.dumps(record, indent=2))
            os.replace(staging, out / set_id)  # the lock goes with it, still held
            (out / set_id / LOCK_NAME).unlink(missing_ok=True)
            final = [out / set_id / name for name in names]
    finally:
        lock.release()
        shutil.rmtree(staging, ignore_errors=True)
    runs = read_runs([str(p) for p in final])
    report = report_of(runs, answer_regex=answer_regex, allow_mixed=len(runs) > 1)
    report["run_paths"] = [str(p) for p in final]
    rows = sum(p.n for p in prompts.values())
    report["imported"] = {"format": fmt, "rows": rows, "skipped": skipped, "runs": len(final),
                          "files": sources}  # fmt: skip
    if twice:
        log(f"{twice:,} responses logged twice (the same response id and choice): each "
            "counted once")  # fmt: skip
    log(f"imported {rows:,} responses ({skipped:,} skipped) into {len(final):,} run(s) "
        f"under {out}")  # fmt: skip
    return report


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
    from detcheck.commands.import_formats import open_input

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


def _spill(paths, fmt, columns, staging, *, batch_input, skip_bad, log):
    """Pass 1: every record, redacted, counted, to its prompt's bucket; returns ({key: Prompt},
    records skipped, responses seen twice)."""
    prompts: dict[tuple, Prompt] = {}
    spills = [open(staging / f"_bucket-{b:02d}.jsonl", "w", encoding="utf-8")
              for b in range(BUCKETS)]  # fmt: skip
    skipped = read = twice = 0
    seen: set[int] = set()  # (response id, choice): a response logged twice is counted once
    try:
        records = read_records(paths, fmt, columns, batch_input=batch_input, warn=log)
        for item in records:
            if isinstance(item, str):  # why a line could not be read, with its file:line
                if not skip_bad:
                    raise DataError(f"{item} (--skip-bad goes on without it)")
                skipped += 1
                continue
            rid = item.row.get("response_id")
            if isinstance(rid, str):
                mark = hash((rid, item.choice, item.key))
                if mark in seen:
                    twice += 1
                    continue
                seen.add(mark)
            secrets = _secrets(item)
            row = _redacted(item.row, secrets)  # before anything is counted
            p = prompts.get(item.key)
            if p is None:
                request, prompt = (
                    redacted_json(v, set(secrets)) for v in (item.request, item.prompt)
                )
                p = prompts[item.key] = Prompt(len(prompts), item.key, prompt, request, item.api,
                                               prompt_id=item.prompt_id)  # fmt: skip
            _count(p, row)
            line = json.dumps([p.index, row], separators=(",", ":"))
            # by the request alone: rows that name no model may join its model's run in pass 2
            spills[zlib.crc32(item.key[0].encode()) % BUCKETS].write(line + "\n")
            read += 1
            if not read % 250_000:
                log(f"read {read:,} responses")
    finally:
        for f in spills:
            f.close()
    if skipped:
        log(f"skipped {skipped:,} line(s) that could not be read (--skip-bad)")
    return prompts, skipped, twice


def _attach_unknown_models(prompts: dict) -> dict[int, int]:
    """Rows that name no model (an error body) join the one group of their request that does,
    if there is exactly one; else they stay a run of their own. Returns {index: into index}."""
    aliases = {}
    for key, p in prompts.items():
        if key[2] != NO_MODEL:
            continue
        known = [q for k, q in prompts.items() if k[0] == key[0] and k[2] != NO_MODEL]
        if len(known) == 1:
            known[0].absorb(p)
            aliases[p.index] = known[0].index
    several = len(prompts) - len(aliases) > 1
    for p in prompts.values():
        p.several = several
    return aliases


def _count(p: Prompt, row: dict) -> None:
    p.n += 1
    p.model = p.model or row.get("response_model")
    p.fingerprinted = p.fingerprinted or row.get("system_fingerprint") is not None
    if not row["ok"]:
        return
    p.ok += 1
    tokens = row.get("gen_tokens")
    if tokens is None:
        p.logprobs = False
    elif len(tokens) == 1:
        p.first_tokens[tokens[0]] += 1
    else:
        p.one_token = False


def _secrets(item: Record) -> list[str]:
    """What to redact from a record: the credentials taken out by name, and every key-like
    string in its texts."""
    texts = [v for v in item.row.values() if isinstance(v, str)]
    if isinstance(item.prompt, str):
        texts.append(item.prompt)
    return secrets_of(keys_in(texts) | item.secrets)


def _redacted(row: dict, secrets: list[str]) -> dict:
    from detcheck.send.record import redact_row

    return redact_row(row, secrets) if secrets else row


def _write_runs(prompts, aliases, staging, set_id, *, fmt, sources, skipped) -> list[str]:
    """Pass 2: each bucket's records into their prompts' runs; returns the runs' names, in the
    order the data has its prompts (run ids sort that way too: the set's id and a number)."""
    from detcheck.store import RunWriter
    from detcheck.store.runs import new_run_id

    by_index = {p.index: p for p in prompts.values()}
    numbers = {i: k for k, i in enumerate(sorted(set(by_index) - set(aliases)))}
    width = len(str(max(len(numbers) - 1, 0)))
    several = len(numbers) > 1
    names = []
    for b in range(BUCKETS):
        spill = staging / f"_bucket-{b:02d}.jsonl"
        writers: dict[int, tuple[RunWriter, list[int]]] = {}
        try:
            with open(spill, encoding="utf-8") as f:
                for line in f:
                    index, row = json.loads(line)
                    index = aliases.get(index, index)
                    if index not in writers:
                        p = by_index[index]
                        run_id = (f"{set_id}-{numbers[index]:0{width}d}" if several
                                  else new_run_id(_model(p)))  # fmt: skip
                        meta = _meta(p, run_id, set_id if several else None, fmt, sources,
                                     skipped)  # fmt: skip
                        writers[index] = (RunWriter(staging / run_id, meta), [0, 0])
                    writer, counts = writers[index]
                    _store(writer, row, counts, by_index[index].kind)
        finally:
            for index, (writer, counts) in writers.items():
                writer.close(status="complete", successes=counts[1], attempts=counts[0])
                names.append((numbers[index], writer.meta["run_id"]))
        spill.unlink()
    return [name for _, name in sorted(names)]


def _store(writer, row: dict, counts: list[int], kind: str) -> None:
    row = {**row, "run_id": writer.meta["run_id"], "seq": counts[0], "call": counts[0]}
    if kind == "flip":  # a one-token answer is a flip row: its first token is all there is
        for key in ("text", "finish_reason", "gen_tokens", "gen_logprobs", "gen_top_tokens",
                    "gen_top_logprobs"):  # fmt: skip
            row.pop(key, None)
    counts[0] += 1
    counts[1] += bool(row["ok"])
    writer.append(row)


def _meta(p: Prompt, run_id: str, set_id: str | None, fmt: str, sources: list,
          skipped: int) -> dict:  # fmt: skip
    """run.json of an imported run: what the data says, null where it says nothing."""
    from detcheck.store import utc_now
    from detcheck.store.runs import versions
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
        "status": "running",
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
        "versions": versions(),
        "via": "import",
        "imported": {
            "at": utc_now().isoformat(),
            "format": fmt,
            "files": sources,
            "skipped": skipped,
            "lacks": lacks,
        },  # fmt: skip
    }


def _model(p: Prompt) -> str:
    return (p.request or {}).get("model") or p.model or "unknown"
