"""A resumed audit's settings: the ones it was planned with, read back from its _audit.json;
how to reach the endpoint and how fast may be given again (and are said to apply), anything
else given that differs is refused in words (commands.audit runs what is left)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from detcheck.errors import UsageError

Log = Callable[[str], None]

AUDIT_VERSION = 1
STATE = "_audit.json"
# what a resumed audit takes from the one it continues (the rest is the run's own business)
SETTINGS = ("model", "prompt", "labels", "temperature", "seed", "no_seed", "top_logprobs", "api")
SETTINGS += ("base_url", "n", "concurrency", "max_tokens", "timeout_s", "max_attempts", "rpm")
SETTINGS += ("backoff_s", "max_backoff_s")
# how to reach the endpoint and how fast: a resume applies these, and says so
APPLIED_ON_RESUME = ("base_url", "rpm", "timeout_s", "max_attempts", "backoff_s", "max_backoff_s")


def json_safe(value):
    return list(value) if isinstance(value, tuple) else value


def load_state(root: Path) -> dict:
    path = root / STATE
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"--resume {root}: not an audit directory (no {STATE})") from None
    except ValueError as exc:
        raise UsageError(f"--resume {root}: {STATE} is not JSON ({exc})") from None
    if state.get("audit_version") != AUDIT_VERSION or "settings" not in state:
        raise UsageError(f"--resume {root}: {STATE} is not one this version can continue")
    return state


def resumed(options, state: dict, root: Path, log: Log):
    """The options of the audit a resume continues: its own settings. How to reach the
    endpoint and how fast (APPLIED_ON_RESUME), --max-cost and -y apply to what is left, and are
    said; anything else given that differs from the audit's own is refused, in words."""
    from detcheck.commands import FlipOptions

    settings = dict(state["settings"])
    checks, rounds = settings.pop("checks"), settings.pop("rounds")
    if isinstance(settings.get("labels"), list):
        settings["labels"] = tuple(settings["labels"])
    planned = {**settings}
    differ, applied = [], []
    for name in (*SETTINGS, "out"):
        value = getattr(options, name, None)
        if value is None or value is False:
            continue
        if name in APPLIED_ON_RESUME:
            settings[name] = value
            if name != "base_url":
                applied.append(f"{_flag(name)} {value:g}")
            continue
        if name == "out":
            if Path(value).resolve() != root.parent.resolve():
                differ.append(f"-o {value} (it stays in {root.parent})")
            continue
        was = planned.get(name)
        if json_safe(value) != json_safe(was):
            shown = was if was is not None else "its default"
            differ.append(f"{_flag(name)} {_shown(value)} (planned with {shown})")
    if differ:
        raise UsageError(
            f"--resume carries on the audit as it was planned; it cannot change "
            f"{'; '.join(differ)}: start a new audit for that"
        )
    if applied:
        log(f"resume: {', '.join(applied)} apply to the rest of the audit")
    resumed = FlipOptions(
        **settings, out=str(root.parent), resume=str(root), key_env=options.key_env,
        progress=options.progress, confirm=options.confirm, max_cost=options.max_cost,
        dry_run=options.dry_run,
    )  # fmt: skip
    return resumed, checks, rounds


def _flag(name: str) -> str:
    from detcheck import spec

    return spec.PARAMS[name].option if name in spec.PARAMS else f"--{name.replace('_', '-')}"


def _shown(value) -> str:
    return ",".join(value) if isinstance(value, tuple) else str(value)
