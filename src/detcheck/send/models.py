"""What an endpoint says it serves: its `GET /models` (OpenAI's shape, which vLLM, SGLang,
llama.cpp and Ollama answer too), asked when no --model was given for a server that is not
OpenAI, or when the endpoint said the model asked for is not there."""

from __future__ import annotations

import asyncio

from detcheck.plan import Endpoint

MOST_SHOWN = 20  # a gateway can list thousands: the names shown are the first ones


def served_models(endpoint: Endpoint, timeout_s: float = 10.0) -> tuple[list[str] | None, str]:
    """(the model ids the endpoint lists, in its order; None if it did not answer with a
    list), and why not ('' when it did). An endpoint that cannot be reached at all is an
    EndpointError, as it is for a run."""
    return asyncio.run(_served(endpoint, timeout_s))


async def _served(endpoint: Endpoint, timeout_s: float) -> tuple[list[str] | None, str]:
    import httpx2
    import openai

    from detcheck.send.client import make_client, within
    from detcheck.send.record import error_message_from_body
    from detcheck.shapes._parse import MalformedResponse, load_json
    from detcheck.text import clip, printable, redact

    try:
        async with make_client(endpoint) as client:
            response = await within(
                min(timeout_s, endpoint.timeout_s), client.get("/models", cast_to=httpx2.Response)
            )
            body = response.content
    except openai.APIStatusError as exc:
        body = exc.response.content if exc.response is not None else b""
        message = error_message_from_body(body) or clip(body.decode(errors="replace"), 100)
        why = f"HTTP {exc.status_code}" + (f": {message}" if message else "")
        return None, printable(redact(why, endpoint.secrets))
    except (TimeoutError, asyncio.TimeoutError):
        return None, f"no answer within {min(timeout_s, endpoint.timeout_s):g} s"
    except openai.APIConnectionError as exc:  # nothing there: as a run says it, exit 3
        from detcheck.errors import EndpointError

        cause = redact(str(exc.__cause__ or "").strip() or str(exc), endpoint.secrets)
        failed = f"connection to {endpoint.shown} failed: {clip(cause, 300)}"
        raise EndpointError(
            f"cannot reach {endpoint.shown}: {printable(failed)}. Is the server running, and is "
            "--base-url right?"
        ) from None
    try:
        data = load_json(body)
    except MalformedResponse:
        return None, "HTTP 200, but not JSON"
    listed = data.get("data") if isinstance(data, dict) else None
    if not isinstance(listed, list):
        return None, "HTTP 200, but no list of models"
    ids = [m["id"] for m in listed if isinstance(m, dict) and isinstance(m.get("id"), str)]
    return [printable(clip(redact(i, endpoint.secrets), 200)) for i in ids], ""


def listed(models: list[str]) -> str:
    """'a, b, c' (the first MOST_SHOWN, and how many more)."""
    shown = ", ".join(models[:MOST_SHOWN])
    more = len(models) - MOST_SHOWN
    return shown + (f" and {more:,} more" if more > 0 else "")
