"""Every parameter of a measurement, defined once: name, type, default, unit, help, validation,
and whether `--resume` may change it.

The CLI options of `flip`, `sweep` and `probe`, the fields of experiment files, `--resume`'s
check and FlipConfig's defaults are all derived from `PARAMS`, so an option has one name, one
default and one validation everywhere. Nothing here imports the heavy libraries.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from detcheck.errors import UsageError

# --help groups
REQUEST = "Request"
RUN = "Run control"
OUTPUT = "Output"

LABEL_SEPARATOR = ","
DEFAULT_THRESHOLD = 0.01  # the publication's cluster gap, in percentage points


def _at_least(low):
    def check(value):
        if value < low:
            return f"must be at least {low}, got {value}"

    return check


def _positive(value):
    if value <= 0:
        return f"must be positive, got {value}"


def _non_negative(value):
    if value < 0:
        return f"must be >= 0, got {value}"


def _between(low, high):
    def check(value):
        if not low <= value <= high:
            return f"must be between {low} and {high}, got {value}"

    return check


def shape_names() -> list[str]:
    """The API shapes: the modules in detcheck/shapes/, found without importing them (so
    `--help` stays fast); `chat` first, the default."""
    import pkgutil
    from pathlib import Path

    found = [m.name for m in pkgutil.iter_modules([str(Path(__file__).parent / "shapes")])]
    return sorted((n for n in found if not n.startswith("_")), key=lambda n: (n != "chat", n))


def _api(value):
    if value not in shape_names():
        return f"must be one of {', '.join(shape_names())}, got {value!r}"


def _labels(labels):
    if not labels:
        return "needs at least one label"
    for label in labels:
        if not isinstance(label, str) or not label.strip():
            return "takes non-empty labels"
        if LABEL_SEPARATOR in label:  # a label travels comma-joined, and would come back as two
            return f"label {label!r} contains {LABEL_SEPARATOR!r}, the separator"


def _thresholds(values):
    for t in values:
        if not t >= 0:
            return f"must be >= 0, got {t}"


def parse_labels(text: str) -> tuple[str, ...]:
    """`Heads,Tails` as labels; an empty label (`Heads,,Tails`, a trailing comma) is refused,
    not dropped: the user meant something else."""
    labels = tuple(part.strip() for part in text.split(LABEL_SEPARATOR))
    if not text.strip() or not all(labels):
        raise UsageError(f"--labels takes non-empty comma-separated labels, got {text!r}")
    return labels


@dataclass(frozen=True)
class Param:
    name: str  # the Python name, the experiment-file field and the run.json key
    type: type  # int, float, str, bool, tuple (labels), list (thresholds)
    default: object  # None: nothing (no seed, no rpm cap, no replay ...)
    help: str
    group: str
    unit: str = ""  # shown in --help and in errors where it helps
    check: Callable | None = None  # value -> None, or what is wrong with it
    resumable: bool = False  # --resume may give a new value (how, not what, is measured)
    flag: str = ""  # the CLI flag; "" means --name-with-dashes
    env: str | None = None  # the CLI reads it from this environment variable too
    in_file: bool = True  # experiment files may set it
    show_default: str | None = None  # how --help shows the default, when str() would not do
    short: str = ""  # a one-letter flag too (-n)

    @property
    def option(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    def validate(self, value) -> None:
        if value is None:
            return
        # the Python API passes values as they come: "five" is a usage error, not a TypeError
        if self.type is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise UsageError(f"{self.option} must be a whole number, got {value!r:.60}")
        if self.type is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise UsageError(f"{self.option} must be a number, got {value!r:.60}")
        if self.check is None:
            return
        if self.type is float and not math.isfinite(value):
            # nan and inf pass every comparison (nan < 0 is false): refuse them first
            raise UsageError(f"{self.option} must be a finite number, got {value}")
        problem = self.check(value)
        if problem:
            raise UsageError(f"{self.option} {problem}")


PARAMS: dict[str, Param] = {
    p.name: p
    for p in [
        # what is measured: the request body
        Param("model", str, "gpt-4o-2024-08-06", "Model name.", REQUEST),
        Param(
            "prompt", str, "Flip a coin. Return Heads or Tails only.", "The user message.", REQUEST
        ),
        Param(
            "labels",
            tuple,
            ("Heads", "Tails"),
            "Comma-separated answers; the first is reported.",
            REQUEST,
            check=_labels,
            show_default="Heads,Tails",
        ),
        Param(
            "target_token",
            str,
            None,
            "The token the first label arrives as (for models tiktoken does not know).",
            REQUEST,
        ),
        Param(
            "temperature",
            float,
            0.0,
            "Sampling temperature (it does not change the logits).",
            REQUEST,
            check=_non_negative,
        ),
        Param("seed", int, 42, "Sampling seed.", REQUEST),
        Param(
            "no_seed",
            bool,
            False,
            "Send no seed (for an endpoint that refuses one; probe tells). In experiment "
            "files: seed = false.",
            REQUEST,
            in_file=False,
        ),
        Param(
            "top_logprobs",
            int,
            20,
            "Top tokens per response, 0-20.",
            REQUEST,
            check=_between(0, 20),
        ),
        Param("max_tokens", int, 1, "Output tokens.", REQUEST, check=_at_least(1)),
        Param(
            "api",
            str,
            "chat",
            "The API shape, one of: " + ", ".join(shape_names()) + ". 'chat' is "
            "/v1/chat/completions, 'completions' the legacy /v1/completions (base models), "
            "'responses' /v1/responses (it takes no seed, and none is sent).",
            REQUEST,
            check=_api,
        ),
        Param(
            "via",
            str,
            "online",
            "'online' (each request as it is made) or 'batch' (all of them through the Batch "
            "API: half the list price, answered within 24 h, another serving tier).",
            REQUEST,
            check=lambda v: (
                None if v in ("online", "batch") else f"must be online or batch, got {v!r}"
            ),
        ),
        Param(
            "base_url",
            str,
            "https://api.openai.com/v1",
            "OpenAI-compatible endpoint, up to its version (/v1): the API path is added. The key "
            "is read from OPENAI_API_KEY, or the variable --key-env names (experiment files: "
            "api_key_env).",
            REQUEST,
            env="OPENAI_BASE_URL",
        ),
        # how it is run
        Param(
            "n", int, 1000, "Successful responses to collect.", RUN, check=_at_least(1), short="-n"
        ),
        Param(
            "concurrency",
            int,
            16,
            "Requests in flight at once (a resumed run keeps its own unless given).",
            RUN,
            check=_at_least(1),
            resumable=True,
        ),
        Param(
            "rpm",
            float,
            None,
            "Cap on requests per minute.",
            RUN,
            unit="requests/minute",
            check=_positive,
            resumable=True,
        ),
        Param(
            "background_load",
            int,
            0,
            "Extra requests kept in flight alongside the measured ones (other prompts of varying "
            "lengths, so the batches they share change); never recorded as measurements, counted "
            "in run.json.",
            RUN,
            check=_non_negative,
            resumable=True,
        ),
        Param(
            "batch_poll_s",
            float,
            15.0,
            "--via batch: seconds between two looks at the batch's progress.",
            RUN,
            unit="s",
            check=_positive,
            resumable=True,
        ),
        Param(
            "cancel_on_interrupt",
            bool,
            False,
            "--via batch: Ctrl-C cancels the batch (by default it keeps running, and --resume "
            "collects it).",
            RUN,
            resumable=True,
        ),
        Param(
            "max_cost",
            float,
            None,
            "Refuse to start a run whose estimated cost in USD (list prices, tokens counted "
            "with tiktoken) is higher.",
            RUN,
            unit="USD",
            check=_positive,
            resumable=True,
        ),
        Param(
            "max_attempts",
            int,
            6,
            "Attempts per call before the run stops. Retried: 408, 409, 429, 5xx, timeouts, "
            "dropped connections, bodies without logprobs; waits --backoff-s doubling to "
            "--max-backoff-s with jitter, or the server's Retry-After (up to 120 s).",
            RUN,
            check=_at_least(1),
            resumable=True,
        ),
        Param(
            "backoff_s",
            float,
            0.5,
            "First wait before a retry, in seconds, doubling each time (with jitter).",
            RUN,
            unit="s",
            check=_non_negative,
            resumable=True,
        ),
        Param(
            "max_backoff_s",
            float,
            30.0,
            "Longest wait between retries, in seconds.",
            RUN,
            unit="s",
            check=_non_negative,
            resumable=True,
        ),
        Param(
            "timeout_s",
            float,
            60.0,
            "Seconds a whole request may take, connect to last byte (a server that drips its "
            "answer times out too).",
            RUN,
            unit="s",
            check=_positive,
            resumable=True,
            flag="--timeout",
        ),
        Param(
            "replay",
            str,
            None,
            "Serve the responses of this stored run instead of calling an endpoint (no key, "
            "no network).",
            RUN,
        ),
        Param(
            "resume",
            str,
            None,
            "Continue this interrupted or crashed run (its directory, or its s3:// / gs:// URI) "
            "to its own N, with its own parameters. One process writes a run at a time.",
            RUN,
            in_file=False,
        ),
        Param(
            "out",
            str,
            "runs",
            "Directory the run is written under, or an object-store URI (s3://bucket/prefix, "
            "gs://...; pyarrow.fs options as a query string).",
            OUTPUT,
            in_file=False,  # `detcheck run --out` places every measurement of a file
            short="-o",
        ),
        Param(
            "thresholds",
            list,
            [DEFAULT_THRESHOLD],
            "Cluster gap; a new cluster starts where neighbouring distinct values differ by "
            "more. Percentage points (nats under --space logprob). Repeat for several.",
            OUTPUT,
            unit="pp",
            check=_thresholds,
            resumable=True,  # the report, not the measurement
            flag="--threshold",
        ),
    ]
}

# what reaches the request body (FlipConfig's fields, besides the resolved targets)
REQUEST_PARAMS = (
    "model", "prompt", "labels", "temperature", "seed", "top_logprobs", "max_tokens", "api",
)  # fmt: skip


# What a measurement looks at: `flip` the first token, `generate` the whole answer. A kind
# changes these defaults and nothing else.
KIND_DEFAULTS: dict[str, dict] = {
    "flip": {},
    "generate": {"n": 100, "max_tokens": 128, "top_logprobs": 5},
    # `detcheck audit`: calls per arm, the batch it tries, a generate arm's length (its flip
    # arms keep one token); its arms are flips and generates, never of this kind
    "audit": {"n": 40, "concurrency": 8, "max_tokens": 16},
    # `detcheck verify`: calls per prompt on each side (3 rounds: 1 alone, 2 batched each),
    # the most in flight when batched; its runs are flips
    "verify": {"n": 9, "concurrency": 8},
}


def default(name: str, kind: str = "flip"):
    value = KIND_DEFAULTS[kind].get(name, PARAMS[name].default)
    return list(value) if isinstance(value, list) else value


def validate(values: dict) -> None:
    """Each given value (None = not given) against its parameter, then the rules between them."""
    for name, value in values.items():
        if name in PARAMS:
            PARAMS[name].validate(value)
    if values.get("no_seed") and values.get("seed") is not None:
        raise UsageError("give --seed or --no-seed, not both")
    backoff = values.get("backoff_s")
    backoff = default("backoff_s") if backoff is None else backoff
    longest = values.get("max_backoff_s")
    longest = default("max_backoff_s") if longest is None else longest
    if longest < backoff:
        raise UsageError("--backoff-s must be at most --max-backoff-s")


# experiment files: fields beyond the measurement parameters
FILE_ONLY = {
    "name": ((str,), "a name"),
    "api_key_env": ((str,), "an environment variable name"),
    # a measurement with `reference` is a verification (`detcheck verify`) of its endpoint
    # against it: a base URL, or the directory an earlier `verify -o` wrote
    "reference": ((str,), "a base URL or a verification's directory"),
    "reference_model": ((str,), "a model name"),
    "reference_key_env": ((str,), "an environment variable name"),
}


def file_fields() -> dict[str, tuple[tuple[type, ...], str]]:
    """field -> (types accepted, what it must be): every parameter a file may set."""
    described = {
        int: ((int,), "an integer"),
        float: ((int, float), "a number"),
        str: ((str,), "text"),
        tuple: ((list,), "a list of strings"),
        list: ((list,), "a list of numbers"),
        bool: ((bool,), "true or false"),
    }
    fields = dict(FILE_ONLY)
    for p in PARAMS.values():
        if p.in_file:
            fields[p.name] = described[p.type]
    fields["seed"] = ((int,), "an integer, or false to send none")
    return fields
