"""How `--help` reads: value labels in words (TEXT, INTEGER, FLOAT, PATH; LIST for a
comma-separated option), a flag without one, defaults shown as values, arguments as shells write
them (PATHS...), and prose paragraphs folded by the terminal, not at the newlines of a
docstring. Typer's own rendering prints Python types (<str>, <list[str]>, <bool>), wraps a
default given as text in parentheses, and keeps a docstring's line breaks after its first
paragraph; the command classes here change only that."""

from __future__ import annotations

import re
from pathlib import Path

from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

LABELS = {str: "TEXT", int: "INTEGER", float: "FLOAT", Path: "PATH", bool: ""}


def _default_as_value(self, *, ctx, show_default_is_str, default_value) -> str:
    if show_default_is_str:  # a default given as text (the spec's): as it is
        return str(self.show_default)
    return (
        type(self)
        .__mro__[1]
        ._get_default_string(
            self, ctx=ctx, show_default_is_str=show_default_is_str, default_value=default_value
        )
    )


# (no mixin: a class swapped in by `readable` must keep its base's layout)
class ReadableOption(TyperOption):
    _get_default_string = _default_as_value


class ReadableArgument(TyperArgument):
    _get_default_string = _default_as_value

    """Its metavar is its name as shells write it: PATHS... (set by `readable`)."""

    def _rich_display_name(self) -> str:
        return self.metavar

    def _usage_display_name(self) -> str:
        if self.required:
            return self.metavar
        name, dots, _ = self.metavar.partition("...")
        return f"[{name}]{dots}"  # [PATHS]...: optional, and repeatable

    def display_type_rich(self, ctx):
        return None  # the name says it (PATHS...); the help says what goes there


def _label(annotation) -> str:
    args = getattr(annotation, "__args__", ())
    if getattr(annotation, "__origin__", None) is list and args:
        return _label(args[0])
    return LABELS.get(annotation, "TEXT")


def readable(param) -> None:
    """Give a parameter its reader-facing value label and rendering (idempotent)."""
    if isinstance(param, TyperOption) and not isinstance(param, ReadableOption):
        param.__class__ = ReadableOption  # same fields, two rendering methods changed
        if param.metavar is None:
            flag = param.is_flag or param.type_descriptor.annotation is bool
            param.metavar = "" if flag else _label(param.type_descriptor.annotation)
    elif isinstance(param, TyperArgument) and not isinstance(param, ReadableArgument):
        param.__class__ = ReadableArgument
        if param.metavar is None:
            param.metavar = (param.name or "").upper() + ("..." if param.nargs != 1 else "")


def reflow(text: str | None) -> str | None:
    """A docstring's paragraphs as single lines (a \\b paragraph is kept as written), so the
    terminal folds them at its own width."""
    if not text:
        return text
    paragraphs = re.split(r"\n\s*\n", text.strip())
    return "\n\n".join(
        p if p.startswith("\b") else " ".join(line.strip() for line in p.splitlines())
        for p in paragraphs
    )


class _Readable:
    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:
            readable(param)
        return params


class ReadableCommand(_Readable, TyperCommand):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.help = reflow(self.help)


class ReadableGroup(_Readable, TyperGroup):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.help = reflow(self.help)
