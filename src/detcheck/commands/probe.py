"""`detcheck probe`: what an endpoint honours."""

from __future__ import annotations

from collections.abc import Callable

from detcheck import spec
from detcheck.commands.endpoints import live_endpoint
from detcheck.commands.options import resolve_config

Log = Callable[[str], None]


def probe_command(options, log: Log | None = None) -> dict:
    """What an endpoint honours, asked with the measurement `options` describe."""
    from detcheck.commands.endpoints import checked
    from detcheck.send.probe import probe

    spec.validate({name: getattr(options, name) for name in spec.PARAMS})
    options = checked(options, log or (lambda _: None))  # the URL as called, and a model
    config, _ = resolve_config(options)
    endpoint = live_endpoint(options.value("base_url"), options.value("timeout_s"), options.key_env)
    if options.value("via") == "batch":
        from detcheck.send.probe import probe_batch

        return probe_batch(config, endpoint, options.value("batch_poll_s"), log)
    return probe(config, endpoint)
