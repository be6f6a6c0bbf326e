"""Citation search, pluggable: OpenAlex, Semantic Scholar, or offline (the default).

Neither service is required. Offline — or when a service cannot be reached — the paper cites only
the keys in latex/references.bib, and the stage says so. Online, what a search finds is added to the
workspace's references.bib as ordinary BibTeX entries (and committed), so the paper, the checks and
a later replay all read the same file.

Select with ORCHESTRATE_CITATIONS=offline|openalex|semanticscholar; ORCHESTRATE_CITATIONS_URL points
a client at another base URL (a mirror, or a loopback stub in tests); S2_API_KEY and
OPENALEX_MAILTO are passed on when set."""

from __future__ import annotations

import json
import os
import re
import time
import unicodedata
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, Field

from .env import citation_backend
from .paper.tex import bib_keys


class Bibliographic(BaseModel):
    """What names a paper: enough for a BibTeX entry (a search's Paper, the novelty check's Reference)."""

    title: str
    authors: list[str] = Field(default_factory=list)
    year: int | None = None
    venue: str = ""
    doi: str | None = None
    url: str | None = None


class Paper(Bibliographic):
    """One paper a citation search found, enough for a BibTeX entry."""

    abstract: str = ""  # what the novelty check reads (OpenAlex: rebuilt from its inverted index)

    def key(self) -> str:
        """A BibTeX key from the first author, the year and a title word."""
        first = self.authors[0].split()[-1] if self.authors else "anon"
        word = next((w for w in re.findall(r"[A-Za-z]+", self.title) if len(w) > 3), "paper")
        raw = f"{first}{self.year or ''}{word}".lower()
        return unicodedata.normalize("NFKD", raw).encode("ascii", "ignore").decode()

    def bibtex(self, key: str | None = None) -> str:
        """The paper as a BibTeX entry, special characters escaped."""
        def esc(s: str) -> str:  # found text is data: no backslash or brace reaches LaTeX
            s = s.replace("\\", "").replace("{", "").replace("}", "")
            return s.replace("&", "\\&").replace("%", "\\%").replace("#", "\\#").replace("_", "\\_")

        fields = [("title", "{" + esc(self.title) + "}"), ("author", esc(" and ".join(self.authors) or "Anonymous"))]
        if self.year:
            fields.append(("year", str(self.year)))
        fields.append(("journal", esc(self.venue) if self.venue else "Preprint"))
        if self.doi:
            fields.append(("doi", re.sub(r"[\\{}\s]", "", self.doi)))
        if self.url:
            fields.append(("url", re.sub(r"[\\{}\s%#]", "", self.url)))
        body = ",\n".join(f"  {k:<7} = {{{v}}}" for k, v in fields)
        return f"@article{{{key or self.key()},\n{body}\n}}\n"


class CitationBackend(Protocol):
    """Where citations come from: searched by a query, online or not."""

    name: str
    online: bool

    def search(self, query: str, limit: int = 5) -> list[Paper]:
        """Up to `limit` papers for `query`."""
        ...


class SearchFailed(Exception):
    """A citation search that failed after its retries."""


class OfflineBackend:
    """No citation search: the paper cites only what the template's bibliography has."""

    name = "offline"
    online = False

    def search(self, query: str, limit: int = 5) -> list[Paper]:
        """Nothing: offline search finds no paper."""
        return []


class _HttpClient:
    """GET JSON with bounded retries; 429 and 5xx back off (Retry-After when the server gives one)."""

    def __init__(self, base_url: str, *, headers: Mapping[str, str] | None = None, tries: int = 4,
                 base_delay_s: float = 1.0, max_delay_s: float = 20.0, timeout_s: float = 20.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"User-Agent": "orchestrate-citations/0.1", **(headers or {})}
        self.tries, self.base_delay_s, self.max_delay_s, self.timeout_s = tries, base_delay_s, max_delay_s, timeout_s
        self.sleep = sleep

    def get(self, path: str, params: Mapping[str, str | int]) -> dict:
        """GET a JSON document, retried with backoff on errors; SearchFailed when it keeps failing."""
        url = f"{self.base_url}{path}?{urllib.parse.urlencode(params)}"
        delay = self.base_delay_s
        last = ""
        for attempt in range(1, self.tries + 1):
            req = urllib.request.Request(url, headers=self.headers)
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    return json.loads(resp.read().decode("utf-8"))
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
                if exc.code != 429 and exc.code < 500:
                    raise SearchFailed(f"{self.base_url}: {last}") from None
                retry_after = exc.headers.get("Retry-After") if exc.headers else None
                wait = float(retry_after) if retry_after and retry_after.replace(".", "", 1).isdigit() else delay
            except (urllib.error.URLError, TimeoutError, OSError, json.JSONDecodeError) as exc:
                last = f"{exc.__class__.__name__}: {str(exc)[:120]}"
                wait = delay
            if attempt < self.tries:
                self.sleep(min(wait, self.max_delay_s))
                delay *= 2
        raise SearchFailed(f"{self.base_url}: gave up after {self.tries} tries ({last})")


