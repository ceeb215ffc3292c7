"""API shapes as adapters: one module per shape, each with its `NAME`, `PATH`, whether it takes
a `seed` (`TAKES_SEED`), `request_body(config)` and `parse(body) -> Parsed`. The runner, probe,
replay and the tests go through these; a new shape is one new module here and its line below."""

from __future__ import annotations

from types import ModuleType

from detcheck.shapes import chat, completions, responses

SHAPES: dict[str, ModuleType] = {m.NAME: m for m in (chat, completions, responses)}


def shape(name: str) -> ModuleType:
    return SHAPES[name]
