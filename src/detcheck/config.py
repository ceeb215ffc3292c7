"""What a measurement asks for: the request parameters, with the publication's defaults."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from detcheck.errors import UsageError

DEFAULT_MODEL = "gpt-4o-2024-08-06"
DEFAULT_PROMPT = "Flip a coin. Return Heads or Tails only."
DEFAULT_LABELS = ("Heads", "Tails")
DEFAULT_BASE_URL = "https://api.openai.com/v1"


@dataclass(frozen=True)
class FlipConfig:
    """The parameters of one measurement. Everything that reaches the request body lives here."""

    model: str = DEFAULT_MODEL
    prompt: str = DEFAULT_PROMPT
    labels: tuple[str, ...] = DEFAULT_LABELS
    temperature: float = 0.0
    seed: int | None = 42
    top_logprobs: int = 20
    max_tokens: int = 1
    # the token each label arrives as (resolved with tiktoken, or given)
    targets: dict[str, str] = field(default_factory=dict)
    api: str = "chat"  # a shape in detcheck.shapes: "chat", "completions", "responses"

    def validate(self) -> None:
        if not self.labels:
            raise UsageError("--labels needs at least one label")
        if not 0 <= self.top_logprobs <= 20:
            raise UsageError(f"--top-logprobs must be between 0 and 20, got {self.top_logprobs}")
        if self.max_tokens < 1:
            raise UsageError(f"--max-tokens must be at least 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise UsageError(f"--temperature must be >= 0, got {self.temperature}")
        from detcheck.shapes import SHAPES

        if self.api not in SHAPES:
            raise UsageError(f"--api must be one of {', '.join(SHAPES)}, got {self.api!r}")
        if self.seed is not None and not self.shape.TAKES_SEED:
            raise UsageError(f"the {self.api} API takes no seed: give --no-seed")

    @property
    def shape(self):
        """The API shape's adapter (detcheck.shapes): path, request body, parser."""
        from detcheck.shapes import shape

        return shape(self.api)

    @property
    def path(self) -> str:
        return self.shape.PATH

    def request_body(self) -> dict:
        """The JSON body of every call (identical for all of them)."""
        return self.shape.request_body(self)

    @property
    def primary_target(self) -> str:
        """The token the report is about: the first label's token."""
        return self.targets.get(self.labels[0], self.labels[0])

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["labels"] = list(self.labels)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> FlipConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        if "labels" in kwargs:
            kwargs["labels"] = tuple(kwargs["labels"])
        return cls(**kwargs)


def strip_credentials(url: str) -> str:
    """The URL without user:password and without a query string or fragment (where tokens hide)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def split_query(url: str) -> tuple[str, dict[str, str]]:
    """A base URL without its query string, and that query as parameters: the SDK appends the
    request path to the base URL, so `...v1?key=x` would become `...v1?key=x/chat/completions`."""
    from urllib.parse import parse_qsl

    parts = urlsplit(url)
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    return base, dict(parse_qsl(parts.query, keep_blank_values=True))


LABEL_SEPARATOR = ","


def parse_labels(text: str) -> tuple[str, ...]:
    """`Heads,Tails` as labels; an empty label (`Heads,,Tails`, a trailing comma) is refused,
    not dropped: the user meant something else."""
    labels = tuple(part.strip() for part in text.split(LABEL_SEPARATOR))
    if not text.strip() or not all(labels):
        raise UsageError(f"--labels takes non-empty comma-separated labels, got {text!r}")
    return labels


def check_labels(labels) -> None:
    """Labels as a list (experiment files): none empty, none holding the separator (a label
    travels comma-joined, and would come back as two)."""
    for label in labels:
        if not label.strip():
            raise UsageError("a label is empty")
        if LABEL_SEPARATOR in label:
            raise UsageError(f"label {label!r} contains {LABEL_SEPARATOR!r}, the separator")
