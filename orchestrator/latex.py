"""TeX: is it installed, compile a paper (latexmk: pdflatex + bibtex), lint it (chktex), and turn a
LaTeX log into problems the agent can act on — the message and the offending source lines.

Processes start through runner.run (compile, lint) or runner.tool (kpsewhich), never here."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from . import runner
from .paths import readable
from .settings import Limits

TOOLS = ("latexmk", "pdflatex", "bibtex")
# what latex/orchestrate.sty loads: checked up front so a missing package is not found at the end
PACKAGES = ("hyperref", "booktabs", "amsmath", "amssymb", "graphicx", "caption", "subcaption", "natbib", "microtype",
            "geometry", "times", "xcolor", "url")
APT_PACKAGES = "latexmk texlive-latex-base texlive-latex-recommended texlive-fonts-recommended chktex"
# chktex warnings worth an agent's attempt: mismatched brackets and environments, quotes, spacing
# before references; the purely typographic ones (dash length, intersentence space ...) are noise
CHKTEX_KEPT = {2, 9, 10, 15, 16, 17, 18, 26, 32, 33, 34}


class LatexProblem(BaseModel):
    """One error or warning, with the source lines it points at."""

    kind: str = "error"  # error, warning, chktex, bibtex
    file: str | None = None
    line: int | None = None
    message: str
    context: str = ""  # the offending lines, numbered

    def text(self) -> str:
        """The problem as one message with its file, line and source context."""
        where = f"{self.file}:{self.line}: " if self.file and self.line else (f"{self.file}: " if self.file else "")
        return f"{where}{self.message}" + (f"\n{self.context}" if self.context else "")


class CompileResult(BaseModel):
    """What a compile gave: the PDF or the problems, warnings, exit code and time."""

    ok: bool
    pdf: str | None = None
    problems: list[LatexProblem] = Field(default_factory=list)  # errors: the compile failed
    warnings: list[LatexProblem] = Field(default_factory=list)  # undefined references, citations
    exit_code: int | None = None
    wall_s: float = 0.0
    timed_out: bool = False
    tail: str = ""  # the end of latexmk's output when no error could be parsed
    log_dir: str = ""
    record: runner.RunRecord | None = None  # latexmk's process, judged like any run (execution.process_verdict)


def tex_preflight(*, which=None) -> tuple[bool, str]:
    """(ok, one line): the TeX tools and packages the paper needs; what is missing and how to get it."""
    which = which or shutil.which
    missing = [t for t in TOOLS if which(t) is None]
    if not missing and which("kpsewhich") is not None:
        res = runner.tool(["kpsewhich", *(f"{p}.sty" for p in PACKAGES)], timeout_s=30)
        found = {Path(line.strip()).stem for line in res.stdout.splitlines() if line.strip()}
        missing += [f"{p}.sty" for p in PACKAGES if p not in found]
    if not missing:
        lint = "" if which("chktex") else " (chktex missing: the paper is not linted)"
        return True, f"TeX: latexmk, pdflatex and bibtex found{lint}"
    return False, (f"TeX: missing {', '.join(missing)} — install with `apt-get install {APT_PACKAGES}`; "
                   "without it this run stops at latex/paper.tex (no PDF)")


def missing_packages(tex: str, src_dir: Path) -> list[str]:
    """The packages a paper's preamble loads (\\usepackage{a,b}) that neither its folder ships (a.sty beside
    it) nor TeX here has (kpsewhich): a template's own preamble may need texlive-latex-extra. [] without TeX."""
    head = tex.split("\\begin{document}", 1)[0]
    names = [n.strip() for m in re.finditer(r"^[^%\n]*\\usepackage(?:\[[^\]]*\])?\{([^}]*)\}", head, re.MULTILINE)
             for n in m.group(1).split(",") if n.strip()]
    wanted = [n for n in dict.fromkeys(names) if re.fullmatch(r"[A-Za-z0-9_\-]+", n) and not (src_dir / f"{n}.sty").exists()]
    if not wanted or shutil.which("kpsewhich") is None:
        return []
    res = runner.tool(["kpsewhich", *(f"{n}.sty" for n in wanted)], timeout_s=30)
    found = {Path(line.strip()).stem for line in res.stdout.splitlines() if line.strip()}
    return [n for n in wanted if n not in found]


def preflight_for(stages: Sequence[str]) -> tuple[bool, str] | None:
    """At the start of a run: `tex_preflight()` when a paper stage is among `stages`, else None (not needed).
    The caller records what is missing; nothing is written here."""
    if not {"writeup", "compile", "review"} & set(stages):
        return None
    return tex_preflight()


