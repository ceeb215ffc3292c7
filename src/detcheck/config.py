"""What a measurement asks for: the request parameters, with the publication's defaults."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from detcheck import spec
from detcheck.errors import UsageError


@dataclass(frozen=True)
class FlipConfig:
    """The parameters of one measurement. Everything that reaches the request body lives here."""

    # defaults, units and validation: detcheck.spec
    model: str = spec.default("model")
    prompt: str = spec.default("prompt")
    labels: tuple[str, ...] = spec.default("labels")
    temperature: float = spec.default("temperature")
    seed: int | None = spec.default("seed")
    top_logprobs: int = spec.default("top_logprobs")
    max_tokens: int = spec.default("max_tokens")
    # the token each label arrives as (resolved with tiktoken, or given)
    targets: dict[str, str] = field(default_factory=dict)
    api: str = spec.default("api")  # a shape in detcheck.shapes
    kind: str = "flip"  # "flip": the first token; "generate": every position (spec.KIND_DEFAULTS)
    # each call sends seed + its call index (the audit's "a seed per call" arms); run.json has
    # the key only when set, so every other run's config reads as before
    seed_per_call: bool = False
    # False: a generation asked for without logprobs (the audit's logprobs_toggle control);
    # only its text is stored. run.json has the key only when False
    logprobs: bool = True

    @classmethod
    def of_kind(cls, kind: str) -> FlipConfig:
        """The defaults of a kind of measurement."""
        changed = {k: v for k, v in spec.KIND_DEFAULTS[kind].items() if k in spec.REQUEST_PARAMS}
        return cls(kind=kind, **changed)

    def validate(self) -> None:
        spec.validate({name: getattr(self, name) for name in spec.REQUEST_PARAMS})
        if self.seed is not None and not self.shape.TAKES_SEED:
            raise UsageError(f"the {self.api} API takes no seed: give --no-seed")
        if self.seed_per_call and self.seed is None:
            raise UsageError("a seed per call needs a seed to count from")
        if not self.logprobs and self.kind != "generate":
            raise UsageError("a measurement without logprobs is a generation (its text)")

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
        if not self.seed_per_call:
            del data["seed_per_call"]
        if self.logprobs:
            del data["logprobs"]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> FlipConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        # an imported run's unknown parameters are null: the defaults stand in for a replay
        # (a null seed is --no-seed, and stays)
        kwargs = {k: v for k, v in data.items() if k in names and (v is not None or k == "seed")}
        if not kwargs.get("labels", True):
            del kwargs["labels"]
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


def without_userinfo(url: str) -> str:
    """The URL without user:password (its query string kept)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def uri_secrets(uri: str) -> list[str]:
    """What a URI holds that must never be shown: user, password, every query value."""
    from urllib.parse import parse_qsl, unquote, urlsplit

    parts = urlsplit(str(uri))
    found = [unquote(x) for x in (parts.username, parts.password) if x]
    found += [v for _, v in parse_qsl(parts.query) if v]
    return found
