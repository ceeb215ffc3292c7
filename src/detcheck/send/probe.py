"""`detcheck probe`: what an endpoint honours, found with a handful of requests before a run.

- top_logprobs: ask for 20 and count what comes back;
- system_fingerprint: is one sent;
- seed: is a request with `seed` accepted;
- temperature: are logprobs raw (the same at every temperature), scaled by temperature (gaps
  between tokens shrink as 1/T), or special-cased at 0 (greedy: only the top token keeps mass);
  providers differ here;
- the legacy /v1/completions API: does it answer with logprobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from dataclasses import replace

import httpx2
import openai

from detcheck.config import FlipConfig
from detcheck.errors import EndpointError
from detcheck.plan import Endpoint
from detcheck.send.batch_api import DONE, WINDOW, BatchAPI, given_up
from detcheck.send.client import make_client, within
from detcheck.send.record import error_message_from_body
from detcheck.shapes._parse import MalformedResponse, int_or_none, load_json
from detcheck.text import clip, printable, redact

TEMPERATURES = (0.0, 1.0, 2.0)


async def _send(
    client: openai.AsyncOpenAI, endpoint: Endpoint, path: str, body: dict
) -> tuple[int, bytes]:
    """One request, bounded as flip bounds it (the whole request within --timeout)."""
    try:
        response = await within(
            endpoint.timeout_s, client.post(path, body=body, cast_to=httpx2.Response)
        )
        return response.status_code, response.content
    except openai.APIStatusError as exc:
        return exc.status_code, exc.response.content if exc.response is not None else b""
    except (TimeoutError, asyncio.TimeoutError):
        raise EndpointError(
            f"{endpoint.shown} did not answer within {endpoint.timeout_s:g} s"
        ) from None
    except openai.APIConnectionError as exc:  # nothing to probe: say so as flip does, exit 3
        cause = redact(str(exc.__cause__ or "").strip() or str(exc), endpoint.secrets)
        raise EndpointError(f"connection to {endpoint.shown} failed: {cause}") from None


def _gaps(top: list[dict]) -> dict[str, float]:
    """Each token's logprob minus the top token's (the logit gaps at temperature 1)."""
    if not top or top[0]["logprob"] is None:
        return {}
    first = top[0]["logprob"]
    return {e["token"]: e["logprob"] - first for e in top[1:] if e["logprob"] is not None}


def _refuses_seed(status: int, body: bytes) -> bool:
    """A 4xx whose message names `seed` (e.g. "Unrecognized request argument supplied: seed")."""
    message = error_message_from_body(body) or body[:500].decode(errors="replace")
    return 400 <= status < 500 and "seed" in message.lower()


def temperature_semantics(gaps_by_t: dict[float, dict[str, float]]) -> str:
    g0, g1, g2 = (gaps_by_t.get(t, {}) for t in TEMPERATURES)
    shared = [t for t in g1 if t in g2 and g1[t] < -1e-3]
    if not shared:
        return "unknown"
    ratio = sum(g2[t] / g1[t] for t in shared) / len(shared)
    if abs(ratio - 1) < 0.02:
        semantics = "raw"  # the same logprobs whatever the temperature
    elif abs(ratio - 0.5) < 0.05:
        semantics = "scaled"
    else:
        return f"other (gaps at T=2 are {ratio:.2f}x those at T=1)"
    if not g0 or all(g < -50 for g in g0.values()):
        return f"{semantics}, special-cased at 0 (only the top token keeps mass)"
    shared0 = [t for t in g1 if t in g0]
    if semantics == "scaled" and shared0 and all(abs(g0[t] - g1[t]) < 1e-3 for t in shared0):
        return "scaled, with temperature 0 treated as 1"
    return semantics


def _failure(status: int, body: bytes) -> str:
    """What a request that did not succeed came back with: 'HTTP 404: Not Found'."""
    message = error_message_from_body(body) or clip(body.decode(errors="replace").strip(), 200)
    return f"HTTP {status}" + (f": {message}" if message else "")


def _read(shape, status: int, body: bytes):
    """(parsed, failure): the answer if it carries logprobs; else why not. An answer without
    logprobs is an answer (failure None, parsed None): the endpoint took the request."""
    if status != 200:
        return None, _failure(status, body)
    try:
        return shape.parse(body), None
    except MalformedResponse as exc:
        if exc.kind in ("no_logprobs", "logprobs_refused"):
            return None, None
        return None, f"HTTP 200, but {exc}"


async def probe_endpoint(config: FlipConfig, endpoint: Endpoint) -> dict:
    """What the endpoint honours, asked in `config.api`'s shape (chat unless told otherwise).
    Only what a request showed is claimed: a parameter is accepted when a request carrying it
    succeeded; when the main request fails, everything it would have shown is None (not
    tested) and `untested` says why."""
    out: dict = {"endpoint": endpoint.shown, "model": config.model, "api": config.api}
    main = replace(config, top_logprobs=20)
    shape = main.shape
    if not shape.TAKES_SEED:
        main = replace(main, seed=None)
    async with make_client(endpoint, max_retries=1) as client:
        status, body = await _send(client, endpoint, shape.PATH, main.request_body())
        seed_refused = main.seed is not None and _refuses_seed(status, body)
        if seed_refused:
            # what else the endpoint honours is still worth knowing: ask without seed from here
            main = replace(main, seed=None)
            status, body = await _send(client, endpoint, shape.PATH, main.request_body())
        out["status"] = status
        parsed, failure = _read(shape, status, body)
        answered = failure is None  # a 200 the shape reads, with or without logprobs
        data = load_json(body) if answered else {}
        out["untested"] = failure  # why the rows below say nothing (None: they do)
        if failure:
            out["error"] = failure
        # None: not asked (no seed given, or the API takes none), or not tested
        if seed_refused:
            out["seed_accepted"] = False
        elif main.seed is not None and answered:
            out["seed_accepted"] = True
        else:
            out["seed_accepted"] = None
        out["top_logprobs_requested"] = 20
        out["logprobs"] = (parsed is not None) if answered else None
        returned = len(parsed.top_logprobs) if parsed else 0
        out["top_logprobs_returned"] = returned if answered else None
        fingerprint = data.get("system_fingerprint") if isinstance(data, dict) else None
        out["system_fingerprint"] = bool(fingerprint) if answered else None
        out["fingerprint_value"] = fingerprint if isinstance(fingerprint, str) else None
        if parsed is not None:
            out["temperature_semantics"] = await _temperatures(client, endpoint, main)
        else:
            out["temperature_semantics"] = f"not tested ({failure or 'no logprobs to compare'})"
        legacy = replace(main, api="completions", top_logprobs=5)
        st, b = await _send(client, endpoint, legacy.path, legacy.request_body())
        legacy_parsed, legacy_failure = _read(legacy.shape, st, b)
        out["completions_api"] = legacy_parsed is not None and bool(legacy_parsed.top_logprobs)
        out["completions_api_failure"] = legacy_failure
    return _redacted(out, endpoint.secrets)


async def _temperatures(client, endpoint: Endpoint, main: FlipConfig) -> str:
    """Whether logprobs are raw, scaled by temperature, or special-cased at 0: the same
    request at each of TEMPERATURES. A temperature whose request fails is said so."""
    shape = main.shape
    gaps = {}
    for t in TEMPERATURES:
        body_t = replace(main, temperature=t, top_logprobs=5).request_body()
        st, b = await _send(client, endpoint, shape.PATH, body_t)
        parsed, failure = _read(shape, st, b)
        if failure:
            return f"not tested (at temperature {t:g}: {failure})"
        gaps[t] = _gaps(parsed.top_logprobs) if parsed else {}
    return temperature_semantics(gaps)


def _redacted(value, secrets):
    """The result with every secret an endpoint echoed removed from every text in it."""
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {k: _redacted(v, secrets) for k, v in value.items()}
    return value


def probe(config: FlipConfig, endpoint: Endpoint) -> dict:
    return asyncio.run(probe_endpoint(config, endpoint))


def _seed_row(result: dict) -> str:
    accepted = result["seed_accepted"]
    if accepted is None and result.get("untested"):
        return _untested(result)
    if accepted is None:
        return "not asked (--no-seed, or the API takes none)"
    return "accepted" if accepted else "refused (the other rows: asked without it; flip --no-seed)"


def _untested(result: dict) -> str:
    return f"not tested ({printable(result['untested'])})"


def render(result: dict) -> str:
    from tabulate import tabulate

    untested = result.get("untested")
    if untested:
        seen = {"logprobs": _untested(result), "top_logprobs": _untested(result)}
        seen["system_fingerprint"] = _untested(result)
    else:
        seen = {
            "logprobs": "yes" if result["logprobs"] else "no (the answer carries none)",
            "top_logprobs": f"{result['top_logprobs_returned']} of "
            f"{result['top_logprobs_requested']} asked for",
            "system_fingerprint": printable(result["fingerprint_value"]) or "not sent",
        }
    answer = printable(untested) if untested else f"HTTP {result['status']}"
    rows = [[result.get("api", "chat") + " API", answer], *map(list, seen.items())]
    if result.get("via") == "batch":  # one batch line: what the batch tier's output carries
        rows[0][0] = f"{result.get('api', 'chat')} API via the Batch API"
        rows.append(["batch", f"{printable(result['batch_id'])}: {result['batch_status']}"])
        return tabulate(rows, tablefmt="plain")
    legacy_failure = result.get("completions_api_failure")
    rows += [
        ["seed", _seed_row(result)],
        ["temperature", printable(result["temperature_semantics"])],
        [
            "legacy /v1/completions",
            "answers with logprobs"
            if result["completions_api"]
            else "no" + (f" ({printable(legacy_failure)})" if legacy_failure else ""),
        ],
    ]
    return tabulate(rows, tablefmt="plain")


def usable(result: dict) -> bool:
    """Whether the probe saw what a measurement needs: an answer with logprobs."""
    return bool(result.get("logprobs"))


def probe_batch(config, endpoint, poll_s: float = 15.0, log=None) -> dict:
    """Submit a one-request batch and say what its output line carries: logprobs, how many
    top logprobs of the 20 asked for, a fingerprint. (No provider documents whether batch
    output keeps logprobs: this finds out.) Bounded as a run is: past its window and the
    grace, or in an unknown status, the probe stops and says why."""
    from dataclasses import replace

    config = replace(config, top_logprobs=20)
    return asyncio.run(_probe(config, endpoint, poll_s, log or (lambda message: None)))


async def _probe(config, endpoint, poll_s: float, log) -> dict:
    url = "/v1" + config.path
    line = {"custom_id": "probe", "method": "POST", "url": url, "body": config.request_body()}
    async with BatchAPI(endpoint) as api:
        data = (json.dumps(line) + "\n").encode()
        uploaded = await api.call(
            "uploading the probe",
            lambda: api.client.files.create(file=("detcheck-probe.jsonl", data), purpose="batch"),
        )
        batch = await api.call(
            "creating the probe batch",
            lambda: api.client.batches.create(
                input_file_id=uploaded.id, endpoint=url, completion_window=WINDOW
            ),
            retry=False,
        )
        log(f"batch {batch.id} submitted: one request; waiting (it can take up to {WINDOW})")
        while api.clean(batch.status) not in DONE:
            ended = given_up(batch, api.clean(batch.status))
            if ended is not None:
                raise EndpointError(f"probe batch {batch.id}: {ended[1]}")
            await asyncio.sleep(poll_s)
            batch = await api.call(
                "polling the probe batch",
                functools.partial(api.client.batches.retrieve, batch.id),
            )
        out: dict = {"endpoint": endpoint.shown, "model": config.model, "api": config.api}
        out.update(via="batch", batch_id=api.clean(batch.id), batch_status=api.clean(batch.status))
        answer: dict = {}
        if batch.output_file_id:
            async for raw in api.lines(batch.output_file_id, 1):
                with contextlib.suppress(ValueError, RecursionError, TypeError):
                    loaded = json.loads(raw)
                    answer = loaded if isinstance(loaded, dict) else {}
    response = answer.get("response") if isinstance(answer.get("response"), dict) else {}
    body = response.get("body")
    out["status"] = int_or_none(response.get("status_code"))
    try:
        parsed = config.shape.parse(json.dumps(body).encode()) if body else None
    except MalformedResponse as exc:
        parsed, out["error"] = None, api.clean(exc)
    out["logprobs"] = parsed is not None
    out["top_logprobs_requested"] = 20
    out["top_logprobs_returned"] = len(parsed.top_logprobs) if parsed else 0
    fingerprint = body.get("system_fingerprint") if isinstance(body, dict) else None
    out["system_fingerprint"] = bool(fingerprint)
    out["fingerprint_value"] = api.clean(fingerprint) if isinstance(fingerprint, str) else None
    return out
