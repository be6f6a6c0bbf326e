"""The HTML report: one self-contained file (inline CSS, JS and SVG; images as data URIs; no network).

Built from the timeline (the journal) plus the files the journal points at: the workspace's figures,
notes.txt, the paper and review.json."""

from __future__ import annotations

import base64
import fnmatch
import json
import mimetypes
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from ..formatting import delta, fmt_num, fmt_tokens, fmt_wall
from ..paths import readable
from ..run_files import diff_base, log_tail, run_diff
from ..search.render import BEST, search_view
from ..template import BASELINE_RUN
from ..timeline import Timeline, build
from ..workspace import Workspace
from . import charts

TEMPLATES = Path(__file__).parent / "templates"
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif", ".svg": "image/svg+xml",
               ".webp": "image/webp"}
MAX_IMAGE_BYTES = 8_000_000  # a figure larger than this is linked, not embedded
REVIEW_ORDER = ["Summary", "Strengths", "Weaknesses", "Questions", "Limitations", "Ethical Concerns", "Soundness",
                "Presentation", "Contribution", "Overall", "Confidence", "Originality", "Quality", "Clarity",
                "Significance", "Decision"]
REVIEW_SCORES = {"soundness", "presentation", "contribution", "overall", "confidence", "originality", "quality",
                 "clarity", "significance", "decision"}


@dataclass
class Options:
    """How much of the paper the report embeds, and how many log lines."""

    pdf_pages: int = 8  # paper pages rendered as images (0: none)
    pdf_dpi: int = 60
    log_lines: int = 20


@dataclass
class Figure:
    """One figure in the report: embedded or linked."""

    name: str
    src: str  # a data URI, or a relative link when too large to embed
    embedded: bool
    detail: str = ""


@dataclass
class Paper:
    """The paper in the report: its PDF link, page images and source."""

    pdf: str | None = None  # link relative to the report
    pdf_name: str | None = None
    pages: list[str] = field(default_factory=list)  # data URIs
    pages_note: str = ""
    tex: str | None = None


def data_uri(path: Path) -> str:
    """The file as a data: URI, to embed it in the report."""
    mime = IMAGE_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _rel(target: Path, out_dir: Path) -> str:
    return Path(os.path.relpath(target, out_dir)).as_posix()


def _inside(root: Path, rel: str) -> Path | None:
    """A workspace file to embed, never through a link (paths.readable)."""
    return readable(root, rel)


def collect_figures(tl: Timeline, out_dir: Path) -> list[Figure]:
    """Figures the plots stage recorded (Artifact kind figure); else the manifest's figure globs in the workspace."""
    paths: list[tuple[Path, str]] = []
    latest = {a.path: a for a in tl.artifacts if a.kind in ("figure", "plot")}  # the last check of each figure decides
    for a in latest.values():
        p = _inside(tl.root, a.path)
        if a.ok and p is not None and p.is_file() and p not in [x for x, _ in paths]:
            paths.append((p, a.detail))
    if not paths and not latest:
        for pat in tl.figures or ["*.png"]:
            for found in sorted(tl.root.glob(pat)):
                rel = found.relative_to(tl.root).as_posix()
                p = _inside(tl.root, rel)
                if p is not None and p.is_file() and p.suffix.lower() in IMAGE_TYPES \
                        and not rel.startswith((".", f"{BASELINE_RUN}/")) \
                        and p not in [x for x, _ in paths] and not fnmatch.fnmatch(rel, "report*"):
                    paths.append((p, ""))
    out = []
    for p, detail in paths:
        if p.suffix.lower() not in IMAGE_TYPES:
            continue
        if p.stat().st_size <= MAX_IMAGE_BYTES:
            out.append(Figure(name=p.relative_to(tl.root).as_posix(), src=data_uri(p), embedded=True, detail=detail))
        else:
            out.append(Figure(name=p.relative_to(tl.root).as_posix(), src=_rel(p, out_dir), embedded=False, detail=detail))
    return out


def _find_pdf(tl: Timeline) -> Path | None:
    for a in reversed(tl.artifacts):
        if a.path.lower().endswith(".pdf") and a.ok:
            p = _inside(tl.root, a.path)
            if p is not None and p.is_file():
                return p
    return _first(tl.root, ("paper.pdf", "latex/paper.pdf", "*.pdf", "latex/*.pdf", "paper/*.pdf"))


def _first(root: Path, patterns: tuple[str, ...]) -> Path | None:
    """The first file a pattern finds that is safe to read (no link, inside the workspace)."""
    for pat in patterns:
        for found in sorted(root.glob(pat)):
            p = _inside(root, found.relative_to(root).as_posix())
            if p is not None and p.is_file():
                return p
    return None


