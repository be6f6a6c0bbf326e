"""The compile stage: checks before compiling (undefined citations, missing figures, \\result names
with no validated value), then latexmk -pdf (pdflatex + bibtex) and chktex through the runner; errors
go back to the agent with the offending lines, bounded by max_compile_attempts. The PDF ends at
workspace/paper.pdf.

Without TeX (checked at the start of the run) the checks still run and the agent still fixes what
they find; the stage then ends with latex/paper.tex and says how to build the PDF."""

from __future__ import annotations

import shutil

from .. import prompts
from ..context import Context
from ..conversation import Conversations
from ..events import Artifact, EditApplied, Feedback, Message, RunFinished, RunStarted
from ..execution import process_verdict, sandbox_read_only
from ..latex import APT_PACKAGES, LatexProblem, compile_pdf, lint
from ..paper import integrity
from ..paper import results_tex as paper_results
from ..paper import tex as texmod
from ..paths import writable
from . import stage
from .writeup import PAPER, good_figures, prepare_latex

STAGE = "compile"
PDF = "paper.pdf"
BUILD = "latex/build"  # git-ignored (writeup.prepare_latex); fresh for every attempt
_PRECHECK_KINDS = {"missing-citation", "missing-figure", "undefined-result", "failed-run-presented"}


def precheck(ctx: Context) -> list[str]:
    """What would make the PDF wrong or the compile fail, found without TeX."""
    root = ctx.ws.root
    _ok, bad = paper_results.collect_runs(ctx.ws)
    rep = integrity.check(integrity.PaperInputs(
        tex=texmod.read(root / PAPER), tex_dir=root / "latex", results_tex=texmod.read(root / "latex" / "results.tex"),
        bib=texmod.read(root / "latex" / "references.bib"), failed=bad,
    ))
    return [f"{f.where}: {f.message}" for f in rep.findings if f.kind in _PRECHECK_KINDS]


def _problems(fin: RunFinished) -> tuple[list[LatexProblem], list[LatexProblem], str]:
    fb = fin.feedback
    return ([LatexProblem.model_validate(p) for p in fb.problems],
            [LatexProblem.model_validate(p) for p in fb.warnings], fb.tail)


def compile_once(ctx: Context, attempt: int) -> RunFinished:
    """latexmk once (memoised); on success the PDF is copied to workspace/paper.pdf and committed."""
    j, ws = ctx.journal, ctx.ws
    done = j.last(RunFinished, stage=STAGE, attempt=attempt, phase="latex")
    if done is not None:
        return done
    build = ws.root / BUILD
    log_dir = ws.state / "latex" / f"attempt_{attempt}"
    j.append(RunStarted(stage=STAGE, attempt=attempt, phase="latex", out_dir=BUILD, commit=ws.head()))
    res = compile_pdf(ws.root / "latex", main="paper.tex", build_dir=build, log_dir=log_dir,
                      timeout_s=ctx.limits.latex_timeout_s, limits=ctx.limits, isolation=ctx.isolation, root=ws.root,
                      read_only=sandbox_read_only(ctx, writing=None), hidden=[ws.state])
    commit = None
    if res.ok and res.pdf:
        shutil.copy2(res.pdf, writable(ws.root, PDF))  # a link left in its place is removed, never followed
        commit = ws.commit(f"compile attempt {attempt}: {PDF}")
        j.append(Artifact(stage=STAGE, kind="pdf", path=PDF, detail=f"attempt {attempt}"))
    ended = process_verdict(res.record, timeout_s=ctx.limits.latex_timeout_s) if res.record else None
    status = "ok" if res.ok else (ended.status if ended is not None else "failed")
    why = [p.message for p in res.problems][:10]
    if not res.ok and ended is not None and (ended.status != "failed" or not why):
        why = [r.replace("exited with code", "latexmk exited with code") for r in ended.reasons] + why
    return j.append(RunFinished(
        stage=STAGE, attempt=attempt, phase="latex", out_dir=BUILD, status=status,
        reasons=why or ([] if res.ok else ["latexmk wrote no PDF"]),
        exit_code=res.exit_code, wall_s=res.wall_s, timed_out=res.timed_out, log_dir=str(log_dir.relative_to(ws.root)),
        feedback=Feedback(problems=[p.model_dump() for p in res.problems],
                          warnings=[p.model_dump() for p in res.warnings], tail=res.tail),
        commit=commit, containment=res.record.containment if res.record else [],
    ))


