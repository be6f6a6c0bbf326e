"""A loopback literature API for tests and benchmarks: OpenAlex-shaped `/works?search=` answers (with an
abstract_inverted_index), and a 429 storm mode (the first `storm` requests, or all with storm=-1, answered
429 with a Retry-After). Standard library only; binds 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def work(title: str, year: int = 2024, abstract: str = "", doi: str | None = None) -> dict:
    """One OpenAlex work record."""
    inverted: dict[str, list[int]] = {}
    for i, w in enumerate(abstract.split()):
        inverted.setdefault(w, []).append(i)
    return {"id": f"https://openalex.org/W{abs(hash(title)) % 10**9}", "title": title, "display_name": title,
            "publication_year": year, "doi": f"https://doi.org/{doi}" if doi else None,
            "authorships": [{"author": {"display_name": "Ada Lovelace"}}],
            "primary_location": {"source": {"display_name": "Journal of Tests"}},
            "abstract_inverted_index": inverted or None}


def s2_paper(w: dict) -> dict:
    """An OpenAlex work as Semantic Scholar would give it."""
    inv = w.get("abstract_inverted_index") or {}
    words = sorted((i, word) for word, pos in inv.items() for i in pos)
    return {"paperId": w["id"][-9:], "title": w["title"], "year": w["publication_year"], "venue": "Journal of Tests",
            "authors": [{"name": a["author"]["display_name"]} for a in w["authorships"]],
            "externalIds": {"DOI": w["doi"].removeprefix("https://doi.org/")} if w.get("doi") else {},
            "url": f"https://www.semanticscholar.org/paper/{w['id'][-9:]}", "abstract": " ".join(x for _, x in words) or None}


@dataclass
class FakeLiterature:
    answers: dict[str, list[dict]] = field(default_factory=dict)  # query -> works; others get generated works
    storm: int = 0  # 429s before answering (-1: always)
    retry_after: str | None = "0.05"
    status: int = 429
    requests: list[str] = field(default_factory=list)  # the search terms, in order (429s too)
    arrivals: list[float] = field(default_factory=list)
    api_keys: list[str | None] = field(default_factory=list)  # Semantic Scholar's x-api-key of each request

    def __post_init__(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                url = urllib.parse.urlparse(self.path)
                q = urllib.parse.parse_qs(url.query)
                term = (q.get("search") or q.get("query") or [""])[0]
                server.requests.append(term)
                server.arrivals.append(time.monotonic())
                server.api_keys.append(self.headers.get("x-api-key"))
                if server.storm and (server.storm < 0 or len(server.requests) <= server.storm):
                    headers = {"Retry-After": server.retry_after} if server.retry_after else {}
                    self._json(server.status, {"error": "rate limited"}, headers)
                    return
                works = server.answers.get(term) or [
                    work(f"{term}: a study {k}", 2020 + k, f"We study {term} in setting {k}.") for k in range(1, 4)]
                if url.path.endswith("/paper/search"):  # Semantic Scholar's shape
                    limit = int((q.get("limit") or ["5"])[0])
                    self._json(200, {"total": len(works), "data": [s2_paper(w) for w in works[:limit]]})
                elif url.path.endswith("/works"):
                    per_page = int((q.get("per-page") or ["5"])[0])
                    self._json(200, {"meta": {"count": len(works)}, "results": works[:per_page]})
                else:
                    self._json(404, {"error": "not found"})

            def _json(self, status, obj, headers=None):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def base_url(self) -> str:
        """What ORCHESTRATE_LITERATURE_URL points at (OpenAlex's base: /works is under it)."""
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