def _numbered(lines: list[str], around: int, *, before: int = 2, after: int = 1) -> str:
    lo, hi = max(1, around - before), min(len(lines), around + after)
    return "\n".join(f"{'>' if n == around else ' '}{n:5d} | {lines[n - 1]}" for n in range(lo, hi + 1))


def source_context(src_dir: Path, file: str | None, line: int | None) -> str:
    """The numbered source lines around `line` of `file`, for a problem the agent must fix."""
    if not file or not line:
        return ""
    path = readable(src_dir, file)  # a log line naming a link or a file outside the sources shows nothing
    if path is None or not path.is_file():
        return ""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    if not 1 <= line <= len(lines):
        return ""
    return _numbered(lines, line)


_FILE_LINE = re.compile(r"^(?P<file>[^\s:][^:]*\.(?:tex|sty|cls|bbl)):(?P<line>\d+): (?P<msg>.*)$")
_BANG = re.compile(r"^! (?P<msg>.*)$")
_LNUM = re.compile(r"^l\.(?P<line>\d+) ?(?P<text>.*)$")
_INPUT_LINE = re.compile(r"on input line (\d+)")
_UNDEF = re.compile(r"^(?:LaTeX|Package natbib) Warning: (?P<what>Citation|Reference) [`'](?P<key>[^']+)' on page \S+ "
                    r"undefined(?: on input line (?P<line>\d+))?")


def parse_log(log_text: str, src_dir: Path, main: str = "paper.tex") -> tuple[list[LatexProblem], list[LatexProblem]]:
    """(errors, warnings) from a pdflatex log; each error carries its offending source lines."""
    errors: list[LatexProblem] = []
    warnings: list[LatexProblem] = []
    lines = log_text.splitlines()
    seen: set[tuple] = set()
    for i, raw in enumerate(lines):
        m = _FILE_LINE.match(raw)
        bang = _BANG.match(raw) if not m else None
        if m:
            msg = m["msg"].strip()
            if msg.startswith(("==> Fatal error occurred", " ==> Fatal")):
                continue
            file, line = m["file"], int(m["line"])
        elif bang:
            msg, file, line = bang["msg"].strip(), main, None
            for follow in lines[i + 1:i + 12]:
                lm = _LNUM.match(follow)
                if lm:
                    line = int(lm["line"])
                    break
        else:
            w = _UNDEF.match(raw)
            if w:
                key = (w["what"], w["key"])
                if key not in seen:
                    seen.add(key)
                    ln = int(w["line"]) if w["line"] else None
                    warnings.append(LatexProblem(kind="warning", file=main if ln else None, line=ln,
                                                 message=f"{w['what']} `{w['key']}' undefined",
                                                 context=source_context(src_dir, main, ln)))
            continue
        file = file.removeprefix("./")
        key = (file, line, msg)
        if key in seen:
            continue
        seen.add(key)
        context = source_context(src_dir, file, line)
        opened = _INPUT_LINE.search(msg)
        if opened and "ended by" in msg:  # an environment left open: show where it began too
            began = source_context(src_dir, file, int(opened.group(1)))
            if began:
                context = f"{began}\n ...\n{context}" if context else began
        if not context:  # an error inside a package: show the log's own context lines instead
            context = "\n".join(ln for ln in lines[i + 1:i + 6] if ln.strip())
        errors.append(LatexProblem(kind="error", file=file, line=line, message=msg, context=context))
    return errors, warnings


_BLG_MISSING = re.compile(r"^Warning--I didn't find a database entry for \"(?P<key>[^\"]+)\"")
_BLG_ERROR = re.compile(r"^(?P<msg>.*)---line (?P<line>\d+) of file (?P<file>\S+)")


def parse_blg(blg_text: str, src_dir: Path) -> list[LatexProblem]:
    """BibTeX's problems from its .blg log."""
    out = []
    lines = blg_text.splitlines()
    for i, raw in enumerate(lines):
        m = _BLG_MISSING.match(raw)
        if m:
            out.append(LatexProblem(kind="bibtex", file="references.bib",
                                    message=f"citation key {m['key']!r} is not in references.bib"))
            continue
        m = _BLG_ERROR.match(raw)
        if m:
            msg = m["msg"].strip() or (lines[i - 1].strip() if i else "")
            line = int(m["line"])
            out.append(LatexProblem(kind="bibtex", file=m["file"], line=line, message=f"bibtex: {msg}",
                                    context=source_context(src_dir, m["file"], line)))
    return out


