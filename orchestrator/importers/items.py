"""What a foreign log says, in order: the parsers' common output, whatever the log's form.

Both forms (aider's markdown chat history, AI Scientist's console capture) become a list of these
items; `builder.py` turns them into journal events with the AI Scientist loop's semantics."""

from __future__ import annotations

import ast
import difflib
import re
from dataclasses import dataclass, field
from typing import Any, Literal

# AI Scientist's prompts (ai_scientist/perform_experiments.py, perform_writeup.py, perform_review.py), as
# the start of a user message. Only what is needed to tell which stage a message belongs to.
IDEA_PROMPT = "Your goal is to implement the following idea:"
RUN_FAILED = re.compile(r"^Run failed with the following error\s?(.*)", re.DOTALL)
RUN_TIMED_OUT = re.compile(r"^Run timed out after (\d+(?:\.\d+)?) seconds")
RUN_COMPLETED = re.compile(r"^Run (\d+) completed\. Here are the results:\s*\n(.*?)(?:\n\s*\n|\Z)", re.DOTALL)
PLOT_PROMPTS = ("Great job! Please modify `plot.py`", "Plotting failed with the following error",
                "Plotting timed out after", "Please modify `notes.txt` with a description of what each plot shows")
WRITEUP_PROMPTS = ("We've provided the `latex/template.tex` file", "Please fill in the ", "Great job! Now criticize and refine",
                   "Criticize and refine the ")
CITATION_PROMPTS = ("Search has recovered the following articles", "The following citations have just been added")
COMPILE_PROMPTS = ("Please fix the following LaTeX errors", "Reference ", "The image ", "Duplicate figures found",
                   "Duplicate section header found")
REVIEW_PROMPTS = ("The following review has been created for your research paper",)

TOKENS = re.compile(
    r"Tokens: (?P<sent>[\d.,]+[kKmM]?) sent,(?:[^,]*?,)*? (?P<recv>[\d.,]+[kKmM]?) received\."
    r"(?: Cost: \$(?P<cost>[\d.]+) (?:message|request), \$(?P<session>[\d.]+) session\.)?"
)
APPLIED = re.compile(r"^Applied edit to (.+?)\s*$")
BLOCK = re.compile(
    r"^(?P<file>[^\n`]*?)\n```[^\n]*\n<<<<<<< SEARCH\n(?P<search>.*?)^=======\n(?P<replace>.*?)^>>>>>>> REPLACE",
    re.DOTALL | re.MULTILINE,
)


@dataclass
class Prompt:
    """A message to the agent (the chat history's `####` lines, or a reflection like aider's lint output)."""

    text: str
    line: int
    reflection: bool = False  # aider's own follow-up (lint errors), not the pipeline's


@dataclass
class Reply:
    """One agent reply, with what aider printed after it."""

    text: str
    line: int
    sent: int = 0
    received: int = 0
    cost: float = 0.0
    session_cost: float | None = None
    applied: list[str] = field(default_factory=list)
    failed: str | None = None
    reflection: bool = False  # a reply to aider's own follow-up (lint errors) within the same request


@dataclass
class Iteration:
    """AI Scientist's `Currently on iteration I of run R` (console form): the next reply is an attempt at run R."""

    run: int
    iteration: int
    line: int


@dataclass
class Outcome:
    """What running the experiment gave, as the pipeline reported it."""

    kind: Literal["failed", "timeout", "completed"]
    line: int
    run: int | None = None
    exit_code: int | None = None
    error: str = ""
    results: dict[str, Any] | None = None
    results_error: str | None = None


@dataclass
class StageMark:
    stage: str
    status: Literal["started", "done", "failed"]
    line: int
    text: str = ""


@dataclass
class Note:
    level: Literal["info", "warning", "error"]
    text: str
    line: int
    stage: str | None = None


Item = Prompt | Reply | Iteration | Outcome | StageMark | Note


@dataclass
class IdeaInfo:
    name: str | None = None
    title: str | None = None
    experiment: str | None = None
    max_runs: int | None = None
    template: str | None = None
    baseline: dict[str, Any] | None = None
    started: str | None = None  # the log's own start time, as written
    model: str | None = None


@dataclass
class Parsed:
    form: str  # "aider-markdown" or "ai-scientist-console"
    items: list[Item]
    idea: IdeaInfo


# -- helpers shared by the parsers ----------------------------------------------------------------
def count(text: str) -> int:
    """aider's token counts: `12k`, `3.1k`, `7,394`, `1.2M`."""
    t = text.replace(",", "").strip()
    mult = 1
    if t[-1:] in "kK":
        mult, t = 1000, t[:-1]
    elif t[-1:] in "mM":
        mult, t = 1_000_000, t[:-1]
    try:
        return round(float(t) * mult)
    except ValueError:
        return 0


def tokens_line(reply: Reply, line: str) -> bool:
    m = TOKENS.search(line)
    if not m:
        return False
    reply.sent += count(m["sent"])
    reply.received += count(m["recv"])
    if m["cost"]:
        reply.cost += float(m["cost"])
        reply.session_cost = float(m["session"])
    return True


