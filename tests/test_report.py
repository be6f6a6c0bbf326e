"""`orchestrate report`: one self-contained HTML file, checked as text and in real headless Chromium
(no console errors, scripts ran, a screenshot that is not blank, at laptop and phone widths)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_show import FIXTURES, REFERENCE, _run_pipeline, interrupt

from orchestrator.cli import main as cli
from orchestrator.events import Artifact, Exchange, StageFinished, StageStarted
from orchestrator.journal import Journal
from orchestrator.report import Options, render, write

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                "--disable-extensions", "--mute-audio"]


def add_later_stages(ws: Path) -> None:
    """Plots, writeup, compile and review as their stages record them: a figure, a paper, a review."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1, 2], [0.36, 0.035, 0.0004], marker="o")
    ax.set_title("eval.error by run")
    fig.savefig(ws / "error_by_run.png", dpi=60)
    with PdfPages(ws / "paper.pdf") as pdf:
        for page in range(2):
            f, a = plt.subplots(figsize=(8.5, 11))
            a.text(0.1, 0.9, f"Faster descent — page {page + 1}", fontsize=20)
            a.axis("off")
            pdf.savefig(f)
            plt.close(f)
    plt.close("all")
    from orchestrator.paper.integrity import Finding, IntegrityReport
    from orchestrator.review_form import Review, ReviewFile

    review = ReviewFile(
        source="paper.pdf", model="test/model",
        review=Review(summary="Tunes a learning rate.", strengths=["clear"], weaknesses=["tiny"], questions=["why?"],
                      limitations=["one seed"], soundness=3, presentation=3, contribution=2, overall=5, confidence=4,
                      decision="Reject"),
        integrity=IntegrityReport(numbers_checked=7, numbers_matched=6, findings=[
            Finding(kind="unmatched-number", message="0.123 in the abstract matches no validated run", where="abstract"),
            Finding(kind="missing-citation", severity="warning", message="smith2020 is not in references.bib"),
        ]),
    )
    (ws / "review.json").write_text(review.model_dump_json(indent=2))
    j = Journal(ws / ".orchestrate" / "journal.jsonl")
    for stage, kind, path, cost in [("plots", "figure", "error_by_run.png", 0.01), ("writeup", "tex", "paper.tex", 0.05),
                                    ("compile", "pdf", "paper.pdf", 0.0), ("review", "review", "review.json", 0.02)]:
        j.append(StageStarted(stage=stage))
        if cost:
            j.append(Exchange(stage=stage, prompt="p", response="r", model="test/model", prompt_tokens=1000,
                              completion_tokens=200, cost_usd=cost))
        j.append(Artifact(stage=stage, kind=kind, path=path, detail=f"{stage} output"))
        j.append(StageFinished(stage=stage, status="done", summary=f"{stage} done"))


