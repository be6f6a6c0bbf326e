"""Deterministic integrity checks: hold the paper to the runs.

Findings: numbers in the text that match no validated run value; numbers or mentions that present a
failed or degenerate run as a result; figures referenced but missing; citation keys absent from the
bibliography; \\result macros with no validated value; sections left empty; unresolved references;
and, given the runs' per-seed values and the metrics' goals (PaperInputs.claims), comparative claims
the statistics do not support (check_claims, below).

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from .. import stats
from ..paths import changed_files
from ..readmodel import NOT_APPLICABLE
from . import tex as texmod
from .results_tex import RunData

Severity = Literal["error", "warning", "note"]
_MIN_SECTION_WORDS = 15
_MAX_COUNT = 10  # integers up to this are read as counts, not as results


class Finding(BaseModel):
    kind: str  # unmatched-number, failed-run-number, failed-run-presented, missing-figure, missing-citation,
    #            undefined-result, empty-section, unresolved-reference, placeholder,
    #            claim-not-significant, claim-single-seed, claim-wrong-direction, claim-against-goal, claim-no-goal,
    #            changed-run-files
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
    failed: list[RunData] = field(default_factory=list)  # runs that are not results: failed, degenerate, not applicable
    extra_values: list[float] = field(default_factory=list)  # numbers the user wrote (the idea spec)
    figure_roots: list[Path] = field(default_factory=list)
    claims: ClaimInputs | None = None  # per-seed values and goals: comparative prose held to them (check_claims)
    provenance: str = ""  # where the numbers come from (evaluated / self-reported), said in the report's notes


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
_SAID_NOT_RESULT = r"fail|degenerate|crash|not (?:a )?result|exclud|discard|reject|did not|never|no result|invalid"
_SAID_NOT_APPLICABLE = _SAID_NOT_RESULT + r"|not applicable|inapplicable|no longer (?:comes out|applies)|nothing was run"


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
    if p.provenance:
        rep.notes.append(p.provenance)
    if p.text is not None and p.runs is not None:
        _check_numbers(p, rep)
    elif p.text is not None:
        rep.notes.append("numbers not checked against runs: no workspace (a bare PDF has no validated runs)")
    if p.text is not None:
        for m in re.finditer(r"\?\?|\(\?\)|\[\?\]", _references_cut(p.text)):
            line = p.text.count("\n", 0, m.start()) + 1
            f.append(Finding(kind="unresolved-reference", message=f"unresolved reference or result {m.group(0)!r} in the text",
                             where=f"text line {line}"))
    check_claims(p, rep)
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
            sentence = _sentence_around(p.text or "", m.start(), m.end())
            if re.search(_SAID_NOT_APPLICABLE if r.status == NOT_APPLICABLE else _SAID_NOT_RESULT, sentence, re.IGNORECASE):
                continue
            line = (p.text or "").count("\n", 0, m.start()) + 1
            rep.findings.append(Finding(
                kind="failed-run-presented", severity="warning", where=f"text line {line}",
                message=f"run {r.run} is {r.status}, not a result, but is mentioned without saying so: "
                        f"{' '.join(sentence.split())[:160]!r}"))


# A sentence ends at a full stop followed by white space and then not by a lower-case letter: not inside
# 0.9148 or core.explained_variance, not at "vs. previous" or "et al. show" (a table's cells, which
# pdftotext gives column by column, then stay one span with the verdict printed beside them).
_SENTENCE_END = re.compile(r"\.(?=\s+[^\sa-z]|\s*$)")


def _sentence_around(text: str, start: int, end: int) -> str:
    """The sentence of `text` that holds text[start:end]."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text, 0, start)]
    after = _SENTENCE_END.search(text, end)
    return text[ends[-1] if ends else 0:after.start() if after is not None else None]


def _macro_numbers(results_tex: str | None) -> list[tuple[float, str]]:
    """Every number results.tex prints (a mean, its ± half-width, a difference's interval): generated
    from validated runs, so the text may show them."""
    out = []
    for macro in ("result", "change", "diff", "stepdiff"):
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
        defined = {m: texmod.setresults(p.results_tex, m) for m in ("result", "change", "diff", "stepdiff")}
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


