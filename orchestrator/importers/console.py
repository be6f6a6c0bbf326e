"""AI Scientist's console capture (`log.txt`, or a terminal's tee): the launcher's and the experiment
loop's prints around aider's console output.

Markers (launch_scientist.py, perform_experiments.py and the common forks that add progress prints):
`*Starting idea: <stamp>_<name>*`, `*Starting Experiments*`, `Currently on iteration I of run R`,
aider's `Tokens: ... sent, ... received. Cost: ...` and `Applied edit to F`, `coder_out: <reply>`,
`Run R failed with return code C` + `Run failed with the following error <stderr>`,
`Run R timed out after S seconds`, `Run R completed. Here are the results:` + the results,
`*Starting Writeup*`, `GENERATING LATEX`, `Done writeup`, `*Starting Review*`, `FINISHED IDEA`.
Results a capture does not show are read from `run_R/final_info.json` beside the log when there."""

from __future__ import annotations

import json
import re
from pathlib import Path

from .items import (
    APPLIED,
    IDEA_PROMPT,
    IdeaInfo,
    Item,
    Iteration,
    Note,
    Outcome,
    Parsed,
    Reply,
    StageMark,
    clean_capture,
    dict_in_lines,
    idea_from_paths,
    parse_idea_prompt,
    tokens_line,
)

TS = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
STARTING_IDEA = re.compile(r"^\*Starting idea: (?:(\d{8}_\d{6})_)?(.+?)\*$")
STARTING = re.compile(r"^\*Starting (Experiments|Writeup|Review|Improvement)\*$")
ITERATION = re.compile(r"^Currently on iteration (\d+) of run (\d+)")
CODER_OUT = re.compile(r"^coder_out: ?(.*)$")
FAILED = re.compile(r"^Run (\d+) failed with return code (-?\d+)")
ERROR = re.compile(r"^Run failed with the following error ?(.*)$")
TIMEOUT = re.compile(r"^Run (\d+) timed out after (\d+(?:\.\d+)?) seconds")
COMPLETED = re.compile(r"^Run (\d+) completed\. Here are the results:\s*(.*)$")
EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Warning)\b(:.*)?$")
# Results a pipeline (or a fork of it) printed itself: `Results: {...}`, `Run 2 results: {...}`, `final_info: {...}`,
# or a bare dict literal (rich's pretty print opens with `{` alone on its line). At column 0 only: aider's
# rendering of a reply indents its code blocks, so a notes edit is not taken for the pipeline's print.
PRINTED = re.compile(r"^(?:Run (\d+) )?(?:final[ _]info|final results|results|metrics)\s*[:=]\s*(?=\{)"
                     r"|^(?=\{\s*$)|^(?=\{\s*['\"])", re.IGNORECASE)
MODEL = re.compile(r"^(?:Main model|Model): (\S+)")
STAGES = {"Experiments": "experiments", "Writeup": "writeup", "Review": "review", "Improvement": "review"}
SIMPLE = [
    (re.compile(r"^Max iterations reached"), lambda m: Note("warning", "max iterations reached for a run", 0, "experiments")),
    (re.compile(r"^Not all experiments completed\."),
     lambda m: Note("warning", "not all experiments completed", 0, "experiments")),
    (re.compile(r"^Error during experiments: (.*)"),
     lambda m: Note("error", f"error during experiments: {m[1]}", 0, "experiments")),
    (re.compile(r"^Experiments failed for idea (.*)"), lambda m: StageMark("experiments", "failed", 0, m[0])),
    (re.compile(r"^Plotting failed with return code (-?\d+)"), lambda m: Note("warning", m[0], 0, "plots")),
    (re.compile(r"^Plotting timed out after"), lambda m: Note("warning", m[0], 0, "plots")),
    (re.compile(r"^GENERATING LATEX$"), lambda m: StageMark("compile", "started", 0)),
    (re.compile(r"^FINISHED GENERATING LATEX$"), lambda m: StageMark("compile", "done", 0)),
    (re.compile(r"^Done writeup$"), lambda m: StageMark("writeup", "done", 0)),
    (re.compile(r"^Failed to perform writeup: (.*)"), lambda m: StageMark("writeup", "failed", 0, m[0])),
    (re.compile(r"^Failed to perform review: (.*)"), lambda m: StageMark("review", "failed", 0, m[0])),
    (re.compile(r"^Failed to perform improvement: (.*)"), lambda m: StageMark("review", "failed", 0, m[0])),
    (re.compile(r"^Failed to evaluate idea (.*)"), lambda m: Note("error", m[0], 0)),
    (re.compile(r"^FINISHED IDEA$"), lambda m: StageMark("*", "done", 0)),
]


