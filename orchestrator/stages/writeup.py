"""The writeup stage: numbers as data, prose by the agent.

latex/results.tex is generated from the journal's validated runs only (a \\result macro for every metric
of every run that is a result, mean ± 95% CI over its seeds; a \\diff against the baseline with its
interval; the results table; the figures' include lines). The prompts give the agent the metrics'
declared goals and the rule that a difference is claimed only when its interval excludes 0. The repository's latex/
template is copied into the workspace; the agent writes latex/paper.tex section by section — title
and abstract, introduction, background, method, experimental setup, results, related work,
conclusion — each followed by a refine pass, through the same aider edit path as the code."""

from __future__ import annotations

import shutil
from pathlib import Path

from .. import prompts
from ..adopt import shipped_text, template_prompt
from ..citations import add_to_bib, backend_from_env, idea_references, search_into_bib
from ..context import Context
from ..conversation import Conversations
from ..events import Artifact, Message
from ..figures import check_image, find_figures
from ..latex import missing_packages
from ..paper import results_tex as paper_results
from ..paper import template_tex
from ..paper import tex as texmod
from ..paths import writable
from ..readmodel import WorkspaceModel
from . import stage
from .ablations import objective_of

STAGE = "writeup"
LATEX_TEMPLATE = Path(__file__).resolve().parents[2] / "latex"
PAPER = "latex/paper.tex"
# (step name, heading in prompts, placeholder name in the template)
SECTIONS: tuple[tuple[str, str, str], ...] = (
    ("title", "title and abstract", "abstract"),
    ("introduction", "introduction", "introduction"),
    ("background", "background", "background"),
    ("method", "method", "method"),
    ("setup", "experimental setup", "experimental setup"),
    ("results", "results", "results"),
    ("related_work", "related work", "related work"),
    ("conclusion", "conclusion", "conclusion"),
)


def _own_paper(ctx: Context, dst: Path) -> None:
    """A template that protects its own latex/template.tex (AI Scientist's) gets its paper from it, as
    shipped: its preamble, style and headings with our macros (template_tex), its embedded bibliography as
    references.bib. Written once; a template.tex that is not a LaTeX document is a warning, and ours is used."""

    own = shipped_text(ctx.ws, template_tex.TEMPLATE_TEX)
    if own is None or (dst / "paper.tex").exists() or (dst / "paper.tex").is_symlink():
        return
    try:
        paper, bib = template_tex.paper_from_template(own)
    except template_tex.TemplateTexError as exc:
        ctx.journal.append(Message(stage=STAGE, level="warning",
                                   text=f"{template_tex.TEMPLATE_TEX}: {exc}; the paper uses the orchestrator's template"))
        return
    writable(ctx.ws.root, PAPER).write_text(paper)
    if not (dst / "references.bib").exists():
        writable(ctx.ws.root, "latex/references.bib").write_text(bib + "\n" if bib else "")
    keys = texmod.bib_keys(bib)
    ctx.journal.append(Message(stage=STAGE, text=f"the paper follows the template's {template_tex.TEMPLATE_TEX} "
                                                 f"({len(keys)} reference(s) from its bibliography)"))
    missing = [n for n in missing_packages(paper, dst) if n != template_tex.RESULTS_PACKAGE]  # ours: copied next
    if missing:
        ctx.journal.append(Message(stage=STAGE, level="warning", text=(
            f"{template_tex.TEMPLATE_TEX} loads {', '.join(missing)}, which TeX here does not have: the compile "
            f"fails until they are installed (`apt-get install texlive-latex-extra` has most) or removed from "
            f"{PAPER}'s preamble")))


def prepare_latex(ctx: Context) -> Path:
    """Copy the paper template into workspace/latex, file by file where missing: a template that ships
    its own latex/ keeps it (its template.tex, when protected, becomes paper.tex: _own_paper), and a resumed
    stage keeps the agent's prose."""
    dst = ctx.ws.root / "latex"
    dst.mkdir(exist_ok=True)
    _own_paper(ctx, dst)
    for f in sorted(LATEX_TEMPLATE.iterdir()):
        if f.is_file() and not (dst / f.name).exists() and not (dst / f.name).is_symlink():
            shutil.copy2(f, writable(ctx.ws.root, f"latex/{f.name}"))
    ignore = writable(ctx.ws.root, ".gitignore")
    text = ignore.read_text() if ignore.exists() else ""
    if "latex/build/" not in text.splitlines():  # LaTeX's build products stay out of the history
        ignore.write_text(text.rstrip("\n") + "\nlatex/build/\n")
    return dst


def good_figures(ctx: Context) -> list[str]:
    """The figures that pass the image check, relative to the workspace."""
    root = ctx.ws.root
    return [str(p.relative_to(root)) for p in find_figures(root, ctx.manifest.figures)
            if check_image(p).ok]


