"""The mistakes people make pointing detcheck at an endpoint, caught before anything is sent or
explained when the first requests are refused, each in one line with what was probably meant:

- a base URL without a scheme (`127.0.0.1:8080/v1`): refused, `http://` suggested;
- one ending in the API path detcheck adds itself (`.../v1/chat/completions`): used without it;
- no --model for a server that is not OpenAI: the one model its /models lists is taken (and
  said), otherwise refused, listing what it serves (a dry run, which sends nothing, warns);
- a 404 at a base URL without a version (`http://host:8080`): "did you mean .../v1?";
- a model the endpoint does not serve: what its /models lists;

and the command that puts it right, rebuilt from what was given."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable
from dataclasses import replace
from urllib.parse import urlsplit

from detcheck import spec
from detcheck.config import strip_credentials
from detcheck.errors import Refused, UsageError
from detcheck.plan import Endpoint

Log = Callable[[str], None]

OPENAI_HOSTS = ("api.openai.com",)
_VERSIONED = re.compile(r"/v\d+[a-z0-9]*$")  # /v1, /v1beta, /api/v1 ... at the end of the path


def is_local(base_url: str) -> bool:
    """A server on this machine or a private network (where keys are usually not checked)."""
    import ipaddress
    from urllib.parse import urlsplit

    try:
        host = urlsplit(base_url).hostname or ""
    except ValueError:
        return False
    if host == "localhost" or host.endswith((".local", ".localhost", ".internal")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_unspecified


def live_endpoint(base_url: str, timeout_s: float, key_env: str = "OPENAI_API_KEY") -> Endpoint:
    base_url_of(base_url)  # a value that is no URL is refused before the key is asked for
    key = os.environ.get(key_env)
    if not key:
        if is_local(base_url):  # vLLM, llama.cpp, SGLang: any key will do, but one is sent
            raise UsageError(
                f"{key_env} is not set. A local server usually takes any key: run with "
                f"{key_env}=unused (or export it)"
            )
        from detcheck.recordings import DEMO

        raise UsageError(f"{key_env} is not set. Export it, or try the offline demo: {DEMO}")
    return Endpoint(base_url_of(base_url), key, timeout_s=timeout_s)


def require_key(options) -> None:
    """A command that makes a directory before its first request (audit, verify) says a
    missing key first: nothing made, nothing to resume."""
    live_endpoint(options.value("base_url"), options.value("timeout_s"), options.key_env)


def base_url_of(given: str, log: Log | None = None) -> str:
    """The base URL to call: a value without a scheme refused with the fix; an API path on its
    end (which the client appends itself) dropped, with a warning."""
    from detcheck.shapes import SHAPES

    if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", given):
        shown = strip_credentials(f"http://{given}").removeprefix("http://")
        scheme = "http" if is_local(f"http://{given}") else "https"
        raise UsageError(
            f"--base-url {shown!r} has no scheme: did you mean --base-url {scheme}://{shown}?"
        )
    if not given.startswith(("http://", "https://")):
        raise UsageError(
            f"--base-url must start with http:// or https://, got {strip_credentials(given)!r}"
        )
    parts = urlsplit(given)
    path = parts.path.rstrip("/")
    for suffix in sorted({shape.PATH for shape in SHAPES.values()}, key=len, reverse=True):
        if path.endswith(suffix):
            base = given.replace(parts.path, path[: -len(suffix)], 1)
            if log:
                log(
                    f"detcheck: warning: --base-url ends in {suffix}, which detcheck adds itself: "
                    f"using {strip_credentials(base)}"
                )
            return base
    return given


def checked(options, log: Log):
    """The options with the base URL as it will be called (see base_url_of) and a model (see
    choose_model): what every command that sends does first."""
    if options.replay is not None or options.resume is not None:
        return options
    if options.base_url is not None:
        options = replace(options, base_url=base_url_of(options.base_url, log))
    return choose_model(options, log)


def is_openai(base_url: str) -> bool:
    return (urlsplit(base_url).hostname or "") in OPENAI_HOSTS


def choose_model(options, log: Log):
    """The options with a model: as given, a replay's or a resume's own, or OpenAI's default at
    OpenAI. Any other server's models are its own: the only one its /models lists is measured
    (and said so); otherwise the user is asked to pick."""
    from detcheck.send.models import listed, served_models

    if options.model is not None or options.replay is not None or options.resume is not None:
        return options
    base_url = base_url_of(options.value("base_url"))
    if is_openai(base_url):
        return options
    shown = strip_credentials(base_url)
    if options.dry_run:  # it sends nothing, so it cannot ask; it spends nothing either
        log(
            f"warning: --model not given: a dry run sends nothing, so it cannot ask {shown} "
            f"what it serves; this plan is for {options.value('model')}, the default"
        )
        return options
    endpoint = live_endpoint(base_url, options.value("timeout_s"), options.key_env)
    models, why = served_models(endpoint)
    if models and len(models) == 1:
        log(f"--model not given: measuring {models[0]!r}, the one model {shown} serves")
        return replace(options, model=models[0])
    if models:
        raise UsageError(
            f"--model not given, and {shown} serves {len(models):,} models: {listed(models)}; "
            "pick one with --model"
        )
    said = f"its /models did not say what it serves ({why})" if why else "it lists no model"
    raise UsageError(
        f"--model not given: {shown} is not OpenAI, so its models are its own, and {said}; "
        "give --model"
    )


def explain(exc: Refused, options, endpoint) -> Refused:
    """What the first requests' refusal means, with the command that puts it right (still the
    endpoint's refusal: status, code and detail kept, so an audit can tell whose it was)."""
    from detcheck.send.models import listed, served_models

    base_url = strip_credentials(endpoint.base_url)
    model = options.value("model")
    detail = f" ({exc.detail})" if exc.detail else ""
    unversioned = not _VERSIONED.search(urlsplit(base_url).path.rstrip("/"))
    if exc.status == 404 and unversioned and exc.code != "model_not_found":
        fixed = base_url.rstrip("/") + "/v1"
        return _with_fix(
            exc,
            f"{base_url} answered 404{detail}: did you mean --base-url {fixed}?",
            command_line(options, base_url=fixed),
            fix={"base_url": fixed},
        )
    if exc.status in (400, 404) and (exc.code == "model_not_found" or "model" in exc.detail):
        models, why = served_models(endpoint)
        if models is not None and model in models:  # the model is there: something else
            return _same(exc, f"{exc}\nnothing was kept: put that right and run it again")
        what = f"{base_url} does not serve model {model!r} ({exc.status}: {exc.detail})"
        if not models:
            said = f"its /models did not say what it serves ({why})" if why else "it lists none"
            return _with_fix(exc, f"{what}; {said}", None)
        return _with_fix(
            exc,
            f"{what}; it serves: {listed(models)}",
            command_line(options, model=models[0]),
            several=len(models) > 1,
            fix={"model": models[0]},
        )
    return _with_fix(exc, str(exc), None)


