"""What goes back to the agent after a failure: short and relevant, never a blind character cut."""

from __future__ import annotations

import re
from pathlib import Path

from .events import Feedback

TB_START = "Traceback (most recent call last):"
_FRAME = re.compile(r'^\s*File "([^"]+)", line (\d+), in (.+)$')


def _read_tail(path: Path, max_bytes: int = 200_000) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            return fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def tokens(text: str) -> int:
    """A cheap token estimate (about four characters a token) used to bound feedback."""
    return (len(text) + 3) // 4


def summarize_traceback(stderr: str, *, frames: int = 4, workdir: str | None = None) -> str | None:
    """The exception line and the last `frames` frames of the last traceback in stderr, or None."""
    idx = stderr.rfind(TB_START)
    if idx == -1:
        return None
    lines = stderr[idx:].splitlines()[1:]
    entries: list[list[str]] = []
    exc_lines: list[str] = []
    for line in lines:
        if _FRAME.match(line):
            entries.append([line])
        elif line.startswith((" ", "\t")) and entries and not exc_lines:
            if len(entries[-1]) < 4:  # the code line and its carets
                entries[-1].append(line)
        elif line.strip():
            exc_lines.append(line)
    kept = entries[-frames:]
    out = [TB_START]
    if len(entries) > len(kept):
        out.append(f"  ... {len(entries) - len(kept)} earlier frames omitted ...")
    for entry in kept:
        for line in entry:
            out.append(line.replace(workdir + "/", "") if workdir else line)
    out += exc_lines[:6]
    return "\n".join(out)


def tail_lines(text: str, *, max_tokens: int) -> str:
    """The last whole lines of text that fit in max_tokens."""
    lines = text.rstrip("\n").splitlines()
    kept: list[str] = []
    budget = max_tokens
    for line in reversed(lines):
        if len(line) > 400:
            line = line[:200] + " [...] " + line[-150:]
        cost = tokens(line) + 1
        if cost > budget:
            break
        kept.append(line)
        budget -= cost
    kept.reverse()
    if len(kept) < len(lines):
        kept.insert(0, f"[... {len(lines) - len(kept)} earlier lines omitted ...]")
    return "\n".join(kept)


def failure_summary(stdout_path: Path, stderr_path: Path, *, max_tokens: int = 600,
                    workdir: str | None = None) -> tuple[str | None, str, str]:
    """(traceback summary or None, stderr tail, stdout tail), together within about max_tokens."""
    err = _read_tail(stderr_path)
    out = _read_tail(stdout_path)
    tb = summarize_traceback(err, workdir=workdir)
    used = tokens(tb) if tb else 0
    err_tail = "" if tb else tail_lines(err, max_tokens=max(80, (max_tokens - used) // 2))
    out_tail = tail_lines(out, max_tokens=max(60, (max_tokens - used - tokens(err_tail)) // 2))
    return tb, err_tail, out_tail


def for_run(stdout_path: str | Path, stderr_path: str | Path, *, workdir: Path | str | None = None) -> Feedback:
    """The agent's feedback on a failed run of its code (an experiment, a plot script)."""
    tb, err_tail, out_tail = failure_summary(Path(stdout_path), Path(stderr_path),
                                             workdir=None if workdir is None else str(workdir))
    return Feedback(traceback=tb, stderr_tail=err_tail, stdout_tail=out_tail)
