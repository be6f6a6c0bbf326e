"""From runs to a paper, for real: results.tex from validated runs, the writeup section by section, a
LaTeX error fixed through the agent and a PDF built by real latexmk, its first page rendered, the
integrity check on the clean paper and on a planted number, and a missing TeX reported at the start."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import FIXTURES, cli_subprocess, events, only_workspace, run_cli

from orchestrator.paper import integrity
from orchestrator.paper import tex as texmod
from orchestrator.paper.results_tex import RunData, format_value, results_tex

HAVE_TEX = all(shutil.which(t) for t in ("latexmk", "pdflatex", "bibtex"))
needs_tex = pytest.mark.skipif(
    not HAVE_TEX, reason="latexmk/pdflatex/bibtex not installed (apt-get install latexmk texlive-latex-recommended)")
ALL = "experiments,plots,writeup,compile,review"


@pytest.fixture(scope="module")
def paper_ws(tmp_path_factory):
    """The whole pipeline once on the tiny template with the paper transcript (about 15 s)."""
    if not HAVE_TEX:
        pytest.skip("latexmk/pdflatex/bibtex not installed")
    tmp = tmp_path_factory.mktemp("paper")
    (tmp / "home").mkdir()
    env = {"HOME": str(tmp / "home"), "ORCHESTRATE_HOME": str(tmp / "orch"), "ORCHESTRATE_MODEL": ""}
    proc = cli_subprocess("run", FIXTURES / "paper_idea.json", "--sandbox", tmp / "sb", "--stages", ALL, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return only_workspace(tmp / "sb")


@needs_tex
def test_latex_error_is_fixed_by_the_agent_and_latexmk_builds_the_pdf(paper_ws):
    runs = [e for e in events(paper_ws, "run_finished") if e["phase"] == "latex"]
    assert [r["status"] for r in runs] == ["failed", "ok"]
    assert any("\\begin{itemize} on input line" in r for r in runs[0]["reasons"])
    fix = [e for e in events(paper_ws, "exchange") if e["stage"] == "compile"]
    assert [(e["attempt"], e["step"]) for e in fix] == [(1, "fix")]
    assert "> " in fix[0]["prompt"] and "\\begin{itemize}" in fix[0]["prompt"]  # the offending lines went back
    assert (paper_ws / "paper.pdf").read_bytes()[:5] == b"%PDF-"
    pdf = [a for a in events(paper_ws, "artifact") if a["kind"] == "pdf"]
    assert pdf and pdf[-1]["path"] == "paper.pdf"
    done = next(e for e in events(paper_ws, "stage_finished") if e["stage"] == "compile")
    assert done["summary"].startswith("paper.pdf built at attempt 2")
    assert "latex/build/" in (paper_ws / ".gitignore").read_text()  # build products stay out of the history


@needs_tex
@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="pdftoppm (poppler-utils) not installed")
def test_first_page_renders_and_is_not_blank(paper_ws, tmp_path):
    from orchestrator.figures import check_image
    from orchestrator.runner import tool

    res = tool(["pdftoppm", "-f", "1", "-l", "1", "-r", "50", "-png", str(paper_ws / "paper.pdf"), str(tmp_path / "p")])
    assert res.exit_code == 0, res.stderr
    page = next(tmp_path.glob("p*.png"))
    c = check_image(page)
    assert c.ok, c.problem
    info = tool(["pdfinfo", str(paper_ws / "paper.pdf")]).stdout
    assert int(next(ln.split()[1] for ln in info.splitlines() if ln.startswith("Pages:"))) >= 2


@needs_tex
def test_results_tex_holds_every_metric_of_validated_runs_only(paper_ws):
    text = (paper_ws / "latex" / "results.tex").read_text()
    values = texmod.setresults(text)
    for run in ("run0", "run1", "run2"):
        info = json.loads((paper_ws / f"run_{run[3:]}" / "final_info.json").read_text())
        assert values[(run, "eval.error")] == format_value(info["eval"]["error"])
        assert (run, "training.final_loss") in values and (run, "config.lr") in values
    assert not any(r == "run3" for r, _ in values)
    assert "\\includegraphics[width=0.75\\linewidth]{error.png}" in text
    assert "\\label{tab:results}" in text


@needs_tex
def test_writeup_walks_every_section_with_a_refine_pass(paper_ws):
    steps = [e["step"] for e in events(paper_ws, "exchange") if e["stage"] == "writeup"]
    names = ["title", "introduction", "background", "method", "setup", "results", "related_work", "conclusion"]
    assert steps == [s for n in names for s in (f"section:{n}", f"refine:{n}")]
    tex = (paper_ws / "latex" / "paper.tex").read_text()
    assert not texmod.placeholders(tex)
    assert "Faster Descent" in texmod.title(tex)


@needs_tex
def test_integrity_passes_the_clean_paper(paper_ws):
    review = json.loads((paper_ws / "review.json").read_text())
    assert review["source"] == "paper.pdf"
    # the tiny template runs one seed: its comparative prose is flagged as single-seed (a warning), nothing else
    assert {(f["kind"], f["severity"]) for f in review["integrity"]["findings"]} == {("claim-single-seed", "warning")}
    assert any("self-reported" in n for n in review["integrity"]["notes"])  # the tiny template has no evaluator
    assert review["integrity"]["numbers_checked"] >= 10
    assert review["integrity"]["numbers_checked"] == review["integrity"]["numbers_matched"]
    assert review["review"]["overall"] == 3 and review["review"]["decision"] == "Reject"
    assert [a["ok"] for a in review["attempts"]] == [False, True]  # the malformed first reply was retried


@needs_tex
def test_integrity_flags_a_planted_number_and_a_missing_key_and_figure(paper_ws):
    from orchestrator.stages.review import workspace_inputs
    from orchestrator.workspace import Workspace

    ws = Workspace(paper_ws)
    inputs, _ = workspace_inputs(ws)
    tex = inputs.tex
    planted = tex.replace("each change lowers the error.",
                          "each change lowers the error, by 0.4217 on average~\\citep{nobody2031}.\n"
                          "\\includegraphics{missing.png}")
    assert planted != tex
    inputs.tex = planted
    inputs.text = texmod.source_text(planted, inputs.results_tex)
    rep = integrity.check(inputs)
    kinds = {f.kind: f for f in rep.findings}
    assert "0.4217" in kinds["unmatched-number"].message
    assert "nobody2031" in kinds["missing-citation"].message
    assert "missing.png" in kinds["missing-figure"].message
    assert len(rep.errors) == 3
    # and the same source without the plant is clean
    inputs.tex = tex
    inputs.text = texmod.source_text(tex, inputs.results_tex)
    assert integrity.check(inputs).errors == []


@needs_tex
def test_resume_of_a_finished_workspace_redoes_nothing(paper_ws):
    before = len(events(paper_ws, "exchange")), len(events(paper_ws, "run_started"))
    proc = cli_subprocess("resume", paper_ws, "--stages", ALL)  # its own process: the run's lock is this one's
    assert proc.returncode == 0, proc.stderr
    assert "stages left: none" in proc.stdout
    assert (len(events(paper_ws, "exchange")), len(events(paper_ws, "run_started"))) == before


def test_missing_tex_is_reported_at_start_and_the_run_ends_with_paper_tex(tmp_path, monkeypatch, capsys):
    real = shutil.which
    monkeypatch.setattr(shutil, "which",
                        lambda name, *a, **k: None if name in ("latexmk", "pdflatex", "kpsewhich") else real(name, *a, **k))
    rc = run_cli("run", FIXTURES / "paper_notex_idea.json", "--sandbox", tmp_path / "sb", "--isolation", "none",
                 "--stages", "experiments,writeup,compile,review")
    assert rc == 0
    out = capsys.readouterr().out
    first = out.splitlines()
    tex_line = next(ln for ln in first if ln.startswith("TeX: missing"))
    assert "latexmk" in tex_line and "apt-get install" in tex_line and "paper.tex" in tex_line
    assert first.index(tex_line) < 3, first[:5]  # said at the start, before any stage ran
    ws = only_workspace(tmp_path / "sb")
    assert (ws / "latex" / "paper.tex").is_file() and not (ws / "paper.pdf").exists()
    done = {e["stage"]: e for e in events(ws, "stage_finished")}
    assert done["compile"]["status"] == "done"
    assert done["compile"]["summary"].startswith("PDF not built: TeX is not installed; latex/paper.tex is written")
    assert not [e for e in events(ws, "run_started") if e["phase"] == "latex"]
    review = json.loads((ws / "review.json").read_text())
    assert review["source"] == "latex/paper.tex" and review["review"]["decision"] == "Reject"
    assert [f for f in review["integrity"]["findings"] if f["severity"] == "error"] == []


def test_results_tex_formats_numbers_for_latex():
    assert format_value(3) == "3"
    assert format_value(0.036472) == "0.03647"
    assert format_value(-0.785) == "\\ensuremath{-0.785}"
    assert format_value(1.59e-07) == "\\ensuremath{1.59\\times 10^{-7}}"
    assert format_value(float("nan")) == "n/a"
    text = results_tex([RunData(run=0, status="ok", values={"a.b_c": 1.5}, baseline=True),
                        RunData(run=2, status="ok", values={"a.b_c": 2.5})], ["a.b_c"], ["fig one.png", "f.png"])
    assert "\\setresult{run2}{a.b_c}{2.5}" in text
    assert "\\texttt{a.b\\_c} & \\result{run0}{a.b_c} & \\result{run2}{a.b_c}" in text
    assert "fig one.png" not in text and "{f.png}" in text  # a file name LaTeX cannot include is left out


def test_templates_citation_keys_all_exist_in_the_bibliography():
    root = Path(__file__).resolve().parent.parent / "latex"
    keys = texmod.bib_keys((root / "references.bib").read_text())
    assert {"elhage2022superposition", "bricken2023monosemanticity", "karvonen2025saebench", "bussmann2025matryoshka",
            "chanin2024absorption", "nanda2022transformerlens"} <= keys
    assert len(keys) == len(texmod.bib_entries((root / "references.bib").read_text()))


@needs_tex
def test_kill_9_in_the_writeup_and_in_latexmk_then_resume_gives_the_same_paper(paper_ws, tmp_path):
    """kill -9 after the 12th exchange (mid-writeup), resume; kill -9 as latexmk starts, resume: the paper
    ends as in the uninterrupted run, and no exchange was asked twice."""
    env = {"ORCHESTRATE_MODEL": ""}
    proc = cli_subprocess("run", FIXTURES / "paper_idea.json", "--sandbox", tmp_path / "sb", "--stages", ALL,
                          env={**env, "ORCHESTRATE_FAULT": "after:exchange:12"})
    assert proc.returncode == -9
    ws = only_workspace(tmp_path / "sb")
    proc = cli_subprocess("resume", ws, "--stages", ALL, env={**env, "ORCHESTRATE_FAULT": "after:run_started:8"})
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert [e for e in events(ws, "run_started")][-1]["phase"] == "latex"
    proc = cli_subprocess("resume", ws, "--stages", ALL, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (ws / "latex" / "paper.tex").read_text() == (paper_ws / "latex" / "paper.tex").read_text()
    assert (ws / "paper.pdf").is_file()
    keys = [(e["stage"], e["run"], e["attempt"], e["step"]) for e in events(ws, "exchange")]
    assert len(keys) == len(set(keys)) == len(events(paper_ws, "exchange"))
    latex = [e["status"] for e in events(ws, "run_finished") if e["phase"] == "latex"]
    assert latex == ["failed", "ok"]
    assert [f for f in json.loads((ws / "review.json").read_text())["integrity"]["findings"] if f["severity"] == "error"] == []


def test_hsae_transcript_later_stages_fit_the_stages_cite_known_keys_and_type_no_numbers():
    """The offline demo's plots/writeup/compile/review lines: in the order the stages ask, citing only keys of
    latex/references.bib, every number a macro, and a review that parses as the form."""
    from orchestrator.paper.integrity import extract_numbers
    from orchestrator.review_form import parse_review
    from orchestrator.stages.writeup import SECTIONS

    root = Path(__file__).resolve().parent.parent
    rows = [json.loads(ln) for ln in (root / "ideas" / "hsae.transcript.jsonl").read_text().splitlines() if ln.strip()][1:]
    later = [r for r in rows if r["stage"] != "experiments"]
    assert rows[:len(rows) - len(later)] == [r for r in rows if r["stage"] == "experiments"]  # appended after them
    steps = [(r["stage"], r.get("attempt"), r.get("step")) for r in later]
    assert steps == ([("plots", 1, "edit"), ("plots", None, "notes")]
                     + [("writeup", None, f"{k}:{s}") for s, _h, _m in SECTIONS for k in ("section", "refine")]
                     + [("review", None, "review")])
    keys = texmod.bib_keys((root / "latex" / "references.bib").read_text())
    template = (root / "latex" / "paper.tex").read_text()
    for r in later:
        if r["stage"] != "writeup":
            continue
        for key, _line in texmod.cite_keys(r["response"]):
            assert key in keys, (r["step"], key)
        for search in [b.split("=======")[0] for b in r["response"].split("<<<<<<< SEARCH\n")[1:]]:
            assert search in template, (r["step"], search)  # each section replaces its own placeholder
        typed = [n.text for n in extract_numbers(texmod.to_text(r["response"], {}))]
        assert typed == [], (r["step"], typed)
    review, err = parse_review(later[-1]["response"])
    assert review is not None, err
