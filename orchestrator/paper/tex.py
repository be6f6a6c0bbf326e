"""The LaTeX source read as structure: sections, citations, figures, \\result uses, bibliography keys,
and a plain-text rendering for when no PDF exists; and the \\setresult / \\setdiff lines that carry a
run's statistics over its seeds into the paper (stat_macros). Regular expressions over a known template, not a
TeX parser: good enough for the paper the orchestrator itself set up."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .. import stats

SECTIONS = ("title", "abstract", "introduction", "background", "method", "experimental setup", "results",
            "related work", "conclusion")
PLACEHOLDER = "(to be written)"

_COMMENT = re.compile(r"(?<!\\)%.*$")
_CITE = re.compile(r"\\(?:no)?cite[a-zA-Z]*\*?(?:\[[^\]]*\]){0,2}\{([^}]*)\}")
_GRAPHICS = re.compile(r"\\includegraphics\*?(?:\[[^\]]*\])?\{([^}]*)\}")
_RESULT = re.compile(r"\\(result|change|diff|stepdiff)\{([^}]*)\}\{([^}]*)\}")
_SECTION = re.compile(r"\\section\*?\{([^}]*)\}")
_BIBKEY = re.compile(r"@\s*([A-Za-z]+)\s*[{(]\s*([^,\s]+)\s*,")
_SETRESULT = re.compile(r"\\set(result|change|diff|stepdiff)\{([^}]*)\}\{([^}]*)\}\{(.*)\}\s*$")


@dataclass
class Section:
    name: str  # lower-case heading, or "abstract"
    body: str  # comment-free source between this heading and the next
    line: int

    @property
    def words(self) -> int:
        return len(re.findall(r"[A-Za-z]{2,}", to_text(self.body, {})))


def strip_comments(tex: str) -> str:
    """Comments removed, line structure kept (so line numbers still point at the source)."""
    return "\n".join(_COMMENT.sub("", ln) for ln in tex.splitlines())


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def cite_keys(tex: str) -> list[tuple[str, int]]:
    clean = strip_comments(tex)
    out = []
    for m in _CITE.finditer(clean):
        for key in m.group(1).split(","):
            if key.strip():
                out.append((key.strip(), _line_of(clean, m.start())))
    return out


def graphics(tex: str) -> list[tuple[str, int]]:
    clean = strip_comments(tex)
    return [(m.group(1).strip(), _line_of(clean, m.start())) for m in _GRAPHICS.finditer(clean)]


def result_uses(tex: str) -> list[tuple[str, str, int, str]]:
    """(run, metric, line, macro) for every \\result, \\change, \\diff and \\stepdiff in the source."""
    clean = strip_comments(tex)
    return [(m.group(2).strip(), m.group(3).strip(), _line_of(clean, m.start()), m.group(1)) for m in _RESULT.finditer(clean)]


def bib_keys(bib: str) -> set[str]:
    return {m.group(2) for m in _BIBKEY.finditer(bib) if m.group(1).lower() not in ("comment", "string", "preamble")}


def title(tex: str) -> str:
    m = re.search(r"\\title\{(.*?)\}\s*$", strip_comments(tex), re.MULTILINE)
    return m.group(1).strip() if m else ""


def sections(tex: str) -> list[Section]:
    """The abstract and each \\section with its body (comments removed)."""
    clean = strip_comments(tex)
    out: list[Section] = []
    m = re.search(r"\\begin\{abstract\}(.*?)\\end\{abstract\}", clean, re.DOTALL)
    if m:
        out.append(Section("abstract", m.group(1), _line_of(clean, m.start())))
    heads = list(_SECTION.finditer(clean))
    for i, h in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(clean)
        body = clean[h.end():end]
        cut = re.search(r"\\bibliography\{|\\end\{document\}|\\appendix", body)
        if cut:
            body = body[:cut.start()]
        out.append(Section(h.group(1).strip().lower(), body, _line_of(clean, h.start())))
    return out


def placeholders(tex: str) -> list[tuple[str, int]]:
    """Template markers still in the source: `% SECTION: <name> (to be written)` and a TITLE title."""
    out = []
    for n, ln in enumerate(tex.splitlines(), 1):
        m = re.search(r"%\s*SECTION:\s*(.+?)\s*\(to be written\)", ln)
        if m:
            out.append((m.group(1).strip(), n))
        if re.match(r"\s*\\title\{TITLE\}", ln):
            out.append(("title", n))
    return out


def setresults(results_tex: str, macro: str = "result") -> dict[tuple[str, str], str]:
    """(run, metric) -> the LaTeX value results.tex sets, for \\result (or "change": \\change, "diff": \\diff,
    "stepdiff": \\stepdiff)."""
    out = {}
    for ln in results_tex.splitlines():
        m = _SETRESULT.match(ln.strip())
        if m and m.group(1) == macro:
            out[(m.group(2), m.group(3))] = m.group(4)
    return out


_DROP_ARG = ("label", "ref", "eqref", "autoref", "cref", "Cref", "pageref", "includegraphics", "vspace", "hspace",
             "input", "include", "bibliography", "bibliographystyle", "usepackage", "documentclass", "setlength",
             "graphicspath", "url", "href", "begin", "end", "setcaption", "resizebox", "addtolength", "newcommand")


def to_text(tex: str, values: dict[tuple[str, str], str], changes: dict[tuple[str, str], str] | None = None,
            diffs: dict[tuple[str, str], str] | None = None, steps: dict[tuple[str, str], str] | None = None) -> str:
    """A plain-text rendering of LaTeX prose: \\result macros replaced by their values, citations and
    references by placeholders, other commands dropped, their text arguments kept."""
    s = strip_comments(tex)
    s = re.sub(r"\\begin\{document\}", "", s)

    def _value(m: re.Match) -> str:
        table = {"result": values, "change": changes or {}, "diff": diffs or {}, "stepdiff": steps or {}}[m.group(1)]
        v = table.get((m.group(2).strip(), m.group(3).strip()))
        if v is None:
            return "??"
        return plain_value(v) + ("%" if m.group(1) == "change" else "")

    s = _RESULT.sub(_value, s)
    s = _CITE.sub(" (citation) ", s)
    s = re.sub(r"\\(?:" + "|".join(_DROP_ARG) + r")\*?(?:\[[^\]]*\])?(?:\{[^{}]*\})+", " ", s)
    s = re.sub(r"\\(?:times)\b", "×", s)
    s = s.replace("\\%", "%").replace("~", " ").replace("\\&", "&").replace("\\_", "_").replace("--", "–")
    s = re.sub(r"\\[a-zA-Z@]+\*?(?:\[[^\]]*\])?", " ", s)
    s = re.sub(r"[{}$^]", "", s)
    s = s.replace("\\\\", "\n")
    return re.sub(r"[ \t]+", " ", s)


def source_text(tex: str, results_tex: str | None) -> str:
    """The paper as text when there is no PDF: the source with results.tex's values put in."""
    return to_text(tex, setresults(results_tex or ""), setresults(results_tex or "", "change"),
                   setresults(results_tex or "", "diff"), setresults(results_tex or "", "stepdiff"))