def search_context(search: paper_results.SearchPaper, ok_runs: list[paper_results.RunData]) -> dict:
    """The search's part of the writeup prompt: the best node, each step on its path (kind, plan, its macros)
    and each ablation, by run label; plans are the agent's own words, given to it, never typeset."""
    have = {r.run for r in ok_runs}
    step_of = {p.run: i for i, p in enumerate(search.path, 1)}
    steps = [{"step": i, "label": f"run{p.run}", "kind": p.kind, "plan": " ".join(p.plan.split())[:300],
              "made_from": "the template" if p.parent == 0 else f"step {step_of.get(p.parent, '?')} (run{p.parent})",
              "result": p.run in have, "status": p.status} for i, p in enumerate(search.path, 1)]
    ablations = [{"label": f"run{a.run}", "step": step_of.get(a.ablates), "ablates": f"run{a.ablates}",
                  "result": a.run in have, "applicable": a.applicable, "status": a.status} for a in search.ablations]
    return {"best": f"run{search.best}", "metric": search.metric, "objective": search.objective, "steps": steps,
            "ablations": ablations}


def _placeholder_left(ctx: Context, marker: str, step: str) -> bool:
    tex = (ctx.ws.root / PAPER).read_text()
    if step == "title":
        return "\\title{TITLE}" in tex or f"% SECTION: {marker} (to be written)" in tex
    return f"% SECTION: {marker} (to be written)" in tex


@stage(STAGE)
def run_stage(ctx: Context, conv: Conversations) -> str:
    """Have the agent write the paper section by section from the validated runs."""
    j, ws = ctx.journal, ctx.ws
    latex = prepare_latex(ctx)
    figures = good_figures(ctx)
    objective = objective_of(ctx)
    _text, ok_runs, bad_runs = paper_results.generate(ws, figures, objective)
    search = paper_results.search_paper(WorkspaceModel.build(j.events), objective, ctx.manifest.key_metrics,
                                        dict(ctx.manifest.goals))
    j.append(Artifact(stage=STAGE, kind="results-tex", path="latex/results.tex",
                      detail=f"{len(paper_results.search_results(ok_runs))} validated run(s), {len(figures)} figure(s)"))
    bib_path = latex / "references.bib"
    if not any(a.kind == "bibliography" for a in j.of(Artifact, stage=STAGE)):
        offered = add_to_bib(bib_path, idea_references(ctx.idea.extra))  # found by `orchestrate ideas`' novelty check
        added, line = search_into_bib(backend_from_env(), [ctx.idea.title], bib_path)
        added, line = offered + added, (f"{len(offered)} reference(s) from the ideas file; " if offered else "") + line
        j.append(Message(stage=STAGE, text=line))
        j.append(Artifact(stage=STAGE, kind="bibliography", path="latex/references.bib",
                          detail=f"added: {', '.join(added)}" if added else "unchanged"))
    ws.commit("writeup: latex template, results.tex from validated runs, bibliography")
    listed = {a.run for a in search.ablations} if search is not None else set()  # said of in the search's part
    context = prompts.render(
        "writeup_context", idea=ctx.idea, runs=[r.label for r in ok_runs if not r.is_ablation],
        framing=template_prompt(ctx.ws), ablation_runs=[r.label for r in ok_runs if r.is_ablation],
        search=search_context(search, ok_runs) if search is not None else None,
        not_results=[f"run {r.run}: {r.status}" for r in bad_runs if r.run not in listed],
        figures=[paper_results.figure_name(f) for f in figures],
        bib=texmod.bib_entries(bib_path.read_text()),
        example=f"\\result{{{ok_runs[-1].label if ok_runs else 'run1'}}}{{{(ctx.manifest.key_metrics or ['metric'])[0]}}}",
        goals=dict(ctx.manifest.goals), self_reported_only=ctx.manifest.evaluate is None,
        self_reported=sorted({k for r in ok_runs for k in r.self_reported if k in ctx.manifest.key_metrics}),
        seeds=[f"{r.label}: {r.n_seeds} seed{'s' if r.n_seeds != 1 else ''}" for r in ok_runs],
    )
    files = [PAPER]
    read_only = [p for p in ("notes.txt", "latex/results.tex") if (ws.root / p).exists()]
    unwritten = []
    for i, (step, heading, marker) in enumerate(SECTIONS):
        prompt = prompts.render("writeup_section", context=context if i == 0 else "",
                                section="title" if step == "title" else marker, heading=heading, marker=marker,
                                figures=[paper_results.figure_name(f) for f in figures])
        out = conv.ask(STAGE, prompt, files=files, read_only=read_only, step=f"section:{step}")
        if not out.changed:
            placeholder = "\\title{TITLE}" if step == "title" else f"% SECTION: {marker} (to be written)"
            retry = prompts.render("writeup_edit_not_applied", heading=heading, failed=out.edit.failed,
                                   refused=out.edit.refused, placeholder=placeholder)
            conv.ask(STAGE, retry, files=files, read_only=read_only, step=f"section:{step}:retry")
        if _placeholder_left(ctx, marker, step):
            unwritten.append(heading)
            j.append(Message(stage=STAGE, level="warning", text=f"the {heading} is still the template's placeholder"))
        conv.ask(STAGE, prompts.render("writeup_refine", heading=heading), files=files, read_only=read_only,
                 step=f"refine:{step}")
    j.append(Artifact(stage=STAGE, kind="paper-tex", path=PAPER, ok=not unwritten,
                      detail=f"unwritten: {', '.join(unwritten)}" if unwritten else "all sections written"))
    written = len(SECTIONS) - len(unwritten)
    left = f"; unwritten: {', '.join(unwritten)}" if unwritten else ""
    return f"{written} of {len(SECTIONS)} sections written in {PAPER}{left}"
