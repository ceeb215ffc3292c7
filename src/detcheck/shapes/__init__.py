"""API shapes as adapters, part of the vocabulary every stage shares: one module per shape, each
with its `NAME` (the module's name), `PATH`, whether it takes a `seed` (`TAKES_SEED`),
`request_body(config)` and `parse(body) -> Parsed`; _parse.py holds what they share (not a
shape: the underscore keeps it out of `--api`). The runner, probe, replay and the tests go through
these. A new shape is one new module here: it is found by its file, and `--api` takes its name.

May import: detcheck.spec, detcheck.errors and detcheck.text only."""

from __future__ import annotations

import importlib
from types import ModuleType

from detcheck.spec import shape_names

SHAPES: dict[str, ModuleType] = {
    name: importlib.import_module(f"{__name__}.{name}") for name in shape_names()
}


def shape(name: str) -> ModuleType:
    return SHAPES[name]