def tex_env(home: Path) -> dict[str, str]:
    """The environment TeX runs in: scrubbed, with its own HOME and cache under `home`."""
    env = runner.scrub_env(os.environ)
    home.mkdir(parents=True, exist_ok=True)
    env.update(HOME=str(home), TEXMFVAR=str(home / "texmf-var"), max_print_line="10000", error_line="254",
               half_error_line="238")
    return env


def compile_pdf(src_dir: Path, *, main: str = "paper.tex", build_dir: Path, log_dir: Path, timeout_s: float,
                limits: Limits | None = None, isolation: str = "none", root: Path | None = None,
                read_only: list[Path] | None = None, hidden: list[Path] | None = None) -> CompileResult:
    """latexmk -pdf into a fresh build folder; the PDF stays there (the caller copies it where it belongs).

    It runs in `root` (default: src_dir), which the sandbox makes writable — the workspace, so that the
    figures one folder up are visible and its record and history stay read-only; the build folder must
    be inside it; the caller names what stays read-only (`read_only`) or unseen (`hidden`) there. The log
    and the .blg are kept in log_dir."""
    from .feedback import tail_lines

    cwd = (root or src_dir).resolve()
    if build_dir.exists():
        shutil.rmtree(build_dir)
    build_dir.mkdir(parents=True)
    argv = ["latexmk", "-pdf", "-bibtex", "-cd", "-interaction=nonstopmode", "-halt-on-error", "-file-line-error",
            f"-outdir={build_dir.resolve()}", str((src_dir / main).resolve().relative_to(cwd))]
    rec = runner.run(runner.RunSpec(argv=argv, cwd=cwd, log_dir=log_dir, timeout_s=timeout_s,
                                    env=tex_env(build_dir / "home"), limits=limits, isolation=isolation,
                                    read_only=read_only or [], hidden=hidden or [], key="latex"))
    stem = Path(main).stem
    for ext in (".log", ".blg"):
        kept = readable(build_dir, f"{stem}{ext}")
        if kept is not None and kept.is_file():
            shutil.copy2(kept, log_dir / f"{stem}{ext}")
    log_text = _read(build_dir / f"{stem}.log")
    errors, warnings = parse_log(log_text, src_dir, main)
    errors += [p for p in parse_blg(_read(build_dir / f"{stem}.blg"), src_dir) if p.line or "not in" not in p.message]
    pdf = build_dir / f"{stem}.pdf"
    ok = rec.ok and pdf.is_file() and not any(p.kind == "error" for p in errors)
    tail = ""
    if not ok and not errors:
        out = _read(Path(rec.stdout_path)) + "\n" + _read(Path(rec.stderr_path))
        tail = tail_lines(out, max_tokens=400)
        if rec.timed_out:
            tail = f"latexmk was killed after its time limit of {timeout_s:g} s\n" + tail
    return CompileResult(ok=ok, pdf=str(pdf) if ok else None, problems=errors, warnings=warnings,
                         exit_code=rec.exit_code, wall_s=rec.wall_s, timed_out=rec.timed_out, tail=tail,
                         log_dir=str(log_dir), record=rec)


def lint(src_dir: Path, *, main: str = "paper.tex", log_dir: Path, timeout_s: float, limits: Limits | None = None,
         isolation: str = "none") -> tuple[list[LatexProblem], runner.RunRecord | None]:
    """chktex on the main file (generated inputs are not followed); only the warnings worth a fix."""
    if shutil.which("chktex") is None:
        return [], None
    argv = ["chktex", "-q", "-I0", "-f", "%f:%l:%c:%n:%m\n", main]
    rec = runner.run(runner.RunSpec(argv=argv, cwd=src_dir, log_dir=log_dir, timeout_s=timeout_s,
                                    env=tex_env(log_dir / "home"), limits=limits, isolation=isolation, key="chktex"))
    out = []
    for raw in _read(Path(rec.stdout_path)).splitlines():
        parts = raw.split(":", 4)
        if len(parts) != 5 or not parts[1].isdigit() or not parts[3].isdigit():
            continue
        file, line, _col, num, msg = parts
        if int(num) not in CHKTEX_KEPT:
            continue
        out.append(LatexProblem(kind="chktex", file=file, line=int(line), message=f"chktex {num}: {msg.strip()}",
                                context=source_context(src_dir, file, int(line))))
    return out, rec


def _read(path: Path) -> str:
    """A log's text, never through a link (paths.readable): "" when it is one, or absent."""
    safe = readable(path.parent, path.name)
    if safe is None or not safe.is_file():
        return ""
    try:
        return safe.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
