"""`detcheck import`: responses made elsewhere (logged API objects, Batch API output, a table of
completions) as ordinary runs, one per prompt, so that every command reads them as its own.

Two passes, so that memory does not grow with the input: the files are read once, each response
becoming a row spilled to one of BUCKETS files by its prompt (only a few counts per prompt are
kept); then each bucket is written out, one RunWriter per prompt in it. Everything happens in a
hidden directory under --out that is renamed into place at the end: an import that fails leaves
no run behind, let alone one that looks complete."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from detcheck.commands.import_formats import Record, read_records
from detcheck.errors import DataError, UsageError

Log = Callable[[str], None]
BUCKETS = 64  # spill files open at once while reading; each is one pass of the writing
# strings that look like credentials, redacted wherever they appear (the data came from
# elsewhere: there is no key of ours to look for)
KEY_LIKE = re.compile(r"sk-[A-Za-z0-9_\-]{16,}|(?i:bearer\s+[A-Za-z0-9._\-]{12,})|AKIA[0-9A-Z]{16}")
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
    key: str
    prompt: str | None
    request: dict | None
    api: str | None
    model: str | None = None
    n: int = 0
    ok: int = 0
    one_token: bool = True  # every usable response generated one token, with logprobs
    logprobs: bool = True
    fingerprinted: bool = False
    first_tokens: Counter = field(default_factory=Counter)

    @property
    def kind(self) -> str:
        return "flip" if self.ok and self.one_token and self.logprobs else "generate"


def import_command(paths: list[Path], out: Path, fmt: str | None, columns: dict, *,
                   batch_input: Path | None = None, skip_bad: bool = False,
                   answer_regex: str | None = None, log: Log = lambda _: None) -> dict:  # fmt: skip
    """Import `paths` into runs under `out`; returns the report of what was imported, with
    `run_paths` and `imported` (rows, skipped, runs, files)."""
    from detcheck.analysis.report import report_of
    from detcheck.store import read_runs
    from detcheck.store.runs import new_run_id

    if not paths:
        raise UsageError("give the files to import")
    fmt = fmt or guess_format(paths[0])
    sources = [source_of(p) for p in [*paths, *([batch_input] if batch_input else [])]]
    out = Path(out)
    set_id = new_run_id("import")
    staging = out / f".{set_id}.partial"
    try:
        staging.mkdir(parents=True)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot create ({exc.strerror or exc})") from None
    try:
        prompts, skipped = _spill(
            paths, fmt, columns, staging, batch_input=batch_input, skip_bad=skip_bad, log=log
        )
        if not prompts:
            raise DataError(f"{paths[0]}: no responses in it")
        names = _write_runs(prompts, staging, set_id, fmt=fmt, sources=sources, skipped=skipped)
        finished = []
        for name in names:  # into place only now that every run is complete
            (staging / name).rename(out / name)
            finished.append(out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    runs = read_runs([str(p) for p in finished])
    report = report_of(runs, answer_regex=answer_regex, allow_mixed=len(runs) > 1)
    report["run_paths"] = [str(p) for p in finished]
    rows = sum(p.n for p in prompts.values())
    report["imported"] = {"format": fmt, "rows": rows, "skipped": skipped, "runs": len(finished),
                          "files": sources}  # fmt: skip
    log(f"imported {rows:,} responses ({skipped:,} skipped) into {len(finished):,} run(s) "
        f"under {out}")  # fmt: skip
    return report


def guess_format(path: Path) -> str:
    """The --format a file most likely is: csv by its name; else by its first line."""
    if path.suffix.lower() == ".csv":
        return "csv"
    try:
        with open(path, "rb") as f:
            first = f.readline(1 << 20)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc.strerror or exc})") from None
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
    """Pass 1: every record to its prompt's bucket; returns ({key: Prompt}, records skipped)."""
    prompts: dict[str, Prompt] = {}
    spills = [open(staging / f"_bucket-{b:02d}.jsonl", "w", encoding="utf-8")
              for b in range(BUCKETS)]  # fmt: skip
    skipped = read = 0
    try:
        records = read_records(paths, fmt, columns, batch_input=batch_input)
        for item in records:
            if isinstance(item, str):  # why a line could not be read, with its file:line
                if not skip_bad:
                    raise DataError(f"{item} (--skip-bad goes on without it)")
                skipped += 1
                continue
            p = prompts.get(item.key)
            if p is None:
                request, prompt = _redacted_json([item.request, item.prompt])
                p = prompts[item.key] = Prompt(len(prompts), item.key, prompt, request, item.api)
            _count(p, item)
            line = json.dumps([p.index, _redacted(item.row)], separators=(",", ":"))
            spills[zlib.crc32(item.key.encode()) % BUCKETS].write(line + "\n")
            read += 1
            if not read % 250_000:
                log(f"read {read:,} responses")
    finally:
        for f in spills:
            f.close()
    if skipped:
        log(f"skipped {skipped:,} line(s) that could not be read (--skip-bad)")
    return prompts, skipped