def literal(text: str) -> Any:
    """A Python literal as AI Scientist prints results (`{'a': 0, 'b': None, 'c': nan}`); raises ValueError."""
    node = ast.parse(text.strip(), mode="eval").body

    def conv(n: ast.AST) -> Any:
        if isinstance(n, ast.Constant):
            return n.value
        if isinstance(n, ast.Dict):
            return {conv(k): conv(v) for k, v in zip(n.keys, n.values, strict=True) if k is not None}
        if isinstance(n, (ast.List, ast.Tuple)):
            return [conv(x) for x in n.elts]
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, (ast.USub, ast.UAdd)):
            v = conv(n.operand)
            if isinstance(v, (int, float)):
                return -v if isinstance(n.op, ast.USub) else v
        if isinstance(n, ast.Name) and n.id in ("nan", "inf", "NaN", "Infinity"):
            return float("nan") if n.id.lower() == "nan" else float("inf")
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "float" and len(n.args) == 1:
            return float(conv(n.args[0]))
        raise ValueError(f"not a literal: {ast.unparse(n)[:60]}")

    return conv(node)


def results_of(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """Results as printed after `Run N completed. Here are the results:`."""
    try:
        data = literal(text)
    except (SyntaxError, ValueError) as exc:
        return None, f"the reported results are not readable: {exc}"
    if not isinstance(data, dict):
        return None, "the reported results are not a dictionary"
    return data, None


@dataclass
class Block:
    file: str
    search: str
    replace: str


def blocks(text: str) -> list[Block]:
    """aider's SEARCH/REPLACE blocks in a reply."""
    out = []
    for m in BLOCK.finditer(text):
        fname = m["file"].strip().strip("`*").strip()
        out.append(Block(file=fname or "?", search=m["search"], replace=m["replace"]))
    return out


def block_diff(bs: list[Block]) -> tuple[str, int, int]:
    """A unified diff of the blocks (each block a hunk of its file, no line numbers known), +added, -removed."""
    parts: list[str] = []
    added = removed = 0
    by_file: dict[str, list[Block]] = {}
    for b in bs:
        by_file.setdefault(b.file, []).append(b)
    for fname, items in by_file.items():
        parts.append(f"--- a/{fname}\n+++ b/{fname}\n")
        for b in items:
            old, new = b.search.splitlines(), b.replace.splitlines()
            parts.append(f"@@ SEARCH/REPLACE block: {len(old)} -> {len(new)} lines @@\n")
            for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
                if tag == "equal":
                    parts += [f" {x}\n" for x in old[i1:i2]]
                    continue
                parts += [f"-{x}\n" for x in old[i1:i2]]
                parts += [f"+{x}\n" for x in new[j1:j2]]
                removed += i2 - i1
                added += j2 - j1
    return "".join(parts), added, removed


def stage_of_prompt(text: str) -> str | None:
    """Which AI Scientist stage a user message belongs to (None: an experiments prompt or unknown)."""
    t = text.lstrip()
    if t.startswith(PLOT_PROMPTS):
        return "plots"
    if t.startswith(WRITEUP_PROMPTS) or t.startswith(CITATION_PROMPTS):
        return "writeup"
    if t.startswith(COMPILE_PROMPTS) and ("references.bib" in t or "LaTeX" in t or "figure" in t.lower()
                                          or "section header" in t):
        return "compile"
    if t.startswith(REVIEW_PROMPTS):
        return "review"
    return None


def parse_idea_prompt(text: str, idea: IdeaInfo) -> None:
    """The first experiments prompt names the idea, the run budget and the baseline results."""
    m = re.search(r"implement the following idea: (.*?)\.\s*\n", text)
    if m:
        idea.title = idea.title or m[1].strip()
    m = re.search(r"The proposed experiment is as follows: (.*?)\.?\s*\nYou are given a total of up to (\d+) runs",
                  text, re.DOTALL)
    if m:
        idea.experiment = idea.experiment or m[1].strip()
        idea.max_runs = int(m[2])
    m = re.search(r"the baseline results are as follows:\s*\n\s*(\{.*?\})\s*\n", text, re.DOTALL)
    if m:
        try:
            data = literal(m[1])
            if isinstance(data, dict):
                idea.baseline = data
        except (SyntaxError, ValueError):
            pass


RESULTS_PATH = re.compile(r"results/(?P<template>[A-Za-z0-9_.-]+)/(?P<stamp>\d{8}_\d{6})_(?P<name>[A-Za-z0-9_.-]+)/")


def idea_from_paths(text: str, idea: IdeaInfo) -> None:
    """AI Scientist's workspace paths (`results/<template>/<stamp>_<idea>/`) in tracebacks name the template and idea."""
    m = RESULTS_PATH.search(text)
    if m:
        idea.template = idea.template or m["template"]
        idea.name = idea.name or m["name"]


# -- terminal captures: colours, rich panels, wrapped lines --------------------------------------------
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
PANEL_TOP = re.compile(r"^\s*[╭┌┏╔][─━═].*[╮┐┓╗]\s*$")
PANEL_BOTTOM = re.compile(r"^\s*[╰└┗╚][─━═].*[╯┘┛╝]\s*$")
PANEL_SIDE = re.compile(r"^\s*[│┃║] ?(.*?) ?[│┃║]\s*$")


def clean_capture(text: str) -> str:
    """A terminal capture as plain lines: colour codes dropped, rich panels' borders taken off and the lines
    rich wrapped inside a panel joined again (a line is a wrap when the next one starts with a word that would
    not have fitted after it; a line filled to the panel's width is a word folded in two)."""
    text = ANSI.sub("", text)
    if not any(c in text for c in "│┃║"):
        return text
    out: list[str] = []
    width = 0
    prev = -1  # the length of the last panel line out, when the next one may continue it; -1: it may not
    for line in text.splitlines():
        if PANEL_TOP.match(line):
            width, prev = len(line.strip()) - 4, -1
            continue
        if width and PANEL_BOTTOM.match(line):
            width, prev = 0, -1
            continue
        m = PANEL_SIDE.match(line) if width else None
        if m is None:
            out.append(line)
            prev = -1
            continue
        content = m[1].rstrip()
        if prev >= 0 and content and not content[0].isspace():
            if prev >= width:  # a word longer than the panel, folded at its edge
                out[-1] += content
                prev = len(content)
                continue
            if prev + 1 + len(content.split(" ", 1)[0]) > width:  # the next word did not fit: rich wrapped here
                out[-1] += " " + content
                prev = len(content)
                continue
        out.append(content)
        prev = len(content) if content else -1
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def _balance(text: str, depth: int, quote: str | None) -> tuple[int, str | None, int]:
    """Brace depth after `text` (Python string literals skipped); (depth, open quote, index where depth hit 0 or -1)."""
    i = 0
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = None
        elif c in "'\"":
            quote = c
        elif c in "{[(":
            depth += 1
        elif c in "}])":
            depth -= 1
            if depth == 0:
                return depth, quote, i
        i += 1
    return depth, quote, -1


def dict_in_lines(lines: list[str], start: int, col: int = 0, limit: int = 80) -> tuple[dict[str, Any] | None, str | None, int]:
    """The dict literal that opens at lines[start][col:] (a `{`), however the terminal wrapped it: across lines
    at word boundaries (rich), folded at the edge (a terminal's hard wrap) or pretty-printed one key a line.
    (data, None, index after its last line) or (None, why not, index after what was read)."""
    frags: list[str] = []
    depth, quote = 0, None
    k = start
    text = lines[start][col:]
    while k < len(lines) and k < start + limit:
        depth, quote, end = _balance(text, depth, quote)
        if end >= 0:
            frags.append(text[:end + 1])
            break
        frags.append(text)
        k += 1
        if k < len(lines):
            text = lines[k].lstrip() if quote is None else lines[k]
    else:
        return None, "the reported results are not readable: the dictionary does not close", k
    # rich keeps the space it broke at (`..., 'layer': 19, ` then the next line), a terminal's fold loses
    # nothing, a pretty print breaks between tokens: joined as they are. A capture whose trailing spaces were
    # trimmed lost the space: joined with one.
    joins = ["".join(frags), " ".join(f.rstrip() for f in frags)]
    err = "the reported results are not readable"
    for joined in dict.fromkeys(joins):
        data, why = results_of(joined)
        if data is not None:
            return data, None, k + 1
        err = why or err
    return None, err, k + 1


NOTES_RUN = re.compile(r"^\s*#{1,4}\s*Run (\d+)\b")
NOTES_RESULTS = re.compile(r"\bResults?\s*:\s*(?=\{)")


def notes_results(text: str) -> dict[int, dict[str, Any]]:
    """Results the agent wrote into notes.txt: `## Run N: ...` then `Results: {...}` (what AI Scientist's
    prompt asks it to record). A later mention of the same run wins (a REPLACE comes after its SEARCH)."""
    if "notes.txt" not in text:
        return {}
    lines = text.splitlines()
    out: dict[int, dict[str, Any]] = {}
    run: int | None = None
    i = 0
    while i < len(lines):
        ln = lines[i]
        if m := NOTES_RUN.match(ln):
            run = int(m[1])
        elif ln.strip() in ("=======", ">>>>>>> REPLACE", "<<<<<<< SEARCH") or ln.startswith("```"):
            run = None if ln.strip() != "=======" else run
        m = NOTES_RESULTS.search(ln) if run is not None else None
        if m is None and run is not None and re.search(r"\bResults?\s*:\s*$", ln) and lines[i + 1:i + 2] \
                and lines[i + 1].lstrip().startswith("{"):
            i += 1  # the dictionary wrapped onto the next line
            m = re.match(r"\s*", lines[i])
        if m is not None:
            data, _err, nxt = dict_in_lines(lines, i, m.end())
            if data is not None:
                out[run] = data
                i = max(nxt, i + 1)
                continue
        i += 1
    return out