# ---- claims held to the statistics ------------------------------------------------------------------
#
# A claim is a clause (a sentence cut at ";", "while", "whereas", "but", "although") holding a comparative
# word (improves, reduces, outperforms, higher, lower, better, worse, increases, significantly, ...) not
# negated in the three words before it ("does not improve", "non-significant" are no claims) and a metric:
# a \result/\change/\diff macro, or a key metric's name ("core.l0", "L0", "$L_0$", "explained variance",
# "CE-loss score"). Each metric takes the comparative nearest its first mention, within 12 words ("the
# best variant keeps the explained variance (...) at a lower L0 (...)": best -> explained variance, lower
# -> L0); in a clause that names no run, a name binds only within 6 words (a method sentence with "highest
# decoder cosine" is no claim about the absorption rate it mentions later). A clause that refers back
# ("This is a clear improvement over the baseline.": this/that/it/which with a noun like improvement, or a
# run) takes the metrics of its sentence, or of the sentence before. Runs bind by macro, by name ("run 2",
# "the baseline") and by a printed number equal to exactly one run's mean of that metric. A run after
# "than", "over", "against", "relative to", "compared to/with", "versus", "from", "outperforms", "beats",
# "exceeds" or "improves on" is the reference, the others the subject; no reference means the baseline, a
# superlative (best, lowest) every other run; no subject means any run but the references (the claim holds
# when one of them supports it). Each (subject, reference) pair must show: a difference significant at
# 0.05 (Welch, every side more than one seed), in the direction the word says (higher/lower against the
# data; better/worse against the metric's declared goal, never the model's reading of it). "from A to B"
# with a better/worse word is checked against the goal from the printed numbers alone; "lower is better"
# is checked against the declared goal of the metrics named just before it. Not caught: claims whose
# metric is in neither the sentence nor the one before, metrics named by a synonym ("sparsity" for L0) or
# through a macro the paper defines itself.


@dataclass
class ClaimInputs:
    seeds: Mapping[str, Mapping[str, Sequence[float]]]  # run label -> metric -> one value per seed
    goals: Mapping[str, str] = field(default_factory=dict)  # metric -> "max" | "min" (the manifest's [goals])
    key_metrics: Sequence[str] = ()  # bound by name as well as by macro
    baseline: str = "run0"
    references: Mapping[str, str] = field(default_factory=dict)  # run -> what its \stepdiff compares it with


def seeds_of(runs: list[RunData]) -> dict[str, dict[str, list[float]]]:
    """The runs' per-seed values (RunData.seeds, from the journal); a run without them counts as one seed."""
    return {r.label: ({k: list(v) for k, v in r.seeds.items()} if r.seeds else {k: [float(v)] for k, v in r.values.items()})
            for r in runs}


_WORDS = {
    "up": r"increas\w*|higher|highest|rais(?:e|es|ed|ing)|larger|largest|greater|greatest|grow\w*|grew|ris(?:e|es|ing)|rose|"
          r"exceed\w*|boost\w*|doubl\w*",
    "down": r"reduc\w*|lower(?:s|ed|ing)?|lowest|decreas\w*|smaller|smallest|fewer|drop\w*|fall(?:s|ing)?|fell|cut(?:s|ting)?|"
            r"halv\w*|shr[iu]nk\w*|diminish\w*",
    "better": r"improv\w*|outperform\w*|better|best|beat(?:s|ing)?|superior|surpass\w*|stronger",
    "worse": r"wors\w*|degrad\w*|hurt\w*|underperform\w*|inferior|deteriorat\w*|harm\w*|weaker|regress\w*",
    "differ": r"differ(?:s|ed|ent|ing)?|significant(?:ly)?",  # "the difference ... is not significant" is no claim
}
_COMPARATIVE = re.compile("|".join(rf"(?P<{k}>\b(?:{v})\b)" for k, v in _WORDS.items()), re.IGNORECASE)
_SUPERLATIVE = re.compile(r"\b(?:best|worst|highest|lowest|largest|smallest|greatest)\b", re.IGNORECASE)
_NEGATION = re.compile(r"\b(?:not|no|non|never|neither|nor|without|cannot|fails? to|failed to)\b|n't\b", re.IGNORECASE)
_REFERENCE = re.compile(r"\b(?:than|over|against|relative to|compared (?:to|with)|versus|vs\.?|from|"
                        r"outperform\w*|beat\w*|surpass\w*|exceed\w*|improv\w*\s+(?:up)?on)\W*(?:the\s+|that of\s+)?\W*$",
                        re.IGNORECASE)