class OpenAlexBackend:
    """Citations from the OpenAlex API."""

    name = "openalex"
    online = True

    def __init__(self, base_url: str = "https://api.openalex.org", *, mailto: str | None = None, **http) -> None:
        self.http = _HttpClient(base_url, **http)
        self.mailto = mailto

    def search(self, query: str, limit: int = 5) -> list[Paper]:
        """Up to `limit` works OpenAlex finds for `query`."""
        params: dict[str, str | int] = {"search": query, "per-page": limit}
        if self.mailto:
            params["mailto"] = self.mailto
        data = self.http.get("/works", params)
        out = []
        for w in data.get("results", [])[:limit]:
            title = w.get("title") or w.get("display_name")
            if not title:
                continue
            authors = [a.get("author", {}).get("display_name", "") for a in w.get("authorships", [])]
            venue = ((w.get("primary_location") or {}).get("source") or {}).get("display_name") or ""
            doi = (w.get("doi") or "").replace("https://doi.org/", "") or None
            out.append(Paper(title=title, authors=[a for a in authors if a], year=w.get("publication_year"),
                             venue=venue, doi=doi, url=w.get("id"), abstract=_abstract(w.get("abstract_inverted_index"))))
        return out


def _abstract(inverted: object) -> str:
    """OpenAlex's abstract_inverted_index ({word: [positions]}) back into text ("" when absent or malformed)."""
    if not isinstance(inverted, dict):
        return ""
    at: dict[int, str] = {}
    for word, positions in inverted.items():
        for i in positions if isinstance(positions, list) else []:
            if isinstance(i, int) and 0 <= i < 5000:
                at[i] = str(word)
    return " ".join(at[i] for i in sorted(at))


class SemanticScholarBackend:
    """Citations from the Semantic Scholar API."""

    name = "semanticscholar"
    online = True

    def __init__(self, base_url: str = "https://api.semanticscholar.org/graph/v1", *, api_key: str | None = None,
                 **http) -> None:
        headers = {"x-api-key": api_key} if api_key else {}
        self.http = _HttpClient(base_url, headers=headers, **http)

    def search(self, query: str, limit: int = 5) -> list[Paper]:
        """Up to `limit` papers Semantic Scholar finds for `query`."""
        data = self.http.get("/paper/search", {"query": query, "limit": limit,
                                               "fields": "title,authors,year,venue,externalIds,url,abstract"})
        out = []
        for p in data.get("data", [])[:limit]:
            if not p.get("title"):
                continue
            ids = p.get("externalIds") or {}
            out.append(Paper(title=p["title"], authors=[a.get("name", "") for a in p.get("authors", []) if a.get("name")],
                             year=p.get("year"), venue=p.get("venue") or "", doi=ids.get("DOI"), url=p.get("url"),
                             abstract=p.get("abstract") or ""))
        return out


def backend_from_env(env: Mapping[str, str] | None = None) -> CitationBackend:
    """The citation backend $ORCHESTRATE_CITATIONS names (offline by default)."""
    env = os.environ if env is None else env
    kind, url = citation_backend(env)
    if kind == "openalex":
        return OpenAlexBackend(url or "https://api.openalex.org", mailto=env.get("OPENALEX_MAILTO"))
    if kind in ("semanticscholar", "s2"):
        return SemanticScholarBackend(url or "https://api.semanticscholar.org/graph/v1", api_key=env.get("S2_API_KEY"))
    return OfflineBackend()


def add_to_bib(bib_path: Path, papers: list[Paper]) -> list[str]:
    """Append papers not already in the file (same key or same title); returns the keys added."""
    text = bib_path.read_text() if bib_path.exists() else ""
    keys = bib_keys(text)
    titles = {re.sub(r"\W+", "", t).lower() for t in re.findall(r"title\s*=\s*\{+([^}]*)\}", text)}
    added = []
    for p in papers:
        norm = re.sub(r"\W+", "", p.title).lower()
        if norm in titles:
            continue
        key = p.key()
        n = 2
        while key in keys:
            key = f"{p.key()}{chr(ord('a') + n - 2)}"
            n += 1
        text = text.rstrip("\n") + "\n\n" + p.bibtex(key)
        keys.add(key)
        titles.add(norm)
        added.append(key)
    if added:
        bib_path.write_text(text)
    return added


def idea_references(extra: Mapping[str, object]) -> list[Paper]:
    """The candidate references an ideas file gave the idea (`orchestrate ideas`' novelty check: its
    entry's `references`, kept in Idea.extra); entries that are not papers are skipped."""
    refs = extra.get("references")
    out = []
    for r in refs if isinstance(refs, list) else []:
        try:
            out.append(Paper.model_validate({k: v for k, v in r.items() if k in Paper.model_fields and k != "abstract"}))
        except (AttributeError, ValueError):
            continue
    return out


def search_into_bib(backend: CitationBackend, queries: list[str], bib_path: Path, *, limit: int = 5) -> tuple[list[str], str]:
    """(keys added, one line saying what happened). Never raises for a service that is down."""
    if not backend.online:
        n = len(bib_keys(bib_path.read_text())) if bib_path.exists() else 0
        return [], f"citation search: offline; the paper cites only latex/references.bib ({n} entries)"
    found: list[Paper] = []
    try:
        for q in queries:
            found += backend.search(q, limit=limit)
    except SearchFailed as exc:
        return [], f"citation search ({backend.name}) failed, continuing with latex/references.bib: {exc}"
    added = add_to_bib(bib_path, found)
    return added, f"citation search ({backend.name}): {len(found)} found, {len(added)} added to references.bib"
