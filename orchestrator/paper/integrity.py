"""Deterministic integrity checks: hold the paper to the runs.

Findings: numbers in the text that match no validated run value; numbers or mentions that present a
failed or degenerate run as a result; figures referenced but missing; citation keys absent from the
bibliography; \\result macros with no validated value; sections left empty; unresolved references.

Which numbers are checked, and why the rest are not:
- checked: every decimal number, every number in scientific notation, every percentage, and every
  integer above 10 that is not a year, a section/figure/table number or a citation;
- not checked: integers 0-10 (counts: "three runs", "2 levels" — a metric typed as a small integer
  slips through, a known limit), years 1900-2099, numbers that are part of a name (GPT-2, L1,
  Gemma-2-2b), heading numbers at the start of a line, page numbers alone on a line, numbers after
  Figure/Table/Section/Eq./Appendix/Run, numbered citations [3], and everything after the
  References heading.
A number matches a value when it equals it at the precision it is printed with (one unit in the
last printed digit, so rounding and truncation both pass), as a fraction or as a percentage."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from . import tex as texmod
from .results import RunData

Severity = Literal["error", "warning", "note"]
_MIN_SECTION_WORDS = 15
_MAX_COUNT = 10  # integers up to this are read as counts, not as results


class Finding(BaseModel):
    kind: str  # unmatched-number, failed-run-number, failed-run-presented, missing-figure, missing-citation,
    #            undefined-result, empty-section, unresolved-reference, placeholder
    severity: Severity = "error"
    message: str
    where: str = ""


class IntegrityReport(BaseModel):
    findings: list[Finding] = Field(default_factory=list)
    numbers_checked: int = 0
    numbers_matched: int = 0
    notes: list[str] = Field(default_factory=list)  # checks skipped and why

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def clean(self) -> bool:
        return not self.errors


@dataclass
class Number:
    text: str
    value: float
    ulp: float  # one unit in the last printed digit
    percent: bool
    line: int
    context: str


@dataclass
class PaperInputs:
    """What the checks look at; any part may be missing (a bare PDF has no runs and no source)."""

    text: str | None = None  # the paper as a reader sees it (pdftotext), or the source rendered as text
    tex: str | None = None  # latex/paper.tex
    tex_dir: Path | None = None  # for figure paths
    results_tex: str | None = None
    bib: str | None = None
    runs: list[RunData] | None = None  # results (baseline included); None when unknown
    failed: list[RunData] = field(default_factory=list)
    extra_values: list[float] = field(default_factory=list)  # numbers the user wrote (the idea spec)
    figure_roots: list[Path] = field(default_factory=list)


_NUM = re.compile(
    r"(?<![\w.\-−–/^])"
    r"(?P<sign>[-−–]\s?)?"
    r"(?P<int>\d{1,3}(?:,\d{3})+|\d+)(?P<frac>\.\d+)?"
    r"(?:\s?(?:×|x|\\times)\s?10\s?\^?(?P<exp>[-−–]?\s?\d+)|[eE](?P<exp2>[-+−]?\d+))?"
    r"(?P<pct>\s?%)?"
    r"(?![\w])"
)
_REF_WORDS = re.compile(r"(?:Figure|Fig\.|Figures|Table|Tab\.|Tables|Section|Sec\.|Sections|§|Eq\.|Eqs\.|Equation|"
                        r"Appendix|Algorithm|Line|Lines|Page|Pages|Run|Runs|run|runs|Step|Chapter|Theorem|Lemma|"
                        r"Definition|level|Level|layer|Layer)\s*\(?$")
_HEADING = re.compile(r"^\s*(?:\d+(?:\.\d+)*|[A-Z](?:\.\d+)*)\s+[A-Z]")
_BRACKETS = re.compile(r"\[[\d,\s–\-]+\]")


def _references_cut(text: str) -> str:
    """The text before the bibliography (its years, volumes and pages are not results)."""
    heads = list(re.finditer(r"^\s*(?:\d+\s+)?(?:References|Bibliography)\s*$", text, re.MULTILINE))
    return text[:heads[-1].start()] if heads else text


def extract_numbers(text: str) -> list[Number]:
    out: list[Number] = []
    text = _references_cut(text)
    for n, line in enumerate(text.splitlines(), 1):
        if re.fullmatch(r"\s*\d+\s*", line):  # a page number
            continue
        scan = _BRACKETS.sub(lambda m: " " * len(m.group(0)), line)
        heading = _HEADING.match(scan)
        for m in _NUM.finditer(scan):
            if heading and m.start() < heading.end() and m.start() == len(scan) - len(scan.lstrip()):
                continue
            before = scan[:m.start()].rstrip()
            if _REF_WORDS.search(before[-14:]) and not m.group("pct") and not m.group("exp") and not m.group("exp2"):
                continue
            intpart = m.group("int").replace(",", "")
            frac = m.group("frac") or ""
            exp = m.group("exp") or m.group("exp2")
            sign = -1.0 if m.group("sign") else 1.0
            base = float(intpart + frac)
            decimals = len(frac) - 1 if frac else 0
            ulp = 10.0 ** (-decimals)
            if exp is not None:
                e = int(exp.replace("−", "-").replace("–", "-").replace(" ", ""))
                base *= 10.0 ** e
                ulp *= 10.0 ** e
            pct = bool(m.group("pct"))
            if not frac and exp is None and not pct:
                iv = int(intpart)
                if iv <= _MAX_COUNT or 1900 <= iv <= 2099:
                    continue
            out.append(Number(text=m.group(0).strip(), value=sign * base, ulp=ulp, percent=pct, line=n,
                              context=line.strip()[:160]))
    return out


def matches(num: Number, value: float) -> bool:
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    tol = num.ulp * (1 + 1e-9) + 1e-12
    candidates = [num.value, abs(num.value)]
    if num.percent:
        candidates += [num.value / 100, abs(num.value) / 100]
        tol_pct = tol / 100
    for i, c in enumerate(candidates):
        t = tol_pct if num.percent and i >= 2 else tol
        if abs(c - value) <= t or abs(c - abs(value)) <= t:
            return True
    return False


def _run_values(runs: list[RunData]) -> list[tuple[float, str]]:
    return [(float(v), f"{r.label} {k}") for r in runs for k, v in r.values.items()]


def check(p: PaperInputs) -> IntegrityReport:
    rep = IntegrityReport()
    f = rep.findings
    if p.text is not None and p.runs is not None:
        _check_numbers(p, rep)
    elif p.text is not None:
        rep.notes.append("numbers not checked against runs: no workspace (a bare PDF has no validated runs)")
    if p.text is not None:
        for m in re.finditer(r"\?\?|\(\?\)|\[\?\]", _references_cut(p.text)):
            line = p.text.count("\n", 0, m.start()) + 1
            f.append(Finding(kind="unresolved-reference", message=f"unresolved reference or result {m.group(0)!r} in the text",
                             where=f"text line {line}"))
    if p.tex is None:
        rep.notes.append("source checks (citations, figures, sections, \\result macros) skipped: no LaTeX source")
        return rep
    _check_source(p, rep)
    return rep


def _check_numbers(p: PaperInputs, rep: IntegrityReport) -> None:
    good = _run_values(p.runs or []) + [(float(v), "idea spec") for v in p.extra_values] + _macro_numbers(p.results_tex)
    bad = _run_values(p.failed)
    status = {r.run: r.status for r in p.failed}
    for num in extract_numbers(p.text or ""):
        rep.numbers_checked += 1
        if any(matches(num, v) for v, _ in good):
            rep.numbers_matched += 1
            continue
        hit = next((src for v, src in bad if matches(num, v)), None)
        if hit is not None:
            run = int(hit.split()[0][3:])
            rep.findings.append(Finding(
                kind="failed-run-number", where=f"text line {num.line}",
                message=f"{num.text} is a value of {hit} ({status.get(run, 'failed')} run, not a result): {num.context!r}"))
        else:
            rep.findings.append(Finding(
                kind="unmatched-number", where=f"text line {num.line}",
                message=f"{num.text} matches no validated run value: {num.context!r}"))
    ok_runs = {r.run for r in p.runs or []}
    for r in p.failed:
        if r.run in ok_runs:
            continue
        for m in re.finditer(rf"\b[Rr]un[ _~]?{r.run}\b", _references_cut(p.text or "")):
            start = (p.text or "").rfind(".", 0, m.start()) + 1
            end = (p.text or "").find(".", m.end())
            sentence = (p.text or "")[start:end if end != -1 else None]
            if re.search(r"fail|degenerate|crash|not (?:a )?result|exclud|discard|reject|did not|never|no result|invalid",
                         sentence, re.IGNORECASE):
                continue
            line = (p.text or "").count("\n", 0, m.start()) + 1
            rep.findings.append(Finding(
                kind="failed-run-presented", severity="warning", where=f"text line {line}",
                message=f"run {r.run} is {r.status}, not a result, but is mentioned without saying so: {' '.join(sentence.split())[:160]!r}"))


def _macro_numbers(results_tex: str | None) -> list[tuple[float, str]]:
    """Every number results.tex prints (a mean, its ± half-width, a difference's interval): generated
    from validated runs, so the text may show them."""
    out = []
    for macro in ("result", "change", "diff"):
        for (run, key), v in texmod.setresults(results_tex or "", macro).items():
            out += [(n.value, f"{run} {key}") for n in extract_numbers(texmod.plain_value(v))]
    return out


def _check_source(p: PaperInputs, rep: IntegrityReport) -> None:
    f = rep.findings
    tex = p.tex or ""
    if p.bib is not None:
        keys = texmod.bib_keys(p.bib)
        for key, line in texmod.cite_keys(tex):
            if key not in keys:
                f.append(Finding(kind="missing-citation", where=f"paper.tex:{line}",
                                 message=f"\\cite key {key!r} is not in references.bib"))
    else:
        rep.notes.append("citations not checked: no references.bib")
    roots = [*(p.figure_roots or []), *([p.tex_dir, p.tex_dir.parent] if p.tex_dir else [])]
    for target, line in texmod.graphics(tex):
        if target.startswith("#"):
            continue
        if not _figure_exists(target, roots):
            f.append(Finding(kind="missing-figure", where=f"paper.tex:{line}",
                             message=f"figure {target!r} is referenced but no such file exists"))
    if p.results_tex is not None:
        if "\\resultfigures" in tex:
            for target, line in texmod.graphics(p.results_tex):
                if not _figure_exists(target, roots):
                    f.append(Finding(kind="missing-figure", where=f"results.tex:{line}",
                                     message=f"figure {target!r} is placed but no such file exists"))
        defined = {m: texmod.setresults(p.results_tex, m) for m in ("result", "change", "diff")}
        failed = {r.label: r.status for r in p.failed}
        for run, key, line, macro in texmod.result_uses(tex):
            if (run, key) in defined[macro]:
                continue
            if run in failed:
                f.append(Finding(kind="failed-run-presented", where=f"paper.tex:{line}",
                                 message=f"\\{macro}{{{run}}}{{{key}}}: {run} is {failed[run]}, not a result"))
            else:
                f.append(Finding(kind="undefined-result", where=f"paper.tex:{line}",
                                 message=f"\\{macro}{{{run}}}{{{key}}} has no validated value in results.tex"))
    for sec in texmod.sections(tex):
        if sec.words < _MIN_SECTION_WORDS:
            f.append(Finding(kind="empty-section", where=f"paper.tex:{sec.line}",
                             message=f"section {sec.name!r} is empty or nearly so ({sec.words} words)"))
    for name, line in texmod.placeholders(tex):
        f.append(Finding(kind="placeholder", where=f"paper.tex:{line}", severity="warning",
                         message=f"the template's placeholder for {name!r} is still there"))


def _figure_exists(target: str, roots: list[Path]) -> bool:
    for root in roots:
        base = root / target
        if base.is_file():
            return True
        if not Path(target).suffix and any((root / f"{target}{ext}").is_file() for ext in (".png", ".pdf", ".jpg", ".jpeg")):
            return True
    return False
