"""aider's markdown chat history (`.aider.chat.history.md`, AI Scientist's `<idea>_aider.txt`).

Its grammar: `# aider chat started at ...` opens a session; `#### ` lines are the user's message;
`> ` lines are aider's own output (token counts, applied edits, lint results); everything else is the
model's reply. Fenced code in a reply is the reply's, whatever its lines start with."""

from __future__ import annotations

import re

from .items import (
    APPLIED,
    IDEA_PROMPT,
    RUN_COMPLETED,
    RUN_FAILED,
    RUN_TIMED_OUT,
    IdeaInfo,
    Item,
    Outcome,
    Parsed,
    Prompt,
    Reply,
    StageMark,
    idea_from_paths,
    parse_idea_prompt,
    results_of,
    stage_of_prompt,
    tokens_line,
)

HEADER = re.compile(r"^# aider chat started at (.+?)\s*$")
LINT = "# Fix any errors below, if possible."
EDIT_FAILED = ("did not conform to the edit format", "SearchReplaceNoExactMatch", "failed to match", "Unable to find a match")


def looks_like(text: str) -> bool:
    head = text[:200_000]
    return bool(re.search(r"^# aider chat started at ", head, re.MULTILINE)) or (
        bool(re.search(r"^#### \S", head, re.MULTILINE)) and bool(re.search(r"^> Tokens: ", head, re.MULTILINE))
    )


def parse(text: str) -> Parsed:
    idea = IdeaInfo()
    items: list[Item] = []
    mode: str | None = None
    buf: list[str] = []
    start = 0
    in_fence = False
    reply: Reply | None = None
    stage = None

    def flush() -> None:
        nonlocal buf, mode, reply, stage
        if mode == "user":
            msg = "\n".join(buf).strip("\n")
            _user(msg, start)
        elif mode == "assistant":
            body = "\n".join(buf).strip()
            if body:
                reply = Reply(text=body, line=start)
                items.append(reply)
        elif mode == "tool":
            _tool(buf, start)
        buf, mode = [], None

    def _user(msg: str, line: int) -> None:
        nonlocal stage
        idea_from_paths(msg, idea)
        if msg.startswith(IDEA_PROMPT):
            parse_idea_prompt(msg, idea)
            if stage is None:
                stage = "experiments"
                items.append(StageMark(stage="experiments", status="started", line=line))
        elif m := RUN_FAILED.match(msg):
            items.append(Outcome(kind="failed", line=line, error=m[1].strip()))
        elif m := RUN_TIMED_OUT.match(msg):
            items.append(Outcome(kind="timeout", line=line, error=f"timed out after {m[1]} seconds"))
        elif m := RUN_COMPLETED.match(msg + "\n\n"):
            data, err = results_of(m[2])
            items.append(Outcome(kind="completed", line=line, run=int(m[1]), exit_code=0, results=data, results_error=err))
        else:
            s = stage_of_prompt(msg)
            if s and s != stage:
                stage = s
                items.append(StageMark(stage=s, status="started", line=line))
        items.append(Prompt(text=msg, line=line))

    def _tool(lines: list[str], line: int) -> None:
        nonlocal reply
        for i, ln in enumerate(lines):
            if reply is not None and tokens_line(reply, ln):
                continue
            if reply is not None and (m := APPLIED.match(ln)):
                if m[1] not in reply.applied:
                    reply.applied.append(m[1])
                continue
            if reply is not None and any(s in ln for s in EDIT_FAILED):
                reply.failed = reply.failed or ln.strip()
                continue
            if ln.strip() == LINT:
                lint = "\n".join(lines[i:]).strip()
                items.append(Prompt(text=lint, line=line + i, reflection=True))
                break
        reply = None

    lines = text.splitlines()
    for n, raw in enumerate(lines, start=1):
        ln = raw.rstrip("\n")
        if mode == "assistant" and in_fence:
            buf.append(ln)
            if ln.startswith("```"):
                in_fence = False
            continue
        if m := HEADER.match(ln):
            flush()
            idea.started = idea.started or m[1]
            continue
        if ln.startswith("####"):
            if mode != "user":
                flush()
                mode, start = "user", n
            content = ln[4:]
            buf.append((content.removeprefix(" ")).rstrip())
            continue
        if ln.startswith("> ") or ln.rstrip() == ">":
            if mode != "tool":
                flush()
                mode, start = "tool", n
            buf.append(ln[2:].rstrip())
            continue
        if not ln.strip():
            if mode == "assistant":
                buf.append("")
            elif mode == "user":
                flush()
            continue
        if mode != "assistant":
            flush()
            mode, start = "assistant", n
        buf.append(ln)
        if ln.startswith("```"):
            in_fence = True
    flush()
    return Parsed(form="aider-markdown", items=items, idea=idea)