def looks_like(text: str) -> bool:
    head = clean_capture(text[:200_000])
    return any(re.search(p, head, re.MULTILINE) for p in (
        r"^Currently on iteration \d+ of run \d+", r"^Run \d+ failed with return code", r"^coder_out:",
        r"^\*Starting (Experiments|Writeup|Review)\*", r"^\*Starting idea: ",
    ))


def _is_marker(line: str) -> bool:
    s = line.strip()
    return bool(
        TS.match(s) or STARTING_IDEA.match(s) or STARTING.match(s) or ITERATION.match(s) or CODER_OUT.match(s)
        or FAILED.match(s) or ERROR.match(s) or TIMEOUT.match(s) or COMPLETED.match(s) or s.startswith("Tokens: ")
        or APPLIED.match(s) or any(p.match(s) for p, _ in SIMPLE) or PRINTED.match(line) is not None
    )


def _rendered_or_stderr(line: str) -> bool:
    """aider's rich rendering pads every line to the console's width; the plain print does not. The
    experiment's stderr (a traceback, tqdm bars) follows the plain reply when a run fails."""
    pad = len(line) - len(line.rstrip())
    return (pad >= 2 or line.startswith(("Traceback (most recent call last):", '  File "'))
            or re.match(r"^\s*\d+%\|", line) is not None)


def _results_file(log_dir: Path, run: int) -> tuple[dict | None, str | None]:
    """AI Scientist keeps run_R/final_info.json beside its log; the model saw `{k: v["means"]}` of it."""
    path = log_dir / f"run_{run}" / "final_info.json"
    if not path.is_file():
        return None, None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        return None, f"run_{run}/final_info.json is not valid JSON: {exc}"
    if isinstance(data, dict) and data and all(isinstance(v, dict) and "means" in v for v in data.values()):
        data = {k: v["means"] for k, v in data.items()}
    return (data, None) if isinstance(data, dict) else (None, f"run_{run}/final_info.json is not an object")