@pytest.fixture(scope="module")
def workspaces(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("report")
    finished = _run_pipeline(tmp / "f", FIXTURES / "tiny_idea.json")
    out = {"finished": finished, "failed": _run_pipeline(tmp / "x", FIXTURES / "views_failed_idea.json"),
           "interrupted": interrupt(finished, tmp / "interrupted", after_run_started=3)}
    full = tmp / "full"
    shutil.copytree(finished, full)
    add_later_stages(full)
    out["full"] = full
    if REFERENCE.is_file():
        assert cli(["import", str(REFERENCE), "--sandbox", str(tmp / "imported")]) == 0
        (out["imported"],) = list((tmp / "imported").iterdir())
    return out


def assert_self_contained(html: str) -> None:
    # nothing is fetched: no external URL in src/href, no <link> or @import, only data: images
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', html)
    assert "<link" not in html and "@import" not in html
    for src in re.findall(r'<img[^>]+src="([^"]+)"', html):
        assert src.startswith("data:image/"), src[:40]
    assert "default-src 'none'" in html  # the page itself forbids any fetch


@pytest.mark.parametrize("kind", ["finished", "failed", "interrupted", "full", "imported"])
def test_report_renders(workspaces, kind, tmp_path):
    if kind not in workspaces:
        pytest.skip(f"reference log not found at {REFERENCE}")
    out = write(workspaces[kind], tmp_path / "r.html")
    html = out.read_text()
    assert_self_contained(html)
    assert 'id="runs"' in html and 'id="cost"' in html and 'class="skip"' in html
    assert "<details class=\"run\" id=\"run-1\"" in html


def test_report_contents(workspaces, tmp_path):
    html = render(workspaces["full"], tmp_path / "r.html")
    assert "Faster descent" in html
    assert '<span class="add">+LR = 0.1</span>' in html  # run 1's diff of experiment.py
    assert "smoke: exited with code 1" in html and "NameError" in html  # run 2's failed attempt and its log
    assert "eval.error" in html and "<svg class=\"chart\"" in html  # metrics vs baseline, charted
    assert "data:image/png;base64," in html and "error_by_run.png" in html  # the plot, embedded
    assert "## Run 1: OK" in html  # notes.txt
    assert 'href="' in html and "paper.pdf" in html  # link to the PDF
    if shutil.which("pdftoppm"):
        assert html.count('alt="paper page') == 2
    assert "0.123 in the abstract matches no validated run" in html and "smith2020" in html  # integrity findings
    assert "Reject" in html and "Soundness" in html and "one seed" in html
    assert "6 of 7 numbers in the paper match a validated run" in html
    assert "numbers_checked" not in html  # the integrity report's counters are not shown as findings
    assert "$0.0800" in html  # cost total over stages


def test_report_failed_and_interrupted(workspaces, tmp_path):
    failed = render(workspaces["failed"], tmp_path / "a.html")
    assert "No run is a result" in failed
    assert "training.steps_executed = 0 is below its minimum" in failed
    assert "edit blocks did not apply" in failed
    assert "RuntimeError: diverged" in failed
    interrupted = render(workspaces["interrupted"], tmp_path / "b.html")
    assert "This workspace was interrupted" in interrupted


def test_report_cli_default_path(workspaces, capsys):
    ws = workspaces["failed"]
    assert cli(["report", str(ws)]) == 0
    assert (ws / "report.html").is_file()
    assert "report.html" in capsys.readouterr().out


def test_report_without_pdf_pages(workspaces, tmp_path):
    html = render(workspaces["full"], tmp_path / "r.html", Options(pdf_pages=0))
    assert 'alt="paper page' not in html and "paper.pdf" in html


def _chromium(args: list[str], profile: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *CHROME_FLAGS, f"--user-data-dir={profile}", *args],
                          check=False, capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium)")
@pytest.mark.parametrize("kind", ["full", "imported"])
def test_report_in_headless_chromium(workspaces, kind, tmp_path):
    if kind not in workspaces:
        pytest.skip(f"reference log not found at {REFERENCE}")
    import matplotlib.image as mpimg

    report = write(workspaces[kind], tmp_path / "report.html")
    url = report.resolve().as_uri()
    # 1. Load it: the script ran (it sets a marker attribute) and nothing was logged to the console.
    res = _chromium(["--enable-logging=stderr", "--v=0", "--virtual-time-budget=3000", "--dump-dom", url], tmp_path / "p1")
    assert res.returncode == 0, res.stderr[-2000:]
    assert re.search(r'<html[^>]*data-report-ready="\d+"', res.stdout), "the report's script did not run"
    console = [ln for ln in res.stderr.splitlines() if ":CONSOLE" in ln or "Uncaught" in ln]
    assert not console, "console messages:\n" + "\n".join(console)
    assert "Refused to" not in res.stderr  # no blocked fetch (the CSP would log it)
    # 2. Screenshots at a laptop's and a phone's width: not blank.
    for name, size in (("laptop", "1280,900"), ("phone", "390,844")):
        shot = tmp_path / f"{name}.png"
        res = _chromium([f"--screenshot={shot}", f"--window-size={size}", url], tmp_path / f"p-{name}")
        assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
        img = mpimg.imread(str(shot))
        w = int(size.split(",")[0])
        assert img.shape[1] == w
        assert float(img[..., :3].std()) > 0.05, f"{name} screenshot looks blank"
    # 3. At a phone's width the page itself does not scroll sideways (wide tables scroll in their own region).
    res = _chromium(["--window-size=390,844", "--dump-dom", url], tmp_path / "p3")
    assert res.returncode == 0
    assert 'data-fits-width="true"' in res.stdout


def test_report_errors_and_empty_workspace(workspaces, tmp_path, capsys):
    assert cli(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a workspace" in err[0]
    # a workspace made, then killed before its first stage
    ws = shutil.copytree(workspaces["finished"], tmp_path / "ws")
    journal = ws / ".orchestrate" / "journal.jsonl"
    journal.write_text(journal.read_text().splitlines(keepends=True)[0])
    html = render(ws, tmp_path / "r.html")
    assert "no stage started" in html and "No run yet." in html
