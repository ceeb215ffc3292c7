"""Where a run goes and what it says about itself: run ids, partitioned locations, run
metadata, the writer, and the bodies a replay serves."""

from __future__ import annotations

import platform
import secrets
import sys
from dataclasses import asdict
from pathlib import Path

from detcheck import __version__
from detcheck.config import strip_credentials
from detcheck.plan import Plan
from detcheck.store import RunWriter, utc_now
from detcheck.store.files import elide_long_texts
from detcheck.store.schema import RUN_JSON_VERSION, SCHEMA_VERSION


def versions() -> dict:
    from importlib.metadata import version

    import numpy
    import pyarrow

    return {
        "detcheck": __version__,
        "openai": version("openai"),  # not imported for it: the SDK takes ~1 s to import
        "python": platform.python_version(),
        "pyarrow": pyarrow.__version__,
        "numpy": numpy.__version__,
        "platform": sys.platform,
    }


def slug(text: str) -> str:
    """A path-safe form of a model name (partition values, run ids)."""
    return "".join(c if c.isalnum() or c in "-._" else "-" for c in text)[:60]


def partitioned(out: str, keys: dict[str, str]) -> str:
    """OUT/model=<model>/date=<date> (Hive style: each value percent-escaped, so the directory
    reads back as exactly the value: `model=Qwen%2FQwen3-8B` is `Qwen/Qwen3-8B` to pyarrow,
    pandas, duckdb and Spark), keeping an object-store URI's query string last."""
    from urllib.parse import quote

    base, _, query = str(out).partition("?")
    path = base.rstrip("/") + "".join(f"/{k}={quote(str(v), safe='')}" for k, v in keys.items())
    return f"{path}?{query}" if query else path


def layout_clash(out, partitioned_run: bool) -> str | None:
    """Why adding this run to `out` would stop it reading as one dataset, if it would: runs
    under model=/date= partitions (`detcheck run`) and runs directly under `out` (`flip`) at
    different depths are a mismatch to duckdb and a type clash to pyarrow."""
    from detcheck.store import META_NAMES, is_uri

    root = Path(str(out))
    if is_uri(str(out)) or not root.is_dir():
        return None
    children = [c for c in root.iterdir() if c.is_dir()]
    if partitioned_run:
        flat = [c for c in children if any((c / m).is_file() for m in META_NAMES)]
        if flat:
            return (
                f"{out} already holds runs written by `flip --out` ({flat[0].name}, ...); with "
                "this run under model=/date= partitions the directory no longer reads as one "
                "Parquet dataset. Give `run` an --out of its own."
            )
    elif any(c.name.startswith("model=") for c in children):
        return (
            f"{out} holds runs of `detcheck run` under model=/date= partitions; a run directly "
            "under it stops the directory reading as one Parquet dataset. Give `flip` an --out "
            "of its own."
        )
    return None


def new_run_id(model: str) -> str:
    stamp = utc_now().strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{slug(model)}-{secrets.token_hex(3)}"


def run_meta(
    plan: Plan,
    endpoint: str,
    *,
    replay_of: str | None = None,
    tags: dict | None = None,
    timeout_s: float | None = None,
) -> dict:
    """run.json as a new run starts: what the plan measures, how, and with what versions."""
    config, targets, n = plan.config, plan.targets, plan.n
    return {
        "tags": tags or {},
        "schema_version": SCHEMA_VERSION,
        "run_json_version": RUN_JSON_VERSION,
        "run_id": new_run_id(config.model),
        "status": "running",
        "n_requested": n,
        "started_at": utc_now().isoformat(),
        "ended_at": None,
        "config": config.to_dict(),
        # the body as sent; a long prompt is config.prompt's alone (not a second copy here)
        "request": elide_long_texts(config.request_body()),
        "label": targets[0].label,
        "target": targets[0].token,
        "targets": {t.label: t.token for t in targets},
        "target_how": {t.label: t.how for t in targets},
        "endpoint": strip_credentials(endpoint) if "://" in endpoint else endpoint,
        "api": config.api,
        "replay_of": replay_of,
        "concurrency": plan.control.concurrency,
        "rpm": plan.control.rpm,
        "retry_policy": asdict(plan.policy),
        "timeout_s": timeout_s,
        "versions": versions(),
    }


def open_run(out, meta: dict, log=None) -> RunWriter:
    """A writer for a new run under `out`: a local directory, or an object-store URI (the run is
    staged in a private local directory and each finished file uploaded; run.json records where,
    without credentials, so a resume uploads there too)."""
    from detcheck.store import display_uri, is_uri, open_uri, safe_uri

    if not is_uri(out):
        return RunWriter(_claim(Path(out), meta), meta)
    fs, remote = open_uri(str(out))
    remote = f"{remote.rstrip('/')}/{meta['run_id']}"
    base, _, query = safe_uri(str(out)).partition("?")
    meta["upload_to"] = f"{base.rstrip('/')}/{meta['run_id']}" + (f"?{query}" if query else "")
    staging = staging_dir(meta["run_id"])
    if log:
        log(f"staging in {staging}; uploading each finished part to {display_uri(out)}")
    return RunWriter(staging, meta, mirror=(fs, remote), private=True)


def _claim(out: Path, meta: dict) -> Path:
    """A directory for a new run under `out`, made here and by no one else: an id already
    taken (two runs started in one second, and the same 24 random bits) gets new random bits,
    so a new run never writes into another's directory."""
    from detcheck.store.files import _make_dir

    _make_dir(out)
    for _ in range(100):
        try:
            (out / meta["run_id"]).mkdir()
            return out / meta["run_id"]
        except FileExistsError:
            stem = meta["run_id"].rsplit("-", 1)[0]
            meta["run_id"] = f"{stem}-{secrets.token_hex(3)}"
        except OSError:
            break  # not ours to say why: the writer's own mkdir will
    return out / meta["run_id"]


def staging_dir(run_id: str) -> Path:
    """Where a run bound for an object store is written first: under a directory that only this
    user can enter (0700), checked, since the temporary directory is shared."""
    import os
    import stat
    import tempfile

    from detcheck.errors import StorageError

    root = Path(tempfile.gettempdir()) / f"detcheck-staging-{os.getuid()}"
    try:
        root.mkdir(mode=0o700, exist_ok=True)
        info = root.lstat()
    except OSError as exc:
        raise StorageError(f"cannot create {root}: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise StorageError(
            f"{root} is not a private directory of this user (owner, mode or a link); remove it"
        )
    run_dir = root / run_id
    run_dir.mkdir(mode=0o700, exist_ok=True)
    return run_dir
