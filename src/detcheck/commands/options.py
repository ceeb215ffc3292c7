"""A measurement as asked for: FlipOptions holds every detcheck.spec parameter as given (None:
not given); resolve_config and settled fill in a recorded run's values, then the spec's."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import make_dataclass, replace

from detcheck import spec
from detcheck.config import FlipConfig

Log = Callable[[str], None]


def _given_or_default(self, name: str):
    """The value given, else the spec's default (for this kind of measurement)."""
    value = getattr(self, name)
    return spec.default(name, self.kind or "flip") if value is None else value


# A measurement as asked for: every parameter of detcheck.spec as given (None: not given, so a
# resumed or replayed run's own value, else the spec's default applies), and how to run it.
FlipOptions = make_dataclass(
    "FlipOptions",
    [(name, object, None) for name in spec.PARAMS]
    + [
        ("progress", bool, True),
        ("key_env", str, "OPENAI_API_KEY"),  # the environment variable that holds the key
        ("tags", object, None),  # stored in run.json (e.g. a sweep's concurrency level)
        ("background_prefix", str, ""),  # background requests begin with it (audit)
        ("seed_per_call", bool, False),  # each call sends seed + its index (audit)
        ("logprobs", bool, True),  # False: a generation's text only, none asked for (audit)
        ("partition", bool, False),  # under model=<model>/date=<YYYY-MM-DD>/ (scheduled runs)
        ("kind", object, None),  # "flip" or "generate"; None: flip, or the recorded run's
        ("answer_regex", object, None),  # generate: the answer in each completion (TARa@N)
        ("measurement", object, None),  # an experiment's name for this measurement
        ("hold_concurrency", bool, False),  # 429s retried without cutting the concurrency
        ("pacer", object, None),  # --rpm shared with other runs (an audit's arms): a Pacer
        ("dry_run", bool, False),  # print the plan (requests, tokens, cost); send nothing
        # asked before a live run estimated above CONFIRM_ABOVE_USD: text -> go ahead? (None:
        # nobody to ask, e.g. not a terminal, or --yes)
        ("confirm", object, None),
    ],
    namespace={"value": _given_or_default},
)


def given_parameters(options) -> dict:
    """The request parameters given (those left unset are absent)."""
    given = {name: getattr(options, name) for name in spec.REQUEST_PARAMS}
    return {k: v for k, v in given.items() if v is not None}


def resolve_config(options, recorded: dict | None = None):
    """Options given on the command line, else the recorded run's, else the spec's."""
    from detcheck.plan import Target
    from detcheck.send.tokens import resolve_targets

    base = (
        FlipConfig.from_dict(recorded) if recorded else FlipConfig.of_kind(options.kind or "flip")
    )
    config = replace(base, **given_parameters(options))
    if options.kind is not None:
        config = replace(config, kind=options.kind)
    if options.no_seed:
        config = replace(config, seed=None)
    if options.seed_per_call:
        config = replace(config, seed_per_call=True)
    if not options.logprobs:
        config = replace(config, logprobs=False)
    from detcheck.shapes import SHAPES

    if config.api in SHAPES and not SHAPES[config.api].TAKES_SEED and options.seed is None:
        config = replace(config, seed=None)  # none is sent, and run.json says so (null)
    config.validate()
    if config.kind == "generate":  # whole answers: no label's token is looked for
        targets = [Target(label, label, "not looked for (generate)") for label in config.labels]
        return replace(config, targets={}), targets
    recorded_targets = (recorded or {}).get("targets", {})
    same_model = bool(recorded) and config.model == recorded.get("model")
    if options.target_token:
        targets = resolve_targets(config.model, config.labels, options.target_token)
    elif same_model and all(label in recorded_targets for label in config.labels):
        # the recorded run already says which token each label arrives as: no tiktoken needed
        how = "as the recorded run measured it"
        targets = [Target(label, recorded_targets[label], how) for label in config.labels]
    elif same_model and config.labels[0] in recorded_targets:
        targets = resolve_targets(
            config.model,
            config.labels,
            recorded_targets[config.labels[0]],
            "as the recorded run measured it",
        )
    else:
        targets = resolve_targets(config.model, config.labels)
    return replace(config, targets={t.label: t.token for t in targets}), targets


# how a run goes, not what it measures: a resume may change these (detcheck.spec says which)
RUN_CONTROL = ("n", "concurrency", "rpm", "max_attempts", "backoff_s", "max_backoff_s")
RUN_CONTROL += ("timeout_s", "out", "thresholds", "background_load", "via", "batch_poll_s")
RUN_CONTROL += ("cancel_on_interrupt",)


def settled(options, stored: dict | None = None):
    """Every run-control value: as given, else the stored run's (a resume), else the default."""
    values = {}
    for name in RUN_CONTROL:
        value = getattr(options, name)
        if value is None and stored:
            value = stored.get(name)
        values[name] = spec.default(name, options.kind or "flip") if value is None else value
    return replace(options, **values)
