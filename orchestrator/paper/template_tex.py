"""A template's own paper template (AI Scientist's `latex/template.tex`) as the paper: its preamble, style
files and section headings are kept; our results macros and `results.tex` are added after its packages;
each section's body becomes our placeholder for the writeup stage (`% SECTION: <name> (to be written)`);
the sections it lacks are added in our order; and the bibliography it embeds
(`\\begin{filecontents}{references.bib} ... \\end{filecontents}`) becomes latex/references.bib, so its keys
are citable (the citation checks read that file) and the entries the writeup adds are kept beside them
(left in the source, filecontents would not rewrite a references.bib that exists)."""

from __future__ import annotations

import re

from .tex import PLACEHOLDER

TEMPLATE_TEX = "latex/template.tex"
RESULTS_PACKAGE = "orchestrate-results"
TABLE_AND_FIGURES = "\n\\resultstable\n\\searchpathtable\n\\ablationtable\n\\resultfigures\n"  # after the results placeholder
# (marker, heading when the template lacks the section, words that name it in a heading), in paper order
SECTIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("introduction", "Introduction", ("intro",)),
    ("background", "Background", ("background", "preliminar")),
    ("method", "Method", ("method", "approach")),
    ("experimental setup", "Experimental Setup", ("setup", "experimental setting", "experimental design")),
    ("results", "Results", ("result", "experiment", "evaluation")),
    ("related work", "Related Work", ("related",)),
    ("conclusion", "Conclusion", ("conclu", "discussion")),
)
_FILECONTENTS = re.compile(r"\\begin\{filecontents\*?\}(?:\[[^\]]*\])?\{([^}]*)\}\n?(.*?)\\end\{filecontents\*?\}\n?",
                           re.DOTALL)
_SECTION = re.compile(r"^[ \t]*\\section\*?\{", re.MULTILINE)
_TAIL = re.compile(r"^[ \t]*(?:\\bibliographystyle|\\bibliography\{|\\appendix|\\end\{document\})", re.MULTILINE)
_LABEL = re.compile(r"\A(?:[ \t]*\n)*[ \t]*\\label\{[^}]*\}[ \t]*\n?")


class TemplateTexError(ValueError):
    """latex/template.tex cannot be the paper's template (no \\begin{document}, say)."""


def marker(name: str) -> str:
    return f"% SECTION: {name} {PLACEHOLDER}"


def _braced(text: str, start: int) -> int:
    """The index just past the brace group opening at text[start] ('{'), or -1 when it never closes."""
    depth = 0
    for i in range(start, len(text)):
        c = text[i]
        if c == "\\":
            continue
        if c == "{" and text[i - 1] != "\\":
            depth += 1
        elif c == "}" and text[i - 1] != "\\":
            depth -= 1
            if depth == 0:
                return i + 1
    return -1


def bibliography(tex: str) -> str:
    """The BibTeX text a template embeds in filecontents blocks that write a .bib file."""
    return "\n".join(m.group(2).strip() for m in _FILECONTENTS.finditer(tex) if m.group(1).strip().endswith(".bib"))


def _classify(heading: str, used: set[str]) -> str | None:
    h = heading.lower()
    for name, _title, words in SECTIONS:
        if name not in used and any(w in h for w in words):
            return name
    return None


def _title(preamble: str) -> str:
    m = re.search(r"\\title\s*\{", preamble)
    if m is None:
        return preamble.rstrip("\n") + "\n\\title{TITLE}\n"
    end = _braced(preamble, m.end() - 1)
    if end < 0:
        raise TemplateTexError("its \\title{...} never closes")
    return preamble[:m.start()] + "\\title{TITLE}" + preamble[end:]


def _abstract(front: str) -> str:
    """The front matter with the abstract's body as our placeholder (an abstract added after \\maketitle)."""
    m = re.search(r"\\begin\{abstract\}(.*?)\\end\{abstract\}", front, re.DOTALL)
    body = "\\begin{abstract}\n" + marker("abstract") + "\n\\end{abstract}"
    if m is not None:
        return front[:m.start()] + body + front[m.end():]
    mk = front.find("\\maketitle")
    at = mk + len("\\maketitle") if mk >= 0 else len(front)
    return front[:at] + "\n\n" + body + "\n" + front[at:]


def paper_from_template(tex: str) -> tuple[str, str]:
    """(paper.tex, the embedded bibliography) from a template.tex's text."""
    bib = bibliography(tex)
    tex = _FILECONTENTS.sub(lambda m: "" if m.group(1).strip().endswith(".bib") else m.group(0), tex)
    begin = tex.find("\\begin{document}")
    if begin < 0 or "\\documentclass" not in tex[:begin]:
        raise TemplateTexError("no \\documentclass ... \\begin{document}: not a LaTeX document")
    preamble = _title(tex[:begin]).rstrip("\n")
    preamble += (f"\n\\usepackage{{{RESULTS_PACKAGE}}} % added by orchestrate: \\result, \\diff, \\change (not to be edited)"
                 "\n\\input{results}          % generated from validated runs: \\result values, the results table, figures\n\n")
    body = tex[begin:]
    tail_m = _TAIL.search(body, max((m.end() for m in _SECTION.finditer(body)), default=0))
    tail = body[tail_m.start():] if tail_m else "\\end{document}\n"
    body = body[:tail_m.start()] if tail_m else body.replace("\\end{document}", "")
    heads = list(_SECTION.finditer(body))
    front = _abstract(body[:heads[0].start()] if heads else body)
    used: set[str] = set()
    parts: list[tuple[int | None, str]] = []  # (index in SECTIONS or None, text)
    order = [s[0] for s in SECTIONS]
    for i, h in enumerate(heads):
        close = _braced(body, h.end() - 1)
        if close < 0:
            raise TemplateTexError(f"a \\section heading never closes: {body[h.start():h.start() + 60]!r}")
        end = heads[i + 1].start() if i + 1 < len(heads) else len(body)
        heading, rest = body[h.start():close], body[close:end]
        name = _classify(body[h.end():close - 1], used)
        if name is None:  # a section of the template's own: kept as it is
            parts.append((None, heading + rest))
            continue
        used.add(name)
        label = _LABEL.match(rest)
        text = heading + ("\n" + label.group(0).strip() if label else "") + "\n" + marker(name) + "\n"
        if name == "results":
            text += TABLE_AND_FIGURES
        parts.append((order.index(name), text + "\n"))
    for idx, (name, title, _words) in enumerate(SECTIONS):
        if name in used:
            continue
        text = f"\\section{{{title}}}\n{marker(name)}\n" + (TABLE_AND_FIGURES if name == "results" else "") + "\n"
        after = [k for k, (j, _t) in enumerate(parts) if j is not None and j < idx]
        before = [k for k, (j, _t) in enumerate(parts) if j is not None and j > idx]
        at = after[-1] + 1 if after else before[0] if before else len(parts)
        parts.insert(at, (idx, text))
    if "\\bibliography{" in tail:
        tail = re.sub(r"\\bibliography\{[^}]*\}", lambda _m: "\\bibliography{references}", tail, count=1)
    else:
        tail = tail.replace("\\end{document}", "\\bibliographystyle{plainnat}\n\\bibliography{references}\n\n\\end{document}", 1)
    return preamble + front.rstrip() + "\n\n" + "".join(t for _j, t in parts) + tail, bib
