"""`orchestrate review WORKSPACE|PDF`: the review stage on its own.

A workspace gets every integrity check (numbers against its validated runs, failed runs presented as
results, missing figures and citations, empty sections) and, with --model, a fresh LLM review on the
NeurIPS form; without --model the review stage's LLM review is kept when there is one. A bare PDF has
no runs: the checks that need them are skipped with a note, and the LLM part needs --model."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

HELP = "review a workspace's paper or a PDF: integrity findings, and an LLM review on the NeurIPS form with --model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    parser.add_argument("target", type=Path, metavar="WORKSPACE|PDF", help="a workspace folder or a PDF")
    parser.add_argument("--model", help="litellm model name for the LLM review (default: ORCHESTRATE_MODEL; none: skipped)")
    parser.add_argument("-o", "--output", type=Path, metavar="FILE",
                        help="where review.json goes (default: WORKSPACE/review.json, or PDF's name with .review.json)")


def _llm(model: str, prompt: str):
    from ..agents.aider import AiderSession, Budget
    from ..review_form import ask_review

    with tempfile.TemporaryDirectory(prefix="orchestrate-review-") as tmp:
        session = AiderSession(Path(tmp), [], model, budget=Budget(None))
        return ask_review(lambda p, _step: session.ask(p).response, prompt)


def main(args: argparse.Namespace) -> int:
    """Review a workspace's paper: the integrity check, then the LLM form when a model is set."""
    from ..env import default_model
    from ..errors import InputError
    from ..events import WorkspaceCreated
    from ..paper import integrity
    from ..review_form import ReviewFile
    from ..spec import Idea
    from ..stages.review import REVIEW_FILE, pdf_inputs, review_prompt, workspace_inputs
    from ..workspace import Workspace

    target: Path = args.target
    previous = None
    if target.is_dir():
        ws = Workspace(target)
        head = ws.journal.events[0] if ws.journal.events else None
        idea = Idea.model_validate(head.idea) if isinstance(head, WorkspaceCreated) and not head.imported_from else None
        inputs, source = workspace_inputs(ws, idea)
        output = args.output or ws.root / REVIEW_FILE
        if (ws.root / REVIEW_FILE).is_file():
            try:
                previous = ReviewFile.model_validate_json((ws.root / REVIEW_FILE).read_text())
            except ValueError:
                previous = None
    elif target.is_file() and target.suffix.lower() == ".pdf":
        inputs, source = pdf_inputs(target), str(target)
        output = args.output or target.with_suffix(".review.json")
    else:
        raise InputError(target, "not a workspace folder or a PDF file")
    if inputs.text is None:
        raise InputError(target, "no text to review: no paper.pdf or latex/paper.tex, or pdftotext (poppler-utils) "
                                 "could not read the PDF")
    report = integrity.check(inputs)
    model = args.model or default_model()
    if model:
        review, attempts = _llm(model, review_prompt(inputs.text, source, report))
        out = ReviewFile(source=source, review=review, attempts=attempts, model=model, integrity=report,
                         review_skipped="" if review else f"no valid review after {len(attempts)} replies: {attempts[-1].error}")
    elif previous is not None and previous.review is not None:
        out = previous.model_copy(update={"integrity": report, "source": source})
    else:
        out = ReviewFile(source=source, integrity=report,
                         review_skipped="LLM review skipped: no model (pass --model NAME or set ORCHESTRATE_MODEL)")
    Path(output).write_text(out.model_dump_json(indent=2) + "\n")
    _print(out, output)
    return 0


def _print(out, output: Path) -> None:
    rep = out.integrity
    print(f"reviewed {out.source}: {rep.numbers_matched} of {rep.numbers_checked} numbers match validated runs; "
          f"{len(rep.errors)} integrity error(s), {len(rep.findings) - len(rep.errors)} other finding(s)")
    for f in rep.findings:
        print(f"  [{f.severity}] {f.where}: {f.message}")
    for note in rep.notes:
        print(f"  note: {note}")
    if out.review is not None:
        r = out.review
        print(f"review ({out.model}): overall {r.overall}/10, {r.decision}; soundness {r.soundness}, presentation "
              f"{r.presentation}, contribution {r.contribution}, confidence {r.confidence}")
    else:
        print(out.review_skipped)
    print(f"wrote {output}")
