"""The LaTeX source read as structure: sections, citations, figures, \\result uses, bibliography keys,
and a plain-text rendering for when no PDF exists. Regular expressions over a known template, not a
TeX parser: good enough for the paper the orchestrator itself set up."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

SECTIONS = ("title", "abstract", "introduction", "background", "method", "experimental setup", "results",
            "related work", "conclusion")
PLACEHOLDER = "(to be written)"

_COMMENT = re.compile(r"(?<!\\)%.*$")
_CITE = re.compile(r"\\(?:no)?cite[a-zA-Z]*\*?(?:\[[^\]]*\]){0,2}\{([^}]*)\}")
_GRAPHICS = re.compile(r"\\includegraphics\*?(?:\[[^\]]*\])?\{([^}]*)\}")
_RESULT = re.compile(r"\\(result|change)\{([^}]*)\}\{([^}]*)\}")
_SECTION = re.compile(r"\\section\*?\{([^}]*)\}")
_BIBKEY = re.compile(r"@\s*([A-Za-z]+)\s*[{(]\s*([^,\s]+)\s*,")
_SETRESULT = re.compile(r"\\set(result|change)\{([^}]*)\}\{([^}]*)\}\{(.*)\}\s*$")


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
    """(run, metric, line, macro) for every \\result and \\change in the source."""
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
    """(run, metric) -> the LaTeX value results.tex sets, for \\result (or "change": \\change)."""
    out = {}
    for ln in results_tex.splitlines():
        m = _SETRESULT.match(ln.strip())
        if m and m.group(1) == macro:
            out[(m.group(2), m.group(3))] = m.group(4)
    return out


_DROP_ARG = ("label", "ref", "eqref", "autoref", "cref", "Cref", "pageref", "includegraphics", "vspace", "hspace",
             "input", "include", "bibliography", "bibliographystyle", "usepackage", "documentclass", "setlength",
             "graphicspath", "url", "href", "begin", "end", "setcaption", "resizebox", "addtolength", "newcommand")


def to_text(tex: str, values: dict[tuple[str, str], str], changes: dict[tuple[str, str], str] | None = None) -> str:
    """A plain-text rendering of LaTeX prose: \\result macros replaced by their values, citations and
    references by placeholders, other commands dropped, their text arguments kept."""
    s = strip_comments(tex)
    s = re.sub(r"\\begin\{document\}", "", s)

    def _value(m: re.Match) -> str:
        table = values if m.group(1) == "result" else (changes or {})
        v = table.get((m.group(2).strip(), m.group(3).strip()))
        if v is None:
            return "??"
        return _plain(v) + ("%" if m.group(1) == "change" else "")

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
    return to_text(tex, setresults(results_tex or ""), setresults(results_tex or "", "change"))


def _plain(latex_value: str) -> str:
    v = latex_value.replace("\\ensuremath", "").replace("\\times", "×")
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