_GOAL_STATEMENT = re.compile(r"\b(higher|larger|greater|lower|smaller)\s+(?:is|means|=)\s+better\b", re.IGNORECASE)
_CLAUSE = re.compile(r";|,?\s+\b(?:while|whereas|but|although|though)\b\s+", re.IGNORECASE)
_RUN_NAME = re.compile(r"\b[Rr]un[\s_]?(\d+)\b|\b(?:the\s+)?(baseline)\b", re.IGNORECASE)
_ABBREV = re.compile(r"\b(?:e\.g|i\.e|et al|vs|cf|Fig|Eq|Sec|approx|resp)\.", re.IGNORECASE)
_ANAPHOR = re.compile(r"\b(?:this|that|these|those|which|it|they)\b", re.IGNORECASE)
_NOUN_CLAIM = re.compile(r"\b(?:improvements?|reductions?|increases?|decreases?|gains?|drops?|degradations?|differences?|"
                         r"advantages?)\b", re.IGNORECASE)
_NEAR = 6  # words between a comparative and a metric's name, in a clause that names no run
_WINDOW = 12  # words between a comparative and the metric it is about, at most
_TOKEN = re.compile("\x03(\\d+)\x04")
_LINE = re.compile("\x01(\\d+)\x02")


@dataclass
class _Mention:
    run: str
    pos: int
    implied: str | None = None  # compared with: \diff and \change the baseline, \stepdiff its reference


def check_claims(p: PaperInputs, rep: IntegrityReport) -> None:
    """Findings claim-not-significant, claim-single-seed, claim-wrong-direction, claim-against-goal and
    claim-no-goal for comparative prose the per-seed statistics do not support."""
    c = p.claims
    if c is None or (p.tex is None and p.text is None):
        return
    text, macros, where = _claim_text(p)
    aliases = _aliases([*c.key_metrics, *c.goals])
    unbound = 0
    prev: list[str] = []
    prev_text = ""
    for start, end in _sentences(text):
        lead = re.match(r"(?:\s|\x01\d+\x02)*", text[start:end])
        line_m = list(_LINE.finditer(text[:start + (lead.end() if lead else 0)]))
        line = int(line_m[-1].group(1)) if line_m else 1
        s = _LINE.sub("", text[start:end])
        s_metrics = list(_positions(s, macros, aliases))
        claimed_any = False
        for a, b in _spans(s):
            clause = _goal_statements(s[a:b], macros, aliases, c, rep, where, line)
            found = _comparatives(clause)
            if not found:
                continue
            pos = _positions(clause, macros, aliases)
            if not (_TOKEN.search(clause) or _RUN_NAME.search(clause)):  # no run named: a name binds only near the word
                pos = {k: v for k, v in pos.items() if any(abs(x - w) <= _NEAR for x in v for w, _, _ in found)}
            # each metric takes the comparative nearest its first mention ("the best variant keeps the explained
            # variance (...) at a lower L0 (...)": best -> explained variance, lower -> L0), within _WINDOW words
            near = {k: min(found, key=lambda f, x=v[0]: (abs(f[0] - x), f[0] < x)) for k, v in pos.items()}
            near.update(_from_to(clause, found, pos))
            claims = {k: [f] for k, f in near.items() if min(abs(f[0] - x) for x in pos[k]) <= _WINDOW}
            context = clause  # runs bind within the context
            if not claims and _ANAPHOR.search(clause) and (_NOUN_CLAIM.search(clause) or _RUN_NAME.search(clause)):
                claims, context = (({k: found for k in s_metrics}, s) if s_metrics
                                   else ({k: found for k in prev}, f"{prev_text} {s}"))
            if not claims:
                unbound += 1
                continue
            claimed_any = True
            for metric, words in claims.items():
                problem = _judge(clause, context, _classes(words), words[0][2], metric, macros, c)
                if problem:
                    kind, why = problem
                    # one seed cannot support a comparison, but its numbers are real: a warning, not an error
                    rep.findings.append(Finding(kind=kind, where=f"{where}:{line}" if where else f"text line {line}",
                                                severity="warning" if kind == "claim-single-seed" else "error",
                                                message=f"{why}, in {_show(clause, macros)!r}"))
        if s_metrics or not claimed_any:
            prev, prev_text = s_metrics, s
    if unbound:
        rep.notes.append(f"{unbound} comparative clause(s) name no metric (by macro or key-metric name): claims not checked")