def version_hint(base_url: str, status: int | None) -> str:
    """' (did you mean --base-url .../v1?)' for a 404 at a base URL without a version."""
    shown = strip_credentials(base_url).rstrip("/")
    if status != 404 or _VERSIONED.search(urlsplit(shown).path):
        return ""
    return f": did you mean --base-url {shown}/v1?"


def _with_fix(exc: Refused, diagnosis: str, command: str | None, several: bool = False,
              fix: dict | None = None) -> Refused:  # fmt: skip
    if command is None:
        return _same(
            exc, f"{diagnosis}\nnothing was kept: put that right and run the same command again"
        )
    said = _same(exc, f"{diagnosis}\nnothing was kept; {_how(several)}: {command}")
    # a command that ran this one for its own (sweep) says its own command line with the fix
    said.diagnosis, said.fix, said.several = diagnosis, fix, several
    return said


def _how(several: bool) -> str:
    return "run again with one of them, e.g." if several else "run again with"


def refixed(exc: Refused, command: str) -> Refused:
    """`exc` (a first call's refusal that `explain` gave a fix) with `command` as the one to
    run again: the command the user typed, not the one it ran."""
    return _same(exc, f"{exc.diagnosis}\nnothing was kept; {_how(exc.several)}: {command}")


def _same(exc: Refused, message: str) -> Refused:
    said = Refused(message, exc.status, exc.code, exc.detail)
    said.nothing_kept = True
    return said


def command_line(options, **changes) -> str:
    """The command as given, with `changes`: every option given, in the spec's order (a
    resume's own option and the run's flags that only a run uses left out)."""
    words = ["detcheck", options.kind or "flip"]
    for name, param in spec.PARAMS.items():
        value = changes.get(name, getattr(options, name))
        if value is None or name == "resume":
            continue
        flag = param.short or param.option
        if param.type is bool:
            words += [param.option] if value else []
        elif name == "labels":
            words += [flag, spec.LABEL_SEPARATOR.join(value)]
        elif name == "thresholds":
            words += [x for t in value for x in ("--threshold", f"{t:g}")]
        elif name == "base_url":
            words += [flag, strip_credentials(value)]
        else:
            words += [flag, str(value)]
    if options.key_env != "OPENAI_API_KEY":
        words += ["--key-env", options.key_env]
    return shlex.join(words)
