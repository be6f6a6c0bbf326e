"""The review stage: the paper's text (pdftotext of paper.pdf, or the LaTeX source rendered as text
when there is no PDF) reviewed by the LLM on the NeurIPS form, retried on malformed output, beside
deterministic integrity findings that hold the paper to the validated runs. Both go to review.json.

With a vision model (vision.py) the review also gets paper.pdf's pages as images (pdftoppm), and
review.json reports the plots stage's vision rounds over the figures."""

from __future__ import annotations

import re
from pathlib import Path

from .. import prompts, stats, vision
from ..context import Context
from ..conversation import Conversations
from ..errors import WorkspaceError
from ..events import Artifact, FiguresReviewed, Message
from ..paper import integrity
from ..paper import results_tex as paper_results
from ..paper import tex as texmod
from ..paths import readable, writable
from ..review_form import ReviewFile, VisionSection, ask_review
from ..runner import tool
from . import stage

STAGE = "review"
REVIEW_FILE = "review.json"
MAX_TEXT_CHARS = 120_000  # a paper is far shorter; a runaway PDF must not flood the model
MAX_PAGES = 12  # page images sent with the review (a NeurIPS paper's main text is 9 pages)
PAGE_DPI = 60  # enough to see a figure's layout and labels at a few hundred tokens a page


def pdf_text(pdf: Path) -> str | None:
    """The PDF's text (pdftotext), or None when it cannot be read."""
    res = tool(["pdftotext", "-enc", "UTF-8", str(pdf), "-"], timeout_s=60)
    return res.stdout if res.exit_code == 0 else None


def idea_numbers(idea) -> list[float]:
    """Numbers the user wrote in the idea (a '3-level hierarchy'): the paper may repeat them."""
    text = " ".join(str(x) for x in (idea.title, idea.experiment, getattr(idea, "implementation_plan", "") or ""))
    return [float(x) for x in re.findall(r"\d+(?:\.\d+)?", text)]


def workspace_inputs(ws, idea=None) -> tuple[integrity.PaperInputs, str]:
    """Everything the checks need from a workspace; the text from paper.pdf when it exists."""
    root = ws.root
    tex = texmod.read(root / "latex" / "paper.tex") or None
    results_tex = texmod.read(root / "latex" / "results.tex") or None
    ok, bad = paper_results.collect_runs(ws)
    text, source = None, ""
    if (root / "paper.pdf").is_file():
        text, source = pdf_text(root / "paper.pdf"), "paper.pdf"
    if text is None and tex is not None:
        text = texmod.source_text(tex, results_tex)
        source = "latex/paper.tex"
    # the percent changes results.tex offers (\change) are numbers the prose may print, and so is the
    # confidence level results.tex names (95%)
    key_metrics, goals = _manifest_metrics(ws)
    deltas = [float(v) for v in paper_results.changes(ok, key_metrics).values()] + [stats.CONFIDENCE * 100]
    bib = root / "latex" / "references.bib"
    claims = integrity.ClaimInputs(seeds=integrity.seeds_of(ok), goals=goals, key_metrics=key_metrics, baseline="run0",
                                   references=paper_results.references_of(ok))
    return integrity.PaperInputs(
        text=text, tex=tex, tex_dir=root / "latex", results_tex=results_tex,
        bib=texmod.read(bib) if bib.exists() else None, runs=ok, failed=bad,
        extra_values=(idea_numbers(idea) if idea is not None else []) + deltas, figure_roots=[root], claims=claims,
        provenance=_provenance(ws, ok),
    ), source


def _provenance(ws, ok) -> str:
    """Which of the paper's numbers the sealed evaluator computed, in one line for the review."""
    evaluator = paper_results.has_evaluator(ws)
    text = paper_results.provenance(ok, evaluator).replace("\\textsuperscript{\\dag}", "with a dagger (†)")
    if evaluator:
        own = sorted({k for r in ok for k in r.self_reported})
        if own:
            text += f" Self-reported: {', '.join(own[:12])}{' …' if len(own) > 12 else ''}."
    return text


def _manifest_metrics(ws) -> tuple[list[str], dict[str, str]]:
    """The manifest's key metrics and their goals (max/min)."""
    try:
        return list(ws.manifest.key_metrics), dict(ws.manifest.goals)
    except WorkspaceError:  # an imported workspace may have no manifest
        return [], {}


def pdf_inputs(pdf: Path) -> integrity.PaperInputs:
    """What the integrity check reads from a PDF."""
    return integrity.PaperInputs(text=pdf_text(pdf))


def review_prompt(text: str, source: str, report: integrity.IntegrityReport, pages: int = 0) -> str:
    """The review request: the paper's text (cut to size), its source and the integrity findings (and, with
    `pages`, that the page images follow)."""
    if len(text) > MAX_TEXT_CHARS:
        text = text[:MAX_TEXT_CHARS] + "\n[... the rest of the text is cut ...]"
    return prompts.render("review_first", text=text, source=source, findings=report.findings[:20], pages=pages,
                          provenance=report.notes[0] if report.notes and "self-reported" in report.notes[0] else "")


