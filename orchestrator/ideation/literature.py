"""The novelty check's literature search: one small protocol (citations.CitationBackend: OpenAlex by
default, Semantic Scholar with or without a key), a local cache of every query and answer, a bound on the
total time spent backing off, and an offline mode that answers from the cache alone.

Every answer fetched is cached under <ORCHESTRATE_HOME>/literature/<backend>/<sha256>.json; a recorded
cache (a JSONL file of the same records, e.g. ideas/sae_ideas.literature.jsonl) can be given as a
read-only seed. Offline — asked for, or after the service could not be reached or kept refusing — a query
not in either cache is not searched: the caller says "novelty not checked" for it, never fails."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from ..citations import CitationBackend, OpenAlexBackend, Paper, SearchFailed, SemanticScholarBackend
from ..errors import InputError

BACKENDS = ("openalex", "semanticscholar", "offline")
DEFAULT_URLS = {"openalex": "https://api.openalex.org", "semanticscholar": "https://api.semanticscholar.org/graph/v1"}


class CachedSearch(BaseModel):
    """One query and its answer, as cached and as a recorded cache's line."""

    backend: str
    query: str
    limit: int = Field(ge=1, le=50)
    papers: list[Paper] = Field(default_factory=list)
    fetched_at: float = 0.0


class Searched(BaseModel):
    """What one search gave: the papers (None: not searched) and where they came from."""

    query: str
    papers: list[Paper] | None
    source: str  # cache, recorded, fetched, offline, unavailable
    requests: int = 0
    waited_s: float = 0.0
    note: str = ""


def _key(backend: str, query: str, limit: int) -> str:
    return hashlib.sha256(json.dumps([backend, " ".join(query.lower().split()), limit]).encode()).hexdigest()


def load_recorded(path: Path) -> dict[str, CachedSearch]:
    """A recorded cache (JSONL of CachedSearch); InputError (exit 2) names a bad line."""
    out: dict[str, CachedSearch] = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(path, f"cannot read the recorded literature cache: {exc.strerror}") from None
    for n, raw in enumerate(lines, 1):
        if not raw.strip() or raw.lstrip().startswith("//"):
            continue
        try:
            rec = CachedSearch.model_validate_json(raw)
        except ValidationError as exc:
            raise InputError(path, f"line {n}: not a cached search ({exc.errors()[0]['msg']})") from None
        out[_key(rec.backend, rec.query, rec.limit)] = rec
    return out


class BoundedWait:
    """The sleep the HTTP client backs off with, bounded in total: past `limit_s` it stops the retries."""

    def __init__(self, limit_s: float, sleep: Callable[[float], None] = time.sleep) -> None:
        self.limit_s, self.sleep, self.waited_s, self.sleeps = limit_s, sleep, 0.0, 0

    def __call__(self, seconds: float) -> None:
        if self.waited_s + seconds > self.limit_s:
            raise SearchFailed(f"backed off {self.waited_s:.1f} s in all; waiting {seconds:.1f} s more would pass "
                               f"the bound of {self.limit_s:.0f} s")
        self.waited_s += seconds
        self.sleeps += 1
        self.sleep(seconds)


def unreachable(url: str, timeout_s: float = 3.0) -> str:
    """Why the service at `url` cannot be reached ("" when a TCP connection opens): checked once before a
    run, so that a machine without network goes offline at once instead of backing off for a minute."""
    import socket
    import urllib.parse

    u = urllib.parse.urlsplit(url)
    port = u.port or (443 if u.scheme == "https" else 80)
    try:
        socket.create_connection((u.hostname or "", port), timeout=timeout_s).close()
    except OSError as exc:
        return f"no network: {u.hostname}:{port} cannot be reached ({exc.__class__.__name__})"
    return ""


