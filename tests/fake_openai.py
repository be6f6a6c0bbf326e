"""A loopback OpenAI-compatible chat server for tests: serves canned replies in order, streaming or
not, and can answer with an HTTP error or a delay. Standard library only; binds 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Canned:
    content: str = ""
    status: int = 200
    delay_s: float = 0.0
    error: str = ""


@dataclass
class FakeOpenAI:
    replies: list[Canned] = field(default_factory=list)
    requests: list[dict] = field(default_factory=list)
    default: Canned | None = None

    def __post_init__(self) -> None:
        server = self

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
                reply = server.replies.pop(0) if server.replies else server.default
                if reply is None:
                    self._json(500, {"error": {"message": "no canned reply left", "type": "server_error"}})
                    return
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                if reply.status != 200:
                    kind = {401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(reply.status, "server_error")
                    self._json(reply.status, {"error": {"message": reply.error or f"HTTP {reply.status}", "type": kind, "code": kind}})
                    return
                prompt_tokens = sum(len(str(m.get("content", ""))) // 4 for m in body.get("messages", []))
                completion_tokens = max(1, len(reply.content) // 4)
                if body.get("stream"):
                    self._stream(reply.content, body.get("model", "test-model"), prompt_tokens, completion_tokens)
                else:
                    self._json(200, {
                        "id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()),
                        "model": body.get("model", "test-model"),
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.content}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                  "total_tokens": prompt_tokens + completion_tokens},
                    })

            def _json(self, status, obj):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, content, model, pt, ct):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                pieces = [content[i:i + 40] for i in range(0, len(content), 40)] or [""]
                for i, piece in enumerate(pieces):
                    chunk = {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                             "choices": [{"index": 0, "delta": ({"role": "assistant"} if i == 0 else {}) | {"content": piece}, "finish_reason": None}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                end = {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                       "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}}
                self.wfile.write(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode())
                self.wfile.flush()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


if __name__ == "__main__":  # a standalone server for manual checks and benchmarks: replies from a file
    import sys

    texts = [json.loads(line)["response"] for line in open(sys.argv[1]) if '"response"' in line]
    srv = FakeOpenAI(replies=[Canned(content=t) for t in texts])
    print(srv.base_url, flush=True)
    srv.thread.join()