def _claim_text(p: PaperInputs) -> tuple[str, list[tuple[str, str, str]], str]:
    """The prose as text with a line marker on each line and each result macro as a token."""
    macros: list[tuple[str, str, str]] = []
    if p.tex is not None:
        src = texmod.strip_comments(p.tex)
        lines = [f"\x01{n}\x02{ln}" for n, ln in enumerate(src.splitlines(), 1)]
        src = "\n".join(lines)
        begin = src.find("\\begin{document}")
        src = src[begin:] if begin != -1 else src
        cut = re.search(r"\\bibliography\{|\\end\{document\}", src)
        src = src[:cut.start()] if cut else src

        def _tok(m: re.Match) -> str:
            macros.append((m.group(1), m.group(2).strip(), m.group(3).strip()))
            return f" \x03{len(macros) - 1}\x04 "

        src = re.sub(r"\\(result|change|diff|stepdiff)\{([^}]*)\}\{([^}]*)\}", _tok, src)
        src = re.sub(r"\\setcaption\{[^}]*\}", "\n\n", src)  # a figure's caption is prose too (to_text drops it)
        return texmod.to_text(src, {}), macros, "paper.tex"
    text = _references_cut(p.text or "")
    return "\n".join(f"\x01{n}\x02{ln}" for n, ln in enumerate(text.splitlines(), 1)), macros, ""


def _sentences(text: str) -> list[tuple[int, int]]:
    masked = _ABBREV.sub(lambda m: m.group(0)[:-1] + "\x05", text)
    out, start = [], 0
    for m in re.finditer(r"[.!?](?=\s)|\n\s*\n", masked):
        out.append((start, m.end()))
        start = m.end()
    out.append((start, len(text)))
    return [(a, b) for a, b in out if text[a:b].strip()]


def _spans(s: str) -> list[tuple[int, int]]:
    cuts = [0, *(x for m in _CLAUSE.finditer(s) for x in (m.start(), m.end())), len(s)]
    return [(cuts[i], cuts[i + 1]) for i in range(0, len(cuts), 2)]


def _norm(s: str) -> str:
    """Lower case, - and _ as spaces, TeX's "\\_" as "_" first: positions kept where it matters little."""
    return re.sub(r"[-_]", " ", s.replace("\\_", "_").lower())