def _find_tex(tl: Timeline) -> Path | None:
    return _first(tl.root, ("paper.tex", "latex/paper.tex", "latex/template.tex", "paper/*.tex"))


def pdf_pages(pdf: Path, pages: int, dpi: int) -> tuple[list[str], str]:
    """The first `pages` pages as PNG data URIs via pdftoppm; ([], why) when that cannot be done."""
    from ..runner import tool

    if pages <= 0:
        return [], "page images not requested"
    if shutil.which("pdftoppm") is None:
        return [], "pdftoppm (poppler-utils) is not installed: no page images"
    with tempfile.TemporaryDirectory(prefix="orchestrate-report-") as tmp:
        res = tool(["pdftoppm", "-png", "-r", str(dpi), "-f", "1", "-l", str(pages), str(pdf), f"{tmp}/page"], timeout_s=120)
        if res.exit_code != 0:
            return [], f"pdftoppm failed: {res.stderr.strip()[:200]}"
        files = sorted(Path(tmp).glob("page*.png"), key=lambda p: int(p.stem.split("-")[-1]))
        return [data_uri(p) for p in files], ""


def collect_paper(tl: Timeline, out_dir: Path, opts: Options) -> Paper:
    """The paper the report shows: the PDF, its first pages as images, or the LaTeX source."""
    paper = Paper()
    pdf = _find_pdf(tl)
    if pdf is not None:
        paper.pdf, paper.pdf_name = _rel(pdf, out_dir), pdf.relative_to(tl.root).as_posix()
        paper.pages, paper.pages_note = pdf_pages(pdf, opts.pdf_pages, opts.pdf_dpi)
    tex = _find_tex(tl)
    if tex is not None:
        paper.tex = tex.relative_to(tl.root).as_posix()
    return paper


