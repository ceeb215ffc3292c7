"""Test helpers: a loopback server that replays a recorded run, and assertions with messages that
say what was found. The pytest plugin (`detcheck.pytest_plugin`, registered on install) makes
`replay_server` a fixture, `detcheck_replay`.

    def test_my_client(detcheck_replay):
        client = openai.OpenAI(base_url=detcheck_replay("recordings/my-run"), api_key="unused")
        ...
        detcheck.testing.assert_no_drift("runs/baseline", "runs/today")
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MAX_REQUEST_BYTES = 16 * 1024 * 1024  # what the replay server reads of one request


class ReplayServer:
    """An OpenAI-compatible server on 127.0.0.1 that answers every POST (chat, completions,
    Responses: whatever the recording holds) with the recorded run's next successful response
    body, in the order they were received, wrapping around. `base_url` ends in /v1; `requests`
    holds the JSON bodies it was sent. Use it as a context manager, or call `close()`."""

    def __init__(self, recording: str | Path):
        from detcheck.send.transport import replay_source

        bodies, self.meta = replay_source(Path(recording))
        self._bodies = bodies
        self._next = 0
        self._lock = threading.Lock()
        self.requests: list[dict] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        host, port = self._httpd.server_address[:2]
        self.base_url = f"http://{host}:{port}/v1"

    def _take(self) -> bytes:
        with self._lock:
            body = self._bodies[self._next % len(self._bodies)].as_py()
            self._next += 1
        return body.encode()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                declared = self.headers.get("content-length") or "0"
                if not declared.isdigit() or int(declared) > MAX_REQUEST_BYTES:
                    return self._refuse(400, f"invalid Content-Length: {declared[:40]!r}")
                raw = self.rfile.read(int(declared))
                try:
                    request = json.loads(raw or b"{}")
                except ValueError:
                    request = {"unparsed": raw.decode(errors="replace")}
                server.requests.append(request)
                if isinstance(request, dict) and request.get("stream"):
                    # a recording holds whole bodies: streaming them would be an invention
                    return self._refuse(400, "the replay server does not stream: stream=True")
                self._send(200, server._take())

            def _refuse(self, status: int, message: str) -> None:
                error = {"error": {"message": message, "type": "invalid_request_error"}}
                self._send(status, json.dumps(error).encode())

            def do_GET(self):  # noqa: N802
                model = (server.meta.get("config") or {}).get("model", "recorded")
                listing = {"object": "list", "data": [{"id": model, "object": "model"}]}
                self._send(200, json.dumps(listing).encode())

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:  # quiet: tests read their own output
                pass

        return Handler

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> ReplayServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def assert_no_drift(
    baseline: str | Path,
    candidate: str | Path,
    *,
    fail_on: str | Sequence[str] = "clusters,shares,modal,fingerprints,flips",
    thresholds: float | Sequence[float] | None = None,
    alpha: float = 0.001,
) -> None:
    """Fail, naming each failing finding, when the candidate runs drifted from the baseline's."""
    from detcheck.api import compare

    result = compare(baseline, candidate, fail_on=fail_on, thresholds=thresholds, alpha=alpha)
    if result.drift:
        failing = [f for f in result.findings if f["kind"] in result.data["failing_findings"]]
        lines = "\n".join(f"  {f['kind']}: {f['detail']}" for f in failing or result.findings)
        raise AssertionError(f"detcheck: {candidate} drifted from {baseline}:\n{lines}")


def assert_distinct_at_most(
    path: str | Path | Sequence[str | Path], k: int, *, token: str | None = None
) -> None:
    """Fail when the runs returned more than `k` distinct values of the measured token (for
    generate runs: more than `k` different completions), naming them."""
    from detcheck.api import analyze

    report = analyze(path, token=token)
    if report.get("kind") == "generate":
        found, what = report["unique_completions"], "different completions"
    else:
        found, what = report.distinct, f"distinct {report.target!r} probabilities"
    if found > k:
        values = ""
        if report.get("kind") != "generate":
            shown = [
                f"{v['prob_pct']:.10f}% x{v['count']}" for c in report.clusters for v in c["values"]
            ]
            values = ": " + ", ".join(shown[:10]) + (" ..." if len(shown) > 10 else "")
        raise AssertionError(
            f"detcheck: {found} {what} in {report.n:,} calls, at most {k} expected{values}"
        )