def _aliases(keys: Sequence[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key in dict.fromkeys(keys):
        last = key.rsplit(".", 1)[-1]
        names = {_norm(key), _norm(last)}
        if re.fullmatch(r"[a-z]+\d+", last.lower()):  # l0 -> also "l 0" as "$L_0$" renders
            names.add(re.sub(r"(\d+)$", r" \1", last.lower()))
        out[key] = sorted(names, key=len, reverse=True)
    return out


def _word_at(low: str, pos: int) -> int:
    return len(low[:pos].split())


def _positions(s: str, macros: list[tuple[str, str, str]], aliases: dict[str, list[str]]) -> dict[str, list[int]]:
    """metric -> the word indices (in _norm(s)) where s names it, by macro or by name; first mention first."""
    low = _norm(s)
    out: dict[str, list[int]] = {}
    for m in _TOKEN.finditer(low):
        out.setdefault(macros[int(m.group(1))][2], []).append(_word_at(low, m.start()))
    for key, names in aliases.items():
        for n in names:
            for m in re.finditer(rf"(?<![\w.]){re.escape(n)}(?![\w])", low):
                out.setdefault(key, []).append(_word_at(low, m.start()))
    return {k: sorted(set(v)) for k, v in sorted(out.items(), key=lambda kv: min(kv[1]))}


def _from_to(clause: str, found: list[tuple[int, str, str]], pos: dict[str, list[int]]) -> dict[str, tuple[int, str, str]]:
    """A metric printed as "<verb> ... from A to B" takes the comparative just before that "from" ("raising the
    learning rate from A to B lowers the error from C to D": raising -> learning rate, lowers -> error)."""
    low = _norm(clause)
    out = {}
    for m in re.finditer(r"\bfrom\b", low):
        w = _word_at(low, m.start())
        before = [f for f in found if f[0] < w]
        after = [k for k, v in pos.items() if any(w < x <= w + 4 for x in v)]
        if before and after:
            out[after[0]] = before[-1]
    return out


def _comparatives(clause: str) -> list[tuple[int, str, str]]:
    """(word index, class, word) of each comparative word not negated in the three words before it."""
    low = _norm(clause)
    out = []
    for m in _COMPARATIVE.finditer(low):
        if _NEGATION.search(" ".join(low[:m.start()].split()[-3:])):
            continue
        out.append((_word_at(low, m.start()), m.lastgroup or "differ", m.group(0)))
    return out


def _classes(found: list[tuple[int, str, str]]) -> set[str]:
    out = {cls for _, cls, _ in found}
    if {"up", "down"} <= out:  # "a higher learning rate lowers L0" (bound to nothing nearer): only that it differs
        out = (out - {"up", "down"}) | {"differ"}
    if {"better", "worse"} <= out:
        out = (out - {"better", "worse"}) | {"differ"}
    return out


def _goal_statements(clause: str, macros: list[tuple[str, str, str]], aliases: dict[str, list[str]], c: ClaimInputs,
                     rep: IntegrityReport, where: str, line: int) -> str:
    """Check "lower is better" against the declared goal of the metrics named in the few words before it
    ("absorption and child-parent leak (lower is better)"); the statement is not a claim itself."""
    low = _norm(clause)
    pos = _positions(clause, macros, aliases)
    for m in _GOAL_STATEMENT.finditer(low):
        said = "max" if m.group(1) in ("higher", "larger", "greater") else "min"
        at = _word_at(low, m.start())
        for metric, xs in pos.items():
            goal = c.goals.get(metric)
            if goal and goal != said and any(at - _NEAR <= x < at for x in xs):
                rep.findings.append(Finding(kind="claim-against-goal", where=f"{where}:{line}" if where else f"text line {line}",
                                            message=f"says {m.group(0)!r} of {metric}, whose declared goal is {goal}, "
                                                    f"in {' '.join(clause.split())[:160]!r}"))
    return _GOAL_STATEMENT.sub(" ", clause)


def _mentions(clause: str, metric: str, macros: list[tuple[str, str, str]], c: ClaimInputs) -> list[_Mention]:
    out: list[_Mention] = []
    for m in _TOKEN.finditer(clause):
        macro, run, _key = macros[int(m.group(1))]
        implied = None if macro == "result" else c.references.get(run) if macro == "stepdiff" else c.baseline
        out.append(_Mention(run, m.start(), implied=implied))
    plain = _TOKEN.sub(lambda m: " " * len(m.group(0)), clause)
    for m in _RUN_NAME.finditer(plain):
        out.append(_Mention(c.baseline if m.group(2) else f"run{m.group(1)}", m.start()))
    means = {r: stats.summarize(v[metric]).mean for r, v in c.seeds.items() if metric in v}
    for num in extract_numbers(plain.replace("\n", " ")):
        hits = [r for r, mean in means.items() if mean is not None and matches(num, mean)]
        if len(hits) == 1:
            pos = plain.find(num.text)
            out.append(_Mention(hits[0], pos if pos >= 0 else 0))
    return sorted(out, key=lambda x: x.pos)


def _roles(clause: str, mentions: list[_Mention], baseline: str) -> tuple[list[str], list[str]]:
    subjects: list[str] = []
    refs: list[str] = []
    plain = _TOKEN.sub(lambda m: " " * len(m.group(0)), clause)
    for mn in mentions:
        if mn.run in subjects or mn.run in refs:
            continue
        (refs if _REFERENCE.search(plain[max(0, mn.pos - 40):mn.pos]) else subjects).append(mn.run)
        if mn.implied and mn.implied not in subjects and mn.implied not in refs and mn.run != mn.implied:
            refs.append(mn.implied)
    return subjects, refs


def _judge(clause: str, context: str, words: set[str], said: str, metric: str, macros: list[tuple[str, str, str]],
           c: ClaimInputs) -> tuple[str, str] | None:
    """(kind, why) when the claim of clause about metric is not supported, else None; runs bind in context."""
    have = [r for r, v in c.seeds.items() if metric in v]
    if not have:
        return None  # no run has it: the number and macro checks speak for it
    goal = c.goals.get(metric)
    if words & {"better", "worse"} and goal not in ("max", "min"):
        return "claim-no-goal", f"says {said!r} about {metric}, which declares no goal (max/min) in template.toml"
    stated = _stated_movement(clause, metric, macros, c)
    if stated and goal and words & {"better", "worse"}:
        good = (stated > 0) == (goal == "max")
        if good != ("better" in words):
            return "claim-against-goal", (f"says {said!r} of {metric} for a move {'up' if stated > 0 else 'down'}, "
                                          f"but its declared goal is {goal}")
    subjects, refs = _roles(context, _mentions(context, metric, macros, c), c.baseline)
    subjects = [r for r in subjects if r in have]
    refs = [r for r in refs if r in have]
    if not subjects:
        pool = [r for r in have if r not in refs and r != c.baseline] or [r for r in have if r not in refs]
        candidates, need_all = pool, False
    else:
        candidates, need_all = subjects, True
    problems = []
    for subj in candidates:
        these = [r for r in have if r != subj] if _SUPERLATIVE.fullmatch(said) else (refs or ([c.baseline] if subj != c.baseline
                                                                                          else [r for r in have if r != subj]))
        bad = next((pb for ref in these if ref != subj and (pb := _pair(subj, ref, metric, words, goal, said, c))), None)
        if bad is None and not need_all:
            return None
        if bad is not None:
            problems.append(bad)
    return problems[0] if problems else None


def _pair(subj: str, ref: str, metric: str, words: set[str], goal: str | None, said: str,
          c: ClaimInputs) -> tuple[str, str] | None:
    d = stats.against(c.seeds, subj, ref, metric)
    if d is None or d.diff is None:
        return None
    vs = f"{metric}: {subj} {stats.format_summary(d.run)} vs {ref} {stats.format_summary(d.reference)}"
    sign = (d.diff > 0) - (d.diff < 0)
    if ("up" in words and sign <= 0) or ("down" in words and sign >= 0):
        return "claim-wrong-direction", f"says {said!r}, but the difference is {stats.format_difference(d)} ({vs})"
    if words & {"better", "worse"} and goal in ("max", "min"):
        improved = sign > 0 if goal == "max" else sign < 0
        if improved != ("better" in words) or sign == 0:
            return "claim-against-goal", (f"says {said!r}, but with the declared goal {goal} the difference "
                                          f"{stats.format_difference(d)} is "
                                          f"{'an improvement' if improved else 'no improvement'} ({vs})")
    if d.status == "single-seed":
        return "claim-single-seed", f"says {said!r} from a single seed, which cannot tell a difference from seed noise ({vs})"
    if d.status != "ok":
        return "claim-not-significant", f"says {said!r}, but the difference has no test ({d.status}; {vs})"
    if not d.significant:
        return "claim-not-significant", (f"says {said!r}, but the difference {stats.format_difference(d)} is not "
                                         f"significant (Welch p = {d.p:.2g}, n = {d.run.n}/{d.reference.n}; {vs})")
    return None


def _stated_movement(clause: str, metric: str, macros: list[tuple[str, str, str]], c: ClaimInputs) -> float | None:
    """B - A for "from A to B" in the clause, A and B printed numbers or \\result macros."""
    m = re.search(r"\bfrom\s+(\S+)\s+to\s+(\S+)", clause)
    if not m:
        return None
    a, b = (_value_of(x, metric, macros, c) for x in m.groups())
    return None if a is None or b is None else b - a


def _value_of(word: str, metric: str, macros: list[tuple[str, str, str]], c: ClaimInputs) -> float | None:
    t = _TOKEN.search(word)
    if t:
        macro, run, key = macros[int(t.group(1))]
        vals = c.seeds.get(run, {}).get(key)
        return stats.summarize(vals).mean if macro == "result" and vals else None
    nums = extract_numbers(word.strip(",.;:()"))
    return nums[0].value if nums else None


def _show(clause: str, macros: list[tuple[str, str, str]]) -> str:
    s = _TOKEN.sub(lambda m: "\\{}{{{}}}{{{}}}".format(*macros[int(m.group(1))]), clause)
    return " ".join(s.split())[:200]


def changed_run_files(root: Path, recorded: dict[str, dict[str, str]]) -> list[Finding]:
    """Files of a recorded run (the baseline, every ok run) that changed after the run was recorded:
    `recorded` maps a run folder to the sha256 of its files then (the journal's RunFinished.outputs)."""
    out = []
    for rel, hashes in sorted(recorded.items()):
        if not hashes:
            continue  # recorded before outputs were hashed
        folder = Path(root) / rel
        bad = changed_files(folder, hashes) if not folder.is_symlink() else ["(the folder is a link)"]
        if bad:
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            out.append(Finding(kind="changed-run-files", where=rel, message=(
                f"{rel}/{bad[0]}{more} changed after the run was recorded: the paper's numbers come from the journal's "
                f"validated metrics, but the run's folder no longer shows what was validated")))
    return out