def make_backend(kind: str, url: str | None, wait: BoundedWait, *, base_delay_s: float,
                 env: dict[str, str] | None = None) -> CitationBackend | None:
    """The online backend `kind` names (None for offline), backing off through `wait`."""
    env = dict(os.environ) if env is None else env
    # up to 8 tries a query (1 s doubling to 20 s, or the Retry-After up to 20 s); `wait` bounds the total
    http = dict(tries=8, base_delay_s=base_delay_s, max_delay_s=20.0, timeout_s=20.0, sleep=wait)
    if kind == "openalex":
        return OpenAlexBackend(url or DEFAULT_URLS["openalex"], mailto=env.get("OPENALEX_MAILTO"), **http)
    if kind == "semanticscholar":
        return SemanticScholarBackend(url or DEFAULT_URLS["semanticscholar"], api_key=env.get("S2_API_KEY"), **http)
    if kind == "offline":
        return None
    raise InputError(None, f"literature backend: unknown {kind!r} (have: {', '.join(BACKENDS)})")


class Literature:
    """Cache-first search. `name` is the backend whose answers are wanted (offline mode reads its cache)."""

    def __init__(self, name: str, backend: CitationBackend | None, *, cache_dir: Path, wait: BoundedWait,
                 recorded: dict[str, CachedSearch] | None = None, offline_reason: str = "") -> None:
        self.name, self.backend, self.cache_dir, self.wait = name, backend, Path(cache_dir), wait
        self.recorded = recorded or {}
        self.down = offline_reason if backend is None else ""  # why nothing more is fetched
        self.requests = 0
        self.used: list[CachedSearch] = []  # every answer this run read (its folder keeps them: a recorded cache)

    @property
    def online(self) -> bool:
        return self.backend is not None and not self.down

    def _cache_file(self, key: str) -> Path:
        return self.cache_dir / self.name / f"{key}.json"

    def _cached(self, key: str) -> CachedSearch | None:
        f = self._cache_file(key)
        if f.is_symlink() or not f.is_file():
            return None
        try:
            return CachedSearch.model_validate_json(f.read_text(encoding="utf-8"))
        except (OSError, ValidationError):
            return None  # a damaged entry is fetched again

    def _store(self, key: str, rec: CachedSearch) -> None:
        f = self._cache_file(key)
        f.parent.mkdir(parents=True, exist_ok=True)
        tmp = f.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(rec.model_dump_json(), encoding="utf-8")
        os.replace(tmp, f)

    def search(self, query: str, limit: int = 5) -> Searched:
        """The papers for `query`: from the cache, the recorded cache, or the service; never raises."""
        key = _key(self.name, query, limit)
        hit = self._cached(key)
        if hit is not None:
            self.used.append(hit)
            return Searched(query=query, papers=hit.papers, source="cache")
        if key in self.recorded:
            self.used.append(self.recorded[key])
            return Searched(query=query, papers=self.recorded[key].papers, source="recorded")
        if not self.online:
            return Searched(query=query, papers=None, source="offline", note=self.down)
        assert self.backend is not None
        sleeps0, waited0 = self.wait.sleeps, self.wait.waited_s
        try:
            papers = self.backend.search(query, limit=limit)
        except SearchFailed as exc:
            self.down = f"{self.name} unavailable ({exc}); nothing more is searched in this run"
            n = 1 + self.wait.sleeps - sleeps0
            self.requests += n
            return Searched(query=query, papers=None, source="unavailable", requests=n,
                            waited_s=round(self.wait.waited_s - waited0, 3), note=self.down)
        n = 1 + self.wait.sleeps - sleeps0
        self.requests += n
        rec = CachedSearch(backend=self.name, query=query, limit=limit, papers=papers, fetched_at=time.time())
        self._store(key, rec)
        self.used.append(rec)
        return Searched(query=query, papers=papers, source="fetched", requests=n, waited_s=round(self.wait.waited_s - waited0, 3))


def record(searches: Iterable[CachedSearch]) -> str:
    """Cached searches as a recorded cache's JSONL text."""
    return "".join(s.model_dump_json() + "\n" for s in searches)