def _count(p: Prompt, item: Record) -> None:
    row = item.row
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


def _keys_in(texts) -> list[str]:
    return sorted({m.group(0) for text in texts for m in KEY_LIKE.finditer(text)})


def _redacted(row: dict) -> dict:
    from detcheck.send.record import redact_row

    found = _keys_in(v for v in row.values() if isinstance(v, str))
    return redact_row(row, found) if found else row


def _redacted_json(value):
    """A JSON value without any key-like string in it (a logged request's messages may hold one)."""
    from detcheck.text import redact

    text = json.dumps(value)
    found = _keys_in([text])
    return json.loads(redact(text, found)) if found else value


def _write_runs(prompts, staging, set_id, *, fmt, sources, skipped) -> list[str]:
    """Pass 2: each bucket's records into their prompts' runs; returns the runs' names."""
    from detcheck.store import RunWriter

    by_index = {p.index: p for p in prompts.values()}
    several = len(prompts) > 1
    names = []
    for b in range(BUCKETS):
        spill = staging / f"_bucket-{b:02d}.jsonl"
        writers: dict[int, tuple[RunWriter, list[int]]] = {}
        try:
            with open(spill, encoding="utf-8") as f:
                for line in f:
                    index, row = json.loads(line)
                    if index not in writers:
                        p = by_index[index]
                        meta = _meta(p, set_id if several else None, fmt, sources, skipped)
                        writers[index] = (RunWriter(staging / meta["run_id"], meta), [0, 0])
                    writer, counts = writers[index]
                    _store(writer, row, counts, by_index[index].kind)
        finally:
            for index, (writer, counts) in writers.items():
                writer.close(status="complete", successes=counts[1], attempts=counts[0])
                names.append((index, writer.meta["run_id"]))
        spill.unlink()
    return [name for _, name in sorted(names)]  # the prompts in the order the data has them


def _store(writer, row: dict, counts: list[int], kind: str) -> None:
    row = {**row, "run_id": writer.meta["run_id"], "seq": counts[0], "call": counts[0]}
    if kind == "flip":  # a one-token answer is a flip row: its first token is all there is
        for key in ("text", "finish_reason", "gen_tokens", "gen_logprobs", "gen_top_tokens",
                    "gen_top_logprobs"):  # fmt: skip
            row.pop(key, None)
    counts[0] += 1
    counts[1] += bool(row["ok"])
    writer.append(row)


def _meta(p: Prompt, set_id: str | None, fmt: str, sources: list, skipped: int) -> dict:
    """run.json of an imported run: what the data says, null where it says nothing."""
    from detcheck.store import utc_now
    from detcheck.store.runs import new_run_id, versions
    from detcheck.store.schema import RUN_JSON_VERSION, SCHEMA_VERSION

    request = p.request or {}
    model = request.get("model") or p.model or "unknown"
    target = p.first_tokens.most_common(1)[0][0] if p.kind == "flip" else None
    label = target.strip() if target else None
    # no format carries when a call was sent, or what else was in flight
    known = {"timing": False, "fingerprint": p.fingerprinted, "logprobs": p.logprobs,
             "request": p.request is not None}  # fmt: skip
    lacks = [LACKS[k] for k, it_is in known.items() if not it_is]
    tags = {"prompt_set": set_id, "prompt_id": p.key} if set_id else {}
    return {
        "tags": tags,
        "schema_version": SCHEMA_VERSION,
        "run_json_version": RUN_JSON_VERSION,
        "run_id": new_run_id(model),
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