def plain_value(latex_value: str) -> str:
    v = latex_value.replace("\\ensuremath", "").replace("\\times", "×").replace("\\pm", "±").replace("\\ ", " ")
    return re.sub(r"[{}^]", "", v).replace("× 10", "×10")


def read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def bib_entries(bib: str) -> list[dict[str, str]]:
    """key, title and year of each entry, for listing the citable keys in a prompt."""
    out = []
    heads = list(_BIBKEY.finditer(bib))
    for i, h in enumerate(heads):
        if h.group(1).lower() in ("comment", "string", "preamble"):
            continue
        body = bib[h.end():heads[i + 1].start() if i + 1 < len(heads) else len(bib)]
        t = re.search(r"\btitle\s*=\s*[{\"](.*?)[}\"]\s*,?\s*$", body, re.MULTILINE | re.IGNORECASE)
        y = re.search(r"\byear\s*=\s*[{\"]?(\d{4})", body, re.IGNORECASE)
        title_text = re.sub(r"[{}]", "", t.group(1)) if t else ""
        out.append({"key": h.group(2), "title": title_text, "year": y.group(1) if y else ""})
    return out


# ---- a run's statistics as macros -------------------------------------------------------------------

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


def latex_number(plain: str) -> str:
    """stats' plain rendering as LaTeX: "19.2 ± 0.3" -> \\ensuremath{19.2 \\pm 0.3}, minus signs in math."""
    if plain == "n/a":
        return "n/a"
    s = re.sub(r"×10\^(-?\d+)", r"\\times 10^{\1}", plain).replace("±", "\\pm").replace(" [", "\\ [")
    return f"\\ensuremath{{{s}}}" if re.search(r"[-+\\]", s) else s


def stat_macros(seeds: stats.Seeds, *, baseline: str = "run0", keys: Iterable[str] = ()) -> list[str]:
    """results.tex lines from per-seed values (run label -> metric -> values): a \\setresult for every
    metric of every run, "mean ± h" (h: half-width of the 95% t interval) or the plain number for one
    seed; and a \\setdiff for each of `keys` of every run against the baseline: the difference of the
    means with its 95% Welch interval, "+0.006 [-0.002, 0.014]" (the signed difference alone for one seed)."""
    out: list[str] = []
    for run in sorted(seeds, key=lambda r: (r != baseline, r)):
        if not _SAFE_NAME.match(run):
            continue
        for key in sorted(seeds[run]):
            if _SAFE_NAME.match(key):
                out.append(f"\\setresult{{{run}}}{{{key}}}{{{latex_number(stats.format_summary(stats.summarize(seeds[run][key])))}}}")
    for run in sorted(r for r in seeds if r != baseline and _SAFE_NAME.match(r)):
        for key in keys:
            d = stats.against(seeds, run, baseline, key) if _SAFE_NAME.match(key) else None
            if d is not None and d.diff is not None:
                out.append(f"\\setdiff{{{run}}}{{{key}}}{{{latex_number(stats.format_difference(d))}}}")
    return out
