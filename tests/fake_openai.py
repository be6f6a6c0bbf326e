"""A loopback OpenAI-compatible chat server for tests: serves canned replies in order, streaming or
not, and can answer with an HTTP error (with a `Retry-After`), a delay, a hang, or a broken reply
(empty, null or no-choice, invalid JSON). Takes image content parts (a message whose content is a list
with {"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}): `images(request)`
decodes what a request carried. Standard library only; binds 127.0.0.1."""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

# ok: the content as the reply; empty: content ""; null: content null; no_choices: an empty choices list;
# invalid_json: a body (or a stream chunk) that is not JSON.
Shape = Literal["ok", "empty", "null", "no_choices", "invalid_json"]
ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_api_key", 403: "permission_denied", 422: "invalid_request_error",
               429: "rate_limit_exceeded"}


IMAGE_TOKENS = 85  # what a provider bills an image at low detail; its base64 is not text


def images(request: dict) -> list[tuple[str, bytes]]:
    """Every image content part of a recorded request, in order: (media type, the decoded bytes)."""
    out = []
    for m in request.get("messages", []):
        if isinstance(m.get("content"), list):
            for p in m["content"]:
                if isinstance(p, dict) and p.get("type") == "image_url":
                    url = p["image_url"]["url"] if isinstance(p.get("image_url"), dict) else p.get("image_url", "")
                    head, _, data = url.partition(",")
                    if head.startswith("data:") and head.endswith(";base64"):
                        out.append((head[5:-7], base64.b64decode(data)))
    return out


def texts(request: dict) -> str:
    """A recorded request's text, its messages' string contents and text parts joined."""
    out = []
    for m in request.get("messages", []):
        c = m.get("content")
        out += [c] if isinstance(c, str) else [str(p.get("text", "")) for p in c or [] if isinstance(p, dict)]
    return "\n".join(out)


def _tokens(content) -> int:
    if isinstance(content, list):
        return sum(IMAGE_TOKENS if isinstance(p, dict) and p.get("type") == "image_url" else len(str(p.get("text", ""))) // 4
                   for p in content if isinstance(p, dict))
    return len(str(content)) // 4


@dataclass
class Canned:
    content: str = ""
    status: int = 200
    delay_s: float = 0.0
    error: str = ""
    retry_after: str | None = None  # the Retry-After header of an error reply
    shape: Shape = "ok"
    hang: bool = False  # never answer (until the server closes)
    code: str | None = None  # the error's code, e.g. context_length_exceeded


@dataclass
class FakeOpenAI:
    replies: list[Canned] = field(default_factory=list)
    requests: list[dict] = field(default_factory=list)
    default: Canned | None = None
    arrivals: list[float] = field(default_factory=list)  # time.monotonic() of each request

    def __post_init__(self) -> None:
        server = self
        self.closing = threading.Event()
        self.received = threading.Event()  # set at every request (a test waits on it, then clears it)

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                if self.path.rstrip("/").endswith("/models"):
                    self._json(200, {"object": "list", "data": [{"id": "test-model", "object": "model"}]})
                else:
                    self._json(404, {"error": {"message": "not found"}})

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                server.requests.append(body)
                server.arrivals.append(time.monotonic())
                server.received.set()
                reply = server.replies.pop(0) if server.replies else server.default
                if reply is None:
                    self._json(500, {"error": {"message": "no canned reply left", "type": "server_error"}})
                    return
                if reply.hang:
                    server.closing.wait()
                    return
                if reply.delay_s:
                    server.closing.wait(reply.delay_s)
                if reply.status != 200:
                    kind = ERROR_TYPES.get(reply.status, "server_error")
                    headers = {"Retry-After": reply.retry_after} if reply.retry_after else {}
                    self._json(reply.status, {"error": {"message": reply.error or f"HTTP {reply.status}", "type": kind,
                                                        "code": reply.code or kind}}, headers)
                    return
                prompt_tokens = sum(_tokens(m.get("content", "")) for m in body.get("messages", []))
                completion_tokens = max(1, len(reply.content) // 4)
                if body.get("stream"):
                    self._stream(reply, body.get("model", "test-model"), prompt_tokens, completion_tokens)
                    return
                if reply.shape == "invalid_json":
                    self._raw(200, b'{"id": "chatcmpl-test", "choices": [{"index": 0, "message": {"role": "assis',
                              "application/json")
                    return
                message = {"role": "assistant", "content": {"ok": reply.content, "empty": "", "null": None}.get(reply.shape)}
                choices = [] if reply.shape == "no_choices" else [{"index": 0, "message": message, "finish_reason": "stop"}]
                self._json(200, {
                    "id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()),
                    "model": body.get("model", "test-model"), "choices": choices,
                    "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                              "total_tokens": prompt_tokens + completion_tokens},
                })

            def _json(self, status, obj, headers=None):
                self._raw(status, json.dumps(obj).encode(), "application/json", headers)

            def _raw(self, status, data, ctype, headers=None):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, reply, model, pt, ct):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                content = reply.content if reply.shape == "ok" else ""

                def chunk(choices, **extra):
                    return {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                            "choices": choices, **extra}

                if reply.shape == "invalid_json":
                    self.wfile.write(b'data: {"id": "chatcmpl-test", "choices": [{"delta": {"content": "half\n\n')
                elif reply.shape == "no_choices":
                    self.wfile.write(f"data: {json.dumps(chunk([]))}\n\n".encode())
                else:
                    pieces = [content[i:i + 40] for i in range(0, len(content), 40)] or [None if reply.shape == "null" else ""]
                    for i, piece in enumerate(pieces):
                        delta = ({"role": "assistant"} if i == 0 else {}) | {"content": piece}
                        data = json.dumps(chunk([{"index": 0, "delta": delta, "finish_reason": None}]))
                        self.wfile.write(f"data: {data}\n\n".encode())
                end = chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}],
                            usage={"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct})
                self.wfile.write(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode())
                self.wfile.flush()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()


if __name__ == "__main__":  # a standalone server for manual checks and benchmarks: replies from a file
    import sys

    texts = [json.loads(line)["response"] for line in open(sys.argv[1]) if '"response"' in line]
    srv = FakeOpenAI(replies=[Canned(content=t) for t in texts])
    print(srv.base_url, flush=True)
    srv.thread.join()