def page_images(pdf: Path, out_dir: Path, *, max_pages: int = MAX_PAGES, dpi: int = PAGE_DPI) -> list[str]:
    """The PDF's first pages as PNGs in `out_dir` (pdftoppm, made afresh), by name in page order; [] when
    pdftoppm cannot read it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("page-*.png"):
        old.unlink()
    res = tool(["pdftoppm", "-png", "-r", str(dpi), "-l", str(max_pages), str(pdf), str(out_dir / "page")],
               timeout_s=120)
    if res.exit_code != 0:
        return []
    return [p.name for p in sorted(out_dir.glob("page-*.png"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))]


def _figures_section(j) -> VisionSection:
    """The plots stage's vision rounds, from the journal."""
    seen = j.of(FiguresReviewed, stage="plots")
    if not seen:
        return VisionSection(skipped="the plots stage did not review its figures (it did not run, or made none)")
    rounds = [vision.VisionReview.of(e) for e in seen if e.round > 0]
    if not rounds:
        return VisionSection(skipped=seen[-1].skipped)
    return VisionSection(skipped=rounds[-1].skipped, rounds=rounds, open_findings=rounds[-1].findings)


def _ask_with_pages(ctx: Context, conv: Conversations, source: str, section: VisionSection):
    """How the review asks: through the vision model with paper.pdf's page images when there is one (the
    page names recorded in `section`), else through the agent's conversation, text only."""
    chat, why = vision.chat_for(ctx, STAGE)
    pages: list[str] = []
    pdf = readable(ctx.ws.root, "paper.pdf")  # never through a link the agent left
    if chat is not None and source == "paper.pdf" and pdf is not None:
        pages_dir = ctx.ws.state / "review" / "pages"
        pages = page_images(pdf, pages_dir)
        parts = [p for p in (vision.image_part(pages_dir, name) for name in pages) if p is not None]
        pages = [p["name"] for p in parts]
        why = "" if parts else "pdftoppm made no page image of paper.pdf"
    elif chat is not None:
        why = f"no PDF to render (the review read {source or 'nothing'})"
    section.pages, section.pages_skipped = pages, why
    if not pages:
        return (lambda prompt, step: conv.ask(STAGE, prompt, files=[], step=step).response), 0
    assert chat is not None
    history: list[dict] = [{"role": "system", "content": "You are an expert reviewer for NeurIPS."}]

    def ask(prompt: str, step: str) -> str:
        content = [{"type": "text", "text": prompt}]
        if len(history) == 1:  # the first request carries the pages; a retry refers back to them
            for name, part in zip(pages, parts):
                content += [{"type": "text", "text": f"Page {name}:"}, part]
        history.append({"role": "user", "content": content})
        reply = chat.ask(history, step=step)
        history.append({"role": "assistant", "content": reply})
        return reply

    return ask, len(pages)


@stage(STAGE)
def run_stage(ctx: Context, conv: Conversations) -> str:
    """Review the paper: the integrity check, then the LLM review form; both go to review.json."""
    ws, j = ctx.ws, ctx.journal
    inputs, source = workspace_inputs(ws, ctx.idea)
    report = integrity.check(inputs)
    from ..execution import recorded_outputs

    report.findings += integrity.changed_run_files(ws.root, recorded_outputs(j))
    section = _figures_section(j)
    if inputs.text is None:
        section.pages_skipped = "no paper"
        out = ReviewFile(source="", review_skipped="no paper: neither paper.pdf nor latex/paper.tex exists", integrity=report,
                         vision=section)
    else:
        ask, n_pages = _ask_with_pages(ctx, conv, source, section)
        review, attempts = ask_review(ask, review_prompt(inputs.text, source, report, pages=n_pages))
        model = (ctx.vision_model or ctx.model) if n_pages else ctx.model
        out = ReviewFile(source=source, review=review, attempts=attempts, integrity=report,
                         model=model or "transcript", vision=section,
                         review_skipped="" if review else f"no valid review after {len(attempts)} replies: {attempts[-1].error}")
    writable(ws.root, REVIEW_FILE).write_text(out.model_dump_json(indent=2) + "\n")
    ws.commit("review: review.json")
    n_err = len(report.errors)
    j.append(Artifact(stage=STAGE, kind="review", path=REVIEW_FILE, ok=out.review is not None and n_err == 0,
                      detail=f"{n_err} integrity error(s), {len(report.findings) - n_err} other finding(s)"))
    for f in report.errors[:10]:
        j.append(Message(stage=STAGE, level="warning", text=f"integrity: {f.where}: {f.message}"))
    head = (f"overall {out.review.overall}/10, {out.review.decision}" if out.review else "no LLM review")
    return (f"{head}; integrity: {n_err} error(s), {len(report.findings) - n_err} other finding(s), "
            f"{report.numbers_matched} of {report.numbers_checked} numbers match the runs")