def load_review(tl: Timeline) -> tuple[str | None, Any]:
    """(relative path, parsed review.json) or (None, None)."""
    cands = [a.path for a in reversed(tl.artifacts) if a.kind == "review" and a.path.endswith(".json")]
    cands += ["review.json", ".orchestrate/review.json", "review.txt"]
    for rel in cands:
        p = _inside(tl.root, rel)
        if p is not None and p.is_file():
            try:
                return rel, json.loads(p.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
    return None, None


def review_view(data: Any) -> dict[str, Any] | None:
    """Split a review into the scores, the prose fields and the integrity findings, whatever its exact keys."""
    if not isinstance(data, dict):
        return None
    body = data.get("review") if isinstance(data.get("review"), dict) else data
    lower = {str(k).lower(): k for k in body}
    scores, fields = [], []
    used = set()
    for name in REVIEW_ORDER:
        key = lower.get(name.lower()) or lower.get(name.lower().replace(" ", "_"))
        if key is None:
            continue
        used.add(key)
        (scores if name.lower() in REVIEW_SCORES else fields).append((name, body[key]))
    integrity = None
    for k in ("integrity", "integrity_findings", "findings", "integrity_checks"):
        for src in (data, body):
            if isinstance(src, dict) and k in src:
                integrity = src[k]
                used.add(k)
                break
        if integrity is not None:
            break
    findings: list[dict[str, Any]] = []
    stats: list[str] = []
    if isinstance(integrity, dict) and isinstance(integrity.get("findings"), list):
        # the review stage's IntegrityReport: findings, numbers checked/matched, notes on skipped checks
        findings = [_finding(None, it) for it in integrity["findings"]]
        if integrity.get("numbers_checked"):
            stats.append(f"{integrity.get('numbers_matched', 0)} of {integrity['numbers_checked']} numbers in the paper "
                         "match a validated run")
        stats += [str(n) for n in integrity.get("notes") or []]
    elif isinstance(integrity, dict):
        for kind, items in integrity.items():
            if isinstance(items, list):
                findings += [_finding(kind, it) for it in items]
            elif items not in (None, [], {}, ""):
                findings.append(_finding(kind, items))
    elif isinstance(integrity, list):
        findings = [_finding(None, it) for it in integrity]
    order = {"error": 0, "warning": 1, "note": 2}
    findings.sort(key=lambda f: order.get(f["severity"], 1))
    skip = {"review", "attempts", "integrity"}
    rest = {k: v for k, v in body.items() if k not in used and k not in skip}
    if body is not data:
        rest.update({k: v for k, v in data.items() if k not in used and k not in skip and k not in ("review_skipped",)})
    skipped = data.get("review_skipped") if isinstance(data.get("review_skipped"), str) else ""
    return {"scores": scores, "fields": fields, "findings": findings, "integrity_known": integrity is not None,
            "stats": stats, "skipped": skipped, "rest": rest}


def _finding(kind: str | None, item: Any) -> dict[str, Any]:
    if isinstance(item, dict):
        text = item.get("message") or item.get("text") or item.get("detail") or item.get("problem") or json.dumps(item)
        where = item.get("where")
        return {"kind": item.get("kind") or item.get("type") or kind or "finding",
                "text": str(text) + (f" ({where})" if where else ""),
                "severity": str(item.get("severity") or item.get("level") or "")}
    return {"kind": kind or "finding", "text": str(item), "severity": ""}


def diff_lines(diff: str) -> list[tuple[str, str]]:
    """(css class, line) for a unified diff."""
    out = []
    for line in diff.splitlines():
        if line.startswith(("diff --git", "index ", "--- ", "+++ ", "new file", "deleted file")):
            cls = "meta"
        elif line.startswith("@@"):
            cls = "hunk"
        elif line.startswith("+"):
            cls = "add"
        elif line.startswith("-"):
            cls = "del"
        else:
            cls = "ctx"
        out.append((cls, line))
    return out


def _runs(tl: Timeline, ws: Workspace, opts: Options) -> list[dict[str, Any]]:
    ablations = {a.run.run: a for a in tl.ablations}
    out = []
    for r in tl.runs:
        attempts = []
        for a in r.attempts:
            phases = []
            for p in a.phases:
                tails = []
                if p.status != "ok":
                    for name in ("stderr.txt", "stdout.txt"):
                        t = log_tail(tl.root, p.log_dir, name, opts.log_lines)
                        if t and t.strip():
                            tails.append((f"{p.log_dir}/{name}", t))
                    if not tails and p.feedback:
                        fb = p.feedback.get("traceback") or p.feedback.get("stderr_tail") or p.feedback.get("stdout_tail")
                        if fb:
                            tails.append(("recorded error", str(fb)))
                phases.append({"p": p, "tails": tails})
            attempts.append({"a": a, "phases": phases})
        diff = run_diff(tl, r, ws)
        out.append({"r": r, "attempts": attempts, "diff": diff_lines(diff), "metrics": r.metrics,
                    "ablation": ablations.get(r.run),
                    "rows": tl.run_metrics(r) if r.metrics else [], "node": tl.model.nodes.get(r.run),
                    "diff_base": diff_base(tl, r), "diff_what": "the code" if r.run in tl.model.nodes
                    else "experiment.py"})
    return out


def context(ws: Workspace, out: Path, opts: Options | None = None) -> dict[str, Any]:
    """Everything the report template renders, from the workspace's timeline and files."""
    opts = opts or Options()
    tl = build(ws)
    out_dir = out.parent.resolve()
    rows = tl.metric_rows()
    metric_charts = [(row, charts.metric_bars(row)) for row in rows] if tl.results else []
    notes_path = readable(tl.root, "notes.txt")
    review_rel, review_raw = load_review(tl)
    return {
        "tl": tl,
        "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
        "runs": _runs(tl, ws, opts),
        "search": search_view(tl),
        "best_mark": BEST,
        "strip": charts.run_strip([(r.run, r.status, len(r.attempts)) for r in tl.search_runs]),
        "ablation_groups": [{"of": of, "best": tl.run(of), "ablations": abls, "rows": tl.ablation_rows(of)}
                            for of, abls in tl.ablation_groups()],
        "metric_rows": rows,
        "metric_charts": metric_charts,
        "figures": collect_figures(tl, out_dir),
        "notes": notes_path.read_text(encoding="utf-8", errors="replace") if notes_path and notes_path.is_file() else None,
        "paper": collect_paper(tl, out_dir, opts),
        "review_path": review_rel,
        "review": review_view(review_raw),
        "review_raw": json.dumps(review_raw, indent=2) if review_raw is not None else None,
        "messages": [m for m in tl.messages],
    }


def _env() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html", "j2"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.globals.update(delta=delta)
    env.filters.update(num=fmt_num, wall=fmt_wall, tokens=fmt_tokens, delta=delta,
                       tojson_pretty=lambda v: json.dumps(v, indent=2, default=str),
                       when=lambda ts: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-",
                       slug=lambda s: "".join(c if c.isalnum() else "-" for c in str(s)).strip("-").lower())
    return env


def render(ws: Workspace | Path, out: Path, opts: Options | None = None) -> str:
    """The report's HTML for a workspace."""
    if not isinstance(ws, Workspace):
        ws = Workspace(Path(ws))
    ctx = context(ws, out, opts)
    return _env().get_template("report.html.j2").render(**ctx)


def write(ws: Workspace | Path, out: Path | None = None, opts: Options | None = None) -> Path:
    """Render the report and write it atomically; returns its path (default `<workspace>/report.html`)."""
    if not isinstance(ws, Workspace):
        ws = Workspace(Path(ws))
    out = Path(out) if out is not None else ws.root / "report.html"
    html = render(ws, out, opts)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, out)
    return out
