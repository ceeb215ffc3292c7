"""What a set of runs is: the token it measured, its setup (runs of different setups are
refused unless asked for), and what it measured where and when. Both reports (flip and
generate) start here."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from detcheck.errors import DataError, UsageError
from detcheck.store import Run
from detcheck.text import clip, count


def run_target(runs: Sequence[Run], token: str | None) -> tuple[str, str | None]:
    """The token to analyse and its label: --token, else what the runs were measuring."""
    if token:
        return token, None
    seen = {(r.meta.get("target"), r.meta.get("label")) for r in runs}
    seen.discard((None, None))
    if not seen:
        raise DataError("the runs do not say which token they measured; name one with --token")
    if len(seen) > 1:
        names = ", ".join(sorted(repr(t) for t, _ in seen))
        raise UsageError(f"the runs measured different tokens ({names}); pick one with --token")
    return next(iter(seen))


# What makes two runs measure the same thing: runs that differ in any are not added up.
SETUP_KEYS = ("model", "prompt", "labels", "temperature", "top_logprobs", "api", "max_tokens")


def setup_of(run: Run) -> dict:
    config = run.meta.get("config") or {}
    setup = {key: config.get(key) for key in SETUP_KEYS}
    setup["labels"] = tuple(setup["labels"] or ())
    setup["api"] = setup["api"] or "chat"  # runs before --api were chat
    if config.get("kind") == "generate":  # a generate report keeps each prompt apart
        del setup["prompt"]
    else:  # a first-token measurement asks for 1 token (or a few, on the Responses API)
        del setup["max_tokens"]
    return setup


def setup_differences(runs: Sequence[Run]) -> list[str]:
    """What differs among the runs' setups, one phrase per parameter, with run counts:
    "model 'a' (2 runs), 'b' (1 run)". Empty if they measure the same thing."""
    counts: dict[str, Counter] = {}
    for run in runs:
        for key, value in setup_of(run).items():
            counts.setdefault(key, Counter())[value] += 1
    return [
        f"{key} "
        + ", ".join(
            f"{_setup_value(value)} ({count(n, 'run')})"
            for value, n in sorted(seen.items(), key=_by_count)
        )
        for key, seen in counts.items()
        if len(seen) > 1
    ]


def _by_count(item) -> tuple:
    return -item[1], repr(item[0])


def _setup_value(value) -> str:
    if isinstance(value, tuple):
        value = ",".join(value)
    return clip(repr(value), 60)


def require_one_setup(runs: Sequence[Run], override: str, what: str = "the runs") -> None:
    """Refuse (exit 2) to add up runs that measured different things, naming what differs."""
    differences = setup_differences(runs)
    if differences:
        raise UsageError(
            f"{what} measure different setups: {'; '.join(differences)}. Analyse them apart, "
            f"or pass {override} to add them up anyway"
        )


def measured(runs: Sequence[Run]) -> dict:
    """What the runs measured, for a reader of the report or the figure: model, endpoint, the
    run ids and when they started."""
    starts = sorted(s for r in runs if (s := r.meta.get("started_at")))
    return {
        "models": sorted({m for r in runs if (m := (r.meta.get("config") or {}).get("model"))}),
        "endpoints": sorted({e for r in runs if (e := r.meta.get("endpoint"))}),
        "run_ids": [r.meta.get("run_id") or str(r.path) for r in runs],
        "via": sorted({r.meta.get("via") or "online" for r in runs}),  # the serving tier
        "first_started_at": starts[0] if starts else None,
        "last_started_at": starts[-1] if starts else None,
        # `detcheck import`: from what, and what the data lacks (None: every run was measured)
        "imported": _imported(runs),
        # how runs not measured by detcheck came to be (a recording rebuilt from published
        # figures, and replays of it): shown wherever the endpoint is
        "provenance": sorted({p for r in runs if (p := r.meta.get("provenance"))}),
        # runs replayed from a recording: what was replayed (their endpoint is "replay:...")
        "replayed_from": sorted({str(p) for r in runs if (p := r.meta.get("replay_of"))}),
    }


def _imported(runs: Sequence[Run]) -> dict | None:
    imported = [i for r in runs if (i := r.meta.get("imported"))]
    if not imported:
        return None
    files = sorted({f["name"] for i in imported for f in i.get("files") or []})
    lacks = sorted({lack for i in imported for lack in i.get("lacks") or []})
    return {"formats": sorted({i.get("format") for i in imported}), "files": files, "lacks": lacks}
