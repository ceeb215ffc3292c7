"""A fake OpenAI Batch API on 127.0.0.1, for the real `openai` SDK: files uploaded as multipart,
batches created, listed, retrieved and cancelled, file content downloaded.

What it models: a batch is `validating`, then `in_progress` for `seconds` (its completed count
rising with time), then `completed` (or `expired` at `expire_after` lines: what ran is kept);
each line is answered by `respond(i, body)` (a chat body with logprobs by default), and lines
`fail(i)` picks go to the error file (`status_code` 500) instead. A cancel ends it `cancelled`,
keeping the lines already done. What it does not model: the 24 h window, the real limits,
rate limits on batch creation, or whether OpenAI's batch output carries logprobs at all.

A hostile Batch API, for the tests that it must not cost twice or hang: `slow_creates` creates
answered only after `create_delay_s` (the batch exists already), `tamper(k, lines)` rewrites the
output lines of the k-th batch (torn, foreign, not objects), `lose_output` names an output file
that 404s, `counts_without_completed`, `stuck(k)` a status the k-th batch keeps for ever (with its
`expires_at` long past), `drip_retrieves` retrieves that answer a byte at a time, `gzip_output`
output served gzip-encoded, `refuse_upload` a 401 on upload that echoes the key, `error_message`
failed lines whose message it is. Every request's method, path, query and Authorization header
is kept in `requests`; `/v1/chat/completions` answers online, for the online path's URL tests.
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from fake_openai import COIN_LOGPROBS, chat_body


def coin_line(i: int, body: dict) -> dict:
    return chat_body(i, COIN_LOGPROBS[i % len(COIN_LOGPROBS)], top_k=body.get("top_logprobs", 20))


class FakeBatchAPI:
    def __init__(
        self,
        seconds: float = 0.5,
        respond: Callable[[int, dict], dict] = coin_line,
        fail: Callable[[int], bool] = lambda i: False,
        expire_after: int | None = None,
        fail_as_error: bool = False,
        slow_creates: int = 0,
        create_delay_s: float = 0.0,
        tamper: Callable[[int, list[str]], list[str]] | None = None,
        lose_output: Callable[[int], bool] = lambda k: False,
        counts_without_completed: bool = False,
        stuck: Callable[[int], str | None] = lambda k: None,
        drip_retrieves: int = 0,
        gzip_output: Callable[[bytes], bytes] | None = None,
        refuse_upload: bool = False,
        error_message: str = "line failed",
        error_code: str = "server_error",
        phase_delay_s: float = 0.0,
        break_downloads: int = 0,
    ):
        self.break_downloads = break_downloads  # output downloads cut off half-way
        self.error_code = error_code
        # every upload, create and download takes this long (a soak kills inside them)
        self.phase_delay_s = phase_delay_s
        self.ok_lines: Counter = Counter()  # custom_id -> lines that ran and answered 200
        self.slow_creates, self.create_delay_s = slow_creates, create_delay_s
        self.tamper, self.lose_output, self.stuck = tamper, lose_output, stuck
        self.counts_without_completed = counts_without_completed
        self.drip_retrieves, self.gzip_output = drip_retrieves, gzip_output
        self.refuse_upload, self.error_message = refuse_upload, error_message
        self.requests: list[tuple[str, str, str, str | None]] = []
        self.drips_abandoned = 0  # dripped answers the client gave up on
        self.paid_lines = 0  # lines a batch ran (what a provider bills)
        self.sent_ids: list[str] = []  # every custom_id of every batch created, in order
        self.fail_as_error = fail_as_error  # a failed line: no response, only an `error` object
        self.seconds, self.respond, self.fail, self.expire_after = (
            seconds,
            respond,
            fail,
            expire_after,
        )
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.created = 0  # batches created: a resume must not add one
        self.cancelled = 0
        self._ids = itertools.count()
        self._lines = itertools.count()  # every line answered, across batches
        self._lock = threading.Lock()

    # -- the batch lifecycle -----------------------------------------------------------------
    def _view(self, batch: dict) -> dict:
        """The batch as the API shows it now, finishing it when its time is up."""
        with self._lock:
            held = self.stuck(batch["_index"])
            if held is not None and batch["status"] != "cancelling":
                batch["status"] = held
                batch["expires_at"] = int(batch["_t0"]) - 2 * 86400  # long past its window
            elif batch["status"] in ("validating", "in_progress", "cancelling"):
                elapsed = time.time() - batch["_t0"]
                total = len(batch["lines"])
                if batch["status"] == "cancelling":
                    self._finish(batch, "cancelled", batch["done_at_cancel"])
                elif elapsed < 0.1:
                    batch["status"] = "validating"
                elif elapsed < self.seconds:
                    batch["status"] = "in_progress"
                else:
                    ran = total if self.expire_after is None else min(total, self.expire_after)
                    self._finish(batch, "completed" if ran == total else "expired", ran)
            done = len(batch.get("answered", ())) if batch["status"] not in (
                "validating", "in_progress") else self._progress(batch)  # fmt: skip
            view = {
                k: v
                for k, v in batch.items()
                if k[0] != "_" and k not in ("lines", "answered", "done_at_cancel", "failed_count")
            }
            failed = batch.get("failed_count", 0)
            view["request_counts"] = {
                "total": len(batch["lines"]),
                "completed": done - failed,
                "failed": failed,
            }
            if self.counts_without_completed:
                del view["request_counts"]["completed"]
            return view

    def _progress(self, batch: dict) -> int:
        share = min(1.0, (time.time() - batch["_t0"]) / max(self.seconds, 1e-9))
        return int(len(batch["lines"]) * share)

    def _finish(self, batch: dict, status: str, ran: int) -> None:
        outputs, errors = [], []
        self.paid_lines += ran
        for line in batch["lines"][:ran]:
            i = next(self._lines)
            if self.fail(i) and self.fail_as_error:
                error = {"code": self.error_code, "message": self.error_message}
                errors.append(
                    {
                        "id": f"resp-{i}",
                        "custom_id": line["custom_id"],
                        "response": None,
                        "error": error,
                    }
                )
            elif self.fail(i):
                errors.append({"id": f"resp-{i}", "custom_id": line["custom_id"],
                               "response": {"status_code": 500, "request_id": f"req-{i}",
                                            "body": {"error": {"message": self.error_message}}},
                               "error": None})  # fmt: skip
            else:
                self.ok_lines[line["custom_id"]] += 1
                outputs.append({"id": f"resp-{i}", "custom_id": line["custom_id"],
                                "response": {"status_code": 200, "request_id": f"req-{i}",
                                             "body": self.respond(i, line["body"])},
                                "error": None})  # fmt: skip
        batch["answered"] = [x["custom_id"] for x in outputs + errors]
        batch["failed_count"] = len(errors)
        raw_lines = [json.dumps(x) for x in outputs]
        if self.tamper is not None:
            raw_lines = self.tamper(batch["_index"], raw_lines)
        batch["output_file_id"] = self._store_raw(raw_lines) if raw_lines else None
        if batch["output_file_id"] and self.lose_output(batch["_index"]):
            del self.files[batch["output_file_id"]]
        batch["error_file_id"] = self._store(errors) if errors else None
        batch["status"] = status
        batch[f"{status}_at"] = int(time.time())

    def _store(self, lines: list[dict]) -> str:
        return self._store_raw([json.dumps(x) for x in lines])

    def _store_raw(self, lines: list[str]) -> str:
        file_id = f"file-out-{next(self._ids)}"
        self.files[file_id] = "".join(x + "\n" for x in lines).encode()
        return file_id

    # -- HTTP ---------------------------------------------------------------------------------
    def __enter__(self) -> FakeBatchAPI:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _json(self, status: int, data) -> None:
                body = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _note(self) -> str:
                path, _, query = self.path.partition("?")
                fake.requests.append((self.command, path, query, self.headers.get("authorization")))
                return path

            def do_POST(self):  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                path = self._note()
                time.sleep(fake.phase_delay_s)
                if path == "/v1/files" and fake.refuse_upload:
                    key = self.headers.get("authorization", "")
                    message = f"Incorrect API key provided: {key.removeprefix('Bearer ')}."
                    return self._json(401, {"error": {"message": message, "code": "invalid"}})
                if path == "/v1/files":
                    return self._json(200, fake._upload(self.headers["content-type"], raw))
                if path == "/v1/chat/completions":
                    return self._json(200, coin_line(len(fake.requests), json.loads(raw)))
                if path == "/v1/batches":
                    view = fake._create(json.loads(raw))
                    if fake.slow_creates > 0:  # created, but answered after the client gave up
                        fake.slow_creates -= 1
                        time.sleep(fake.create_delay_s)
                    with contextlib.suppress(OSError):
                        self._json(200, view)
                    return None
                if self.path.startswith("/v1/batches/") and self.path.endswith("/cancel"):
                    return self._json(200, fake._cancel(self.path.split("/")[3]))
                self._json(404, {"error": {"message": f"no route {self.path}"}})

            def _drip(self, data) -> None:
                body = json.dumps(data).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                try:
                    for i in range(len(body)):
                        self.wfile.write(body[i : i + 1])
                        self.wfile.flush()
                        time.sleep(0.5)
                except OSError:
                    fake.drips_abandoned += 1

            def do_GET(self):  # noqa: N802
                if self.path.split("?")[0] == "/v1/models":  # as OpenAI lists its models
                    listed = [{"id": "gpt-4o-2024-08-06", "object": "model"}]
                    return self._json(200, {"object": "list", "data": listed})
                parts = self._note().strip("/").split("/")
                if parts[:2] == ["v1", "batches"] and len(parts) == 2:
                    data = [fake._view(b) for b in reversed(list(fake.batches.values()))]
                    return self._json(200, {"object": "list", "data": data, "has_more": False})
                if parts[:2] == ["v1", "batches"] and len(parts) == 3:
                    batch = fake.batches.get(parts[2])
                    if batch and fake.drip_retrieves > 0:
                        fake.drip_retrieves -= 1
                        return self._drip(fake._view(batch))
                    return self._json(200, fake._view(batch)) if batch else self._json(404, {})
                if parts[:2] == ["v1", "files"] and len(parts) == 4 and parts[3] == "content":
                    time.sleep(fake.phase_delay_s)
                    content = fake.files.get(parts[2])
                    if content is None:
                        return self._json(404, {"error": {"message": "no such file"}})
                    self.send_response(200)
                    self.send_header("content-type", "application/octet-stream")
                    if fake.gzip_output is not None and parts[2].startswith("file-out"):
                        content = fake.gzip_output(content)
                        self.send_header("content-encoding", "gzip")
                    self.send_header("content-length", str(len(content)))
                    self.end_headers()
                    if fake.break_downloads > 0 and parts[2].startswith("file-out"):
                        fake.break_downloads -= 1
                        content = content[: len(content) // 2]
                        self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.wfile.write(content)
                    return None
                self._json(404, {"error": {"message": f"no route {self.path}"}})

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _upload(self, content_type: str, raw: bytes) -> dict:
        message = email.parser.BytesParser(policy=email.policy.default).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw
        )
        fields = {
            part.get_param("name", header="content-disposition"): part
            for part in message.iter_parts()
        }
        assert fields["purpose"].get_content().strip() == "batch"
        data = fields["file"].get_payload(decode=True)
        file_id = f"file-in-{next(self._ids)}"
        self.files[file_id] = data
        return {
            "id": file_id, "object": "file", "bytes": len(data), "created_at": int(time.time()),
            "filename": fields["file"].get_filename(), "purpose": "batch", "status": "processed",
        }  # fmt: skip

    def _create(self, request: dict) -> dict:
        lines = [
            json.loads(x) for x in self.files[request["input_file_id"]].decode().splitlines() if x
        ]
        assert all(x["url"] == request["endpoint"] and x["method"] == "POST" for x in lines)
        batch_id = f"batch_{next(self._ids)}"
        self.sent_ids += [x["custom_id"] for x in lines]
        self.batches[batch_id] = {
            "_index": len(self.batches),
            "expires_at": int(time.time()) + 86400,
            "id": batch_id, "object": "batch", "endpoint": request["endpoint"],
            "input_file_id": request["input_file_id"],
            "completion_window": request["completion_window"], "status": "validating",
            "created_at": int(time.time()), "_t0": time.time(), "output_file_id": None,
            "error_file_id": None, "metadata": request.get("metadata"), "lines": lines,
        }  # fmt: skip
        self.created += 1
        return self._view(self.batches[batch_id])

    def _cancel(self, batch_id: str) -> dict:
        batch = self.batches[batch_id]
        with self._lock:
            if batch["status"] in ("validating", "in_progress"):
                batch["done_at_cancel"] = self._progress(batch)
                batch["status"] = "cancelling"
                self.cancelled += 1
        return self._view(batch)