def parse(text: str, log_dir: Path | None = None) -> Parsed:
    idea = IdeaInfo()
    items: list[Item] = []
    lines = clean_capture(text).splitlines()
    rendered: list[str] = []  # aider's console rendering of the reply being written
    rendered_start = 1
    last_reply: Reply | None = None
    iteration_replies: list[Reply] = []
    done_declared = False
    plots_marked = False
    plain: list[str] | None = None  # the plain print of the reply after aider's lines (upstream `print(coder_out)`)
    plain_fence = False  # inside a code fence of the plain reply (indented blank lines there are not padding)
    i = 0

    def flush_plain() -> None:
        nonlocal plain, plain_fence, done_declared
        plain_fence = False
        if plain is not None and last_reply is not None and "\n".join(plain).strip():
            body = "\n".join(plain).strip("\n")
            last_reply.text = body
            idea_from_paths(body, idea)
            if "ALL_COMPLETED" in body:
                done_declared = True
        plain = None

    def capture(j: int, first: str, stop_traceback: bool, stop_after_exception: bool = False) -> tuple[str, int]:
        """Text from line j (its rest `first`) until the next marker; returns (text, next index).
        With stop_after_exception, a traceback's exception line ends it (what follows is the next reply)."""
        out = [first] if first else []
        k = j + 1
        fence = first.startswith("```")
        in_tb = first.startswith(("Traceback", '  File "'))
        while k < len(lines):
            ln = lines[k]
            if ln.startswith("```"):
                fence = not fence
            elif not fence and (_is_marker(ln) or (stop_traceback and ln.startswith("Traceback (most recent call last):"))):
                break
            out.append(ln.rstrip())
            k += 1
            in_tb = in_tb or ln.startswith(("Traceback (most recent call last):", '  File "'))
            if stop_after_exception and in_tb and EXCEPTION.match(ln):
                break
        return "\n".join(out).strip("\n"), k

    while i < len(lines):
        raw = lines[i]
        s = raw.strip()
        n = i + 1
        if plain is not None and not APPLIED.match(s) and (
                _is_marker(raw) or (not plain_fence and _rendered_or_stderr(raw))):
            flush_plain()
        if TS.match(s):
            idea.started = idea.started or s
        elif m := STARTING_IDEA.match(s):
            idea.name = idea.name or m[2]
        elif m := STARTING.match(s):
            stage = STAGES[m[1]]
            items.append(StageMark(stage=stage, status="started", line=n, text=s))
            if m[1] == "Improvement":
                items.append(Note("info", "improving the paper from its review", n, "review"))
            rendered = []
        elif m := ITERATION.match(s):
            items.append(Iteration(run=int(m[2]), iteration=int(m[1]), line=n))
            rendered, rendered_start, iteration_replies = [], n + 1, []
        elif s.startswith("Tokens: "):
            if done_declared and not plots_marked:
                items.append(StageMark(stage="plots", status="started", line=n))
                plots_marked = True
            body = "\n".join(x.rstrip() for x in rendered).strip()
            reply = Reply(text=body, line=rendered_start, reflection="Fix any errors below, if possible." in body)
            tokens_line(reply, s)
            items.append(reply)
            iteration_replies.append(reply)
            last_reply = reply
            rendered, rendered_start = [], n + 1
            plain = []
        elif m := APPLIED.match(s):
            if last_reply is not None and m[1] not in last_reply.applied:
                last_reply.applied.append(m[1])
        elif m := CODER_OUT.match(raw):
            plain = None
            body, i = capture(i, m[1], stop_traceback=True)
            idea_from_paths(body, idea)
            if iteration_replies:
                iteration_replies[-1].text = body  # the plain reply beats aider's wrapped rendering
            else:
                items.append(Reply(text=body, line=n))
            if "ALL_COMPLETED" in body:
                done_declared = True
            rendered = []
            continue
        elif m := FAILED.match(s):
            items.append(Outcome(kind="failed", line=n, run=int(m[1]), exit_code=int(m[2])))
        elif m := ERROR.match(raw):
            body, i = capture(i, m[1], stop_traceback=False, stop_after_exception=True)
            idea_from_paths(body, idea)
            last = items[-1] if items else None
            if isinstance(last, Outcome) and last.kind == "failed" and not last.error:
                last.error = body
            else:
                items.append(Outcome(kind="failed", line=n, error=body))
            rendered = []
            continue
        elif m := TIMEOUT.match(s):
            items.append(Outcome(kind="timeout", line=n, run=int(m[1]), error=f"timed out after {m[2]} seconds"))
        elif m := COMPLETED.match(s):
            data, err, k = _dict_after(lines, i, raw.index(m[2]) if m[2] else len(raw))
            items.append(Outcome(kind="completed", line=n, run=int(m[1]), exit_code=0, results=data, results_error=err))
            i = k
            rendered = []
            continue
        elif not plain_fence and (m := PRINTED.match(raw)) and (data_err := _printed(lines, i, m)) is not None:
            data, err, k = data_err
            items.append(Outcome(kind="completed", line=n, run=int(m[1]) if m[1] else None, exit_code=0,
                                 results=data, results_error=err))
            i = k
            rendered = []
            continue
        elif m := MODEL.match(s):
            idea.model = idea.model or m[1]
        elif s.startswith(IDEA_PROMPT):
            body, _ = capture(i, raw, stop_traceback=False)
            parse_idea_prompt(body, idea)
        else:
            for pat, make in SIMPLE:
                if mm := pat.match(s):
                    item = make(mm)
                    item.line = n
                    items.append(item)
                    break
            else:
                if plain is not None:
                    plain.append(raw.rstrip())
                    if raw.startswith("```"):
                        plain_fence = not plain_fence
                else:
                    rendered.append(raw)
        i += 1
    flush_plain()

    if log_dir is not None:
        _fill_results(items, log_dir)
    return Parsed(form="ai-scientist-console", items=items, idea=idea)


def _dict_after(lines: list[str], i: int, col: int) -> tuple[dict | None, str | None, int]:
    """The results printed after `Run N completed. Here are the results:`: on its line or the next ones."""
    k = i
    while k < len(lines) and k < i + 4:
        text = lines[k][col:] if k == i else lines[k]
        if text.strip():
            if text.lstrip().startswith("{"):
                return dict_in_lines(lines, k, (col if k == i else 0) + len(text) - len(text.lstrip()))
            break
        k += 1
    return None, "the results were not printed", i + 1


def _printed(lines: list[str], i: int, m: re.Match) -> tuple[dict | None, str | None, int] | None:
    """A results dict the pipeline printed at lines[i]; None when what opens there is not a dict of results."""
    data, err, k = dict_in_lines(lines, i, m.end())
    if m.group(0):  # introduced as results
        return data, err, k
    values = [v for x in (data or {}).values() for v in (x.values() if isinstance(x, dict) else [x])]
    if not data or not all(isinstance(key, str) for key in data) or not any(
            v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values):
        return None
    return data, None, k


def _fill_results(items: list[Item], log_dir: Path) -> None:
    """A run that ended without a failure line completed; read its results where the capture lacks them."""
    for it in items:
        if isinstance(it, Outcome) and it.kind == "completed" and it.results is None and it.run is not None:
            data, err = _results_file(log_dir, it.run)
            if data is not None or err:
                it.results, it.results_error = data, err
