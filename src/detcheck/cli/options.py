"""The option types the commands share, each made from its detcheck.spec parameter (help,
default, unit, --help group), so the command line, experiment files and the Python API agree."""

from __future__ import annotations

import functools
import inspect
from typing import Annotated

import typer

from detcheck import spec
from detcheck.errors import UsageError


def flag(option: str, help: str, panel: str | None = None, short: str | None = None):
    """An on/off option: shown without a value label, in its --help group."""
    names = [option, short] if short else [option]
    return Annotated[bool, typer.Option(*names, help=help, metavar="", rich_help_panel=panel)]


Debug = flag("--debug", "Show tracebacks on errors.", spec.OUTPUT)


AsJson = flag("--json", "Print exactly one JSON object on stdout; the rest on stderr.", spec.OUTPUT)


LabelMass = Annotated[
    bool,
    typer.Option(
        "--label-mass",
        help="Analyse the summed probability of every top token that is a prefix of the label "
        "(He, Head, Heads ... for Heads) instead of one token.",
    ),
]


Space = Annotated[
    str,
    typer.Option(
        help="Cluster on 'pct' (threshold in percentage points) or 'logprob' (threshold in "
        "nats: for rare tokens, where percentage-point gaps say nothing).",
    ),
]


AnswerRegex = Annotated[
    str | None,
    typer.Option(
        help="For generate runs: a regular expression extracting the answer from each "
        "completion (its first group, else the whole match), for TARa@N and answer counts.",
        rich_help_panel=spec.OUTPUT,
    ),
]


AllowMixed = flag(
    "--allow-mixed",
    "Add up runs of different setups (model, prompt, labels, temperature, top_logprobs, API); "
    "refused by default, naming what differs.",
)


def key_env_of(name: str) -> str:
    """--key-env as given, if it names a variable; never echoed, as it may be the key itself."""
    from detcheck.commands.experiment_file import names_a_variable

    if not names_a_variable(name):
        raise UsageError(
            "--key-env takes the name of an environment variable (like OPENAI_API_KEY), not "
            "the key itself"
        )
    return name


KeyEnv = Annotated[
    str,
    typer.Option(
        "--key-env",
        help="The environment variable holding the API key (there is no key option: a key on "
        "the command line lands in shell history).",
        rich_help_panel=spec.REQUEST,
    ),
]


Quiet = flag(
    "--quiet", "No progress (a bar in a terminal, else a line every 30 s).", spec.OUTPUT, "-q"
)


DryRun = flag(
    "--dry-run", "Print the plan (requests, tokens, estimated cost) and send nothing.", spec.RUN
)


Yes = flag(
    "--yes",
    "Do not ask before a run estimated above $5 (only a terminal is asked).",
    spec.RUN,
    "-y",
)


def Runs(what: str = "Runs, run directories, directories of runs, or s3:// / gs:// URIs"):  # noqa: N802
    """The runs a command reads: `runs` (where flip, generate and import write) unless given."""
    return Annotated[
        list[str] | None,
        typer.Argument(
            help=f"{what} (flip, generate and import write under runs).", show_default="runs"
        ),
    ]


def runs_or_default(paths: list[str] | None, verb: str, command: str) -> list[str]:
    """The paths given, else runs/ if it is here; else what to do instead (exit 2)."""
    if paths:
        return paths
    from pathlib import Path

    if Path("runs").exists():
        return ["runs"]
    raise UsageError(
        f"no runs/ here to {verb}: give the runs (detcheck {command} PATH...), or make some "
        "(detcheck flip --replay gpt-4o-coinflip writes one under runs/)"
    )


Token = Annotated[
    str | None,
    typer.Option("--token", help="Analyse this token instead of the one the run measured."),
]


def _option(param: spec.Param, help_text: str | None = None, kind: str = "flip"):
    """The typer annotation of one spec parameter: every option is None when not given, so
    a resumed or replayed run's own value can apply before the default."""
    help_text = help_text or param.help  # says its unit in words, once
    if param.type is bool:
        info = typer.Option(param.option, help=help_text, metavar="", rich_help_panel=param.group)
        return Annotated[bool, info], False
    python_type = {tuple: str, list: list[float]}.get(param.type, param.type)
    shown = param.show_default
    if param.name in spec.KIND_DEFAULTS[kind]:
        shown = None
    value = spec.default(param.name, kind)
    if shown is None and value is not None:
        shown = ", ".join(f"{v:g}" for v in value) if isinstance(value, list) else f"{value}"
    info = typer.Option(
        param.option,
        *([param.short] if param.short else []),
        help=help_text,
        metavar={list: "FLOAT", tuple: "LIST"}.get(param.type),  # repeated; comma-separated
        show_default=shown if shown is not None else False,
        envvar=param.env,
        rich_help_panel=param.group,
    )
    return Annotated[python_type | None, info], None


def spec_options(*names: str, help: dict[str, str] | None = None, kind: str = "flip"):
    """Add the CLI options of these spec parameters to a command; it receives them as one
    `given` dict (None: not given), labels already parsed. One name, default and help each."""

    def decorate(func):
        signature = inspect.signature(func, eval_str=True)  # typer reads real annotations
        own = [p for p in signature.parameters.values() if p.name != "given"]
        added = []
        for name in names:
            annotation, empty = _option(spec.PARAMS[name], (help or {}).get(name), kind)
            added.append(
                inspect.Parameter(
                    name, inspect.Parameter.KEYWORD_ONLY, default=empty, annotation=annotation
                )
            )
        keyword = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
        positional = [p for p in keyword if _is_argument(p)]
        options = [p for p in keyword if not _is_argument(p)]

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            given = {name: kwargs.pop(name, None) for name in names}
            if given.get("labels") is not None:
                given["labels"] = spec.parse_labels(given["labels"])
            return func(*args, given=given, **kwargs)

        parameters = positional + added + options
        wrapper.__signature__ = signature.replace(parameters=parameters)
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        return wrapper

    return decorate


def _is_argument(parameter: inspect.Parameter) -> bool:
    metadata = getattr(parameter.annotation, "__metadata__", ())
    return any(isinstance(m, typer.models.ArgumentInfo) for m in metadata)