def lint_once(ctx: Context, attempt: int) -> RunFinished:
    """Run chktex once for this attempt (served from the journal when already run)."""
    j, ws = ctx.journal, ctx.ws
    done = j.last(RunFinished, stage=STAGE, attempt=attempt, phase="chktex")
    if done is not None:
        return done
    log_dir = ws.state / "latex" / f"attempt_{attempt}_chktex"
    j.append(RunStarted(stage=STAGE, attempt=attempt, phase="chktex", out_dir="latex", commit=ws.head()))
    problems, rec = lint(ws.root / "latex", main="paper.tex", log_dir=log_dir, timeout_s=ctx.limits.latex_timeout_s,
                         limits=ctx.limits, isolation=ctx.isolation)
    return j.append(RunFinished(
        stage=STAGE, attempt=attempt, phase="chktex", out_dir="latex", status="ok",
        reasons=[p.message for p in problems][:20] if rec else ["chktex is not installed"],
        exit_code=rec.exit_code if rec else None, wall_s=rec.wall_s if rec else 0.0,
        log_dir=str(log_dir.relative_to(ws.root)),
        feedback=Feedback(problems=[p.model_dump() for p in problems]),
    ))


def _tex_ready(ctx: Context) -> bool:
    return ctx.tex_available and shutil.which("latexmk") is not None


@stage(STAGE)
def run_stage(ctx: Context, conv: Conversations) -> str:
    """Compile the paper, feeding errors back to the agent until it builds or attempts run out."""
    j, ws = ctx.journal, ctx.ws
    if not (ws.root / PAPER).exists():  # compile run alone: a paper from the template and the runs
        prepare_latex(ctx)
        paper_results.generate(ws, good_figures(ctx))
        ws.commit("compile: latex template and results.tex (no writeup stage)")
    files = [PAPER]
    max_attempts = ctx.limits.max_compile_attempts
    tex = _tex_ready(ctx)
    linted = False
    built_at: int | None = None
    left: list[str] = []
    for attempt in range(1, max_attempts + 1):
        last = attempt == max_attempts
        problems = precheck(ctx)
        left = problems
        if problems and not last:
            conv.ask(STAGE, prompts.render("compile_precheck", attempt=attempt, max_attempts=max_attempts,
                                           problems=problems), files=files, attempt=attempt, step="precheck")
            continue
        if not tex:
            break
        fin = compile_once(ctx, attempt)
        errors, warnings, tail = _problems(fin)
        if fin.status != "ok":
            left = [p.text().splitlines()[0] for p in errors] or ["latexmk failed"]
            if not last:
                conv.ask(STAGE, prompts.render("compile_errors", attempt=attempt, max_attempts=max_attempts,
                                               problems=[p.text() for p in errors[:5]], tail=tail,
                                               timed_out=fin.timed_out), files=files, attempt=attempt, step="fix")
            continue
        built_at, left = attempt, []
        chk = lint_once(ctx, attempt)
        remarks = [*warnings, *_problems(chk)[0]]
        if remarks and not linted and not last:
            linted = True
            out = conv.ask(STAGE, prompts.render("compile_lint", problems=[p.text() for p in remarks[:12]]),
                           files=files, attempt=attempt, step="lint")
            if out.changed:
                continue
        break
    if not tex:
        why = ctx.tex_missing or f"TeX: latexmk not found — install with `apt-get install {APT_PACKAGES}`"
        j.append(Message(stage=STAGE, level="warning", text=f"{why}. The paper source is {PAPER}; build it with "
                                                            f"`cd {ws.root / 'latex'} && latexmk -pdf paper.tex`"))
        return (f"PDF not built: TeX is not installed; {PAPER} is written" +
                (f"; {len(left)} problem(s) left: {'; '.join(left)[:200]}" if left else ""))
    if built_at is None:
        return f"PDF not built: LaTeX errors remain after {max_attempts} attempt(s): {'; '.join(left)[:300]}; {PAPER} is written"
    stale = any(e.files and (e.attempt or 0) > built_at for e in j.of(EditApplied, stage=STAGE))
    pages = _pages(ws.root / PDF)
    return f"{PDF} built at attempt {built_at}" + (f", {pages} page(s)" if pages else "") + (
        "; later edits did not compile, the PDF is from before them" if stale else "")


def _pages(pdf) -> int | None:
    from ..runner import tool

    res = tool(["pdfinfo", str(pdf)], timeout_s=30)
    for line in res.stdout.splitlines():
        if line.startswith("Pages:"):
            return int(line.split()[1])
    return None
