"""The recordings that ship inside the package, by name, so the keyless demo works from any
directory of any install (`detcheck flip --replay gpt-4o-coinflip`, `detcheck analyze
gpt-4o-coinflip`), not only in a clone of the repository.

It owns the data (one run directory per name, read like any stored run) and `locate`, which
turns what a user typed into a run path: a path that exists is that path; otherwise a shipped
name is its directory here. It may import nothing of detcheck: it sits with the vocabulary.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent

# name -> what it is (the run's own run.json says how it was made: its `provenance`)
SHIPPED = {
    "gpt-4o-coinflip": "10,000 calls of gpt-4o-2024-08-06 to the coin-flip prompt, rebuilt from "
    "the published figures (42 distinct Heads probabilities)",
}

DEMO = "detcheck flip --n 10000 --replay gpt-4o-coinflip"


def locate(given: str | Path) -> Path:
    """The run `given` names: itself if it exists (a user's own directory of that name wins),
    else the shipped recording of that name, else `given` (for the caller's "no such" error)."""
    path = Path(given)
    if path.exists() or str(given) not in SHIPPED:
        return path
    return HERE / str(given)
