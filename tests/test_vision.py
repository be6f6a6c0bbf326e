"""The vision review of figures against the loopback model: image content parts sent (data URLs), typed
findings back, journaled without the images' bytes; skipped, with the reason, without a vision model."""

from __future__ import annotations

import json
import shutil

import pytest
from fake_openai import Canned
from PIL import Image, ImageDraw

from orchestrator.agents.aider import Budget
from orchestrator.agents.chat import ChatModel
from orchestrator.events import Exchange, WorkspaceCreated
from orchestrator.journal import Journal
from orchestrator.settings import Limits
from orchestrator.vision import feedback, has_vision, review_figures


def _figures(root):
    """fig_a: two panels, the right one blank; fig_b: one panel with a line and no axis label."""
    a = Image.new("RGB", (400, 200), "white")
    d = ImageDraw.Draw(a)
    d.rectangle([10, 10, 190, 190], outline="black")
    d.line([20, 180, 180, 30], fill="blue", width=3)
    d.rectangle([210, 10, 390, 190], outline="black")
    a.save(root / "fig_a.png")
    b = Image.new("RGB", (200, 200), "white")
    ImageDraw.Draw(b).line([10, 190, 190, 10], fill="red", width=3)
    b.save(root / "fig_b.png")
    return ["fig_a.png", "fig_b.png"]


def _chat(tmp_path, model):
    j = Journal(tmp_path / "journal.jsonl")
    j.append(WorkspaceCreated(idea={"name": "v"}, idea_path="-", template="t", template_root="-", limits={}, agent="x"))
    return ChatModel(j, model=model, transcript=None, limits=Limits(), budget=Budget(None), stage="plots"), j


@pytest.fixture
def vision_model(tmp_path, monkeypatch):
    meta = tmp_path / "models.json"
    meta.write_text(json.dumps({"openai/test-vision": {"supports_vision": True, "input_cost_per_token": 0,
                                                       "output_cost_per_token": 0}}))
    monkeypatch.setenv("ORCHESTRATE_MODEL_METADATA", str(meta))
    return "openai/test-vision"


def test_figures_go_as_image_parts_and_findings_come_back_typed(tmp_path, server, vision_model):
    figs = _figures(tmp_path)
    findings = {"findings": [
        {"figure": "fig_a.png", "kind": "empty-panel", "detail": "the right panel has no data"},
        {"figure": "fig_b.png", "kind": "missing-labels", "detail": "neither axis is labelled"},
        {"figure": "not_shown.png", "kind": "duplicate", "detail": "dropped: never shown"},
        {"figure": "fig_b.png", "kind": "weird", "detail": "an unknown kind is other"}]}
    server.replies = [Canned(content=f"THOUGHT: looked.\n\n```json\n{json.dumps(findings)}\n```\n")]
    chat, j = _chat(tmp_path, vision_model)
    review = review_figures(chat, tmp_path, figs, captions={"fig_a.png": "Loss and accuracy."}, notes="Run 1 trained.",
                            numbers="run1 core.l0 = 12.8")
    assert [(f.figure, f.kind) for f in review.findings] == [
        ("fig_a.png", "empty-panel"), ("fig_b.png", "missing-labels"), ("fig_b.png", "other")]
    assert "fig_a.png: empty-panel: the right panel has no data" in feedback(review)
    (req,) = server.requests
    parts = req["messages"][1]["content"]
    images = [p["image_url"]["url"] for p in parts if p["type"] == "image_url"]
    assert len(images) == 2 and all(u.startswith("data:image/png;base64,") for u in images)
    text = " ".join(p["text"] for p in parts if p["type"] == "text")
    assert "Loss and accuracy." in text and "run1 core.l0 = 12.8" in text and "Run 1 trained." in text
    assert all("name" not in p for p in parts)  # our bookkeeping never reaches the provider
    (ex,) = Journal(j.path).of(Exchange)  # read back from the file
    assert ex.step == "vision" and ex.stage == "plots" and ex.attempt == 1
    recorded = json.dumps(ex.messages)
    assert "base64" not in recorded and "fig_a.png" in recorded


def test_without_a_vision_model_it_says_so_and_sends_nothing(tmp_path, server):
    figs = _figures(tmp_path)
    chat, _ = _chat(tmp_path, "openai/test-model")
    review = review_figures(chat, tmp_path, figs, captions={}, notes="", numbers="")
    assert review.skipped.startswith("no vision model (openai/test-model does not take images)")
    assert not review.findings and not server.requests
    assert review_figures(None, tmp_path, figs, captions={}, notes="", numbers="").skipped
    assert not has_vision(None)


def test_a_figure_outside_the_folder_or_a_link_is_not_sent(tmp_path, server, vision_model):
    figs = _figures(tmp_path)
    (tmp_path / "link.png").symlink_to(tmp_path / "fig_a.png")
    server.replies = [Canned(content='```json\n{"findings": []}\n```')]
    chat, _ = _chat(tmp_path, vision_model)
    review = review_figures(chat, tmp_path, [*figs, "link.png", "../escape.png"], captions={}, notes="", numbers="")
    assert review.figures == figs and review.not_sent == ["link.png", "../escape.png"] and review.clean
    assert len([p for p in server.requests[0]["messages"][1]["content"] if p["type"] == "image_url"]) == 2



# --- the plots stage's vision rounds and the paper review's page images, end to end (run_cli, real aider,
# real plot subprocesses, the loopback model) ---------------------------------------------------------------

VISION, PLAIN = "openai/test-vision", "openai/test-model"

PLOT = '''import glob
import json
import shutil

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

LABELS = False
RIGHT = False
runs = sorted(glob.glob("run_*/final_info.json"))
errs = [json.load(open(p))["eval"]["error"] for p in runs]
fig, (a, b) = plt.subplots(1, 2, figsize=(6, 3))
a.bar(range(len(errs)), errs)
a.set_xlabel("run")
a.set_ylabel("eval.error")
if RIGHT:
    b.plot(range(len(errs)), errs, marker="o")
fig.savefig("fig_panels.png")
plt.close(fig)
fig, ax = plt.subplots(figsize=(3, 3))
ax.plot(range(len(errs)), [e * 2 for e in errs], marker="o")
if LABELS:
    ax.set_xlabel("run")
    ax.set_ylabel("2 x eval.error")
fig.savefig("fig_nolabel.png")
'''
NOTES = ("Describe the figures.\n\nnotes.txt\n```\n<<<<<<< SEARCH\n=======\n\n## Figures\n"
         "fig_panels.png: eval.error per run (left) and its trend (right).\n\n"
         "fig_nolabel.png: twice the eval.error per run.\n>>>>>>> REPLACE\n```\n")
FINDINGS = {"findings": [{"figure": "fig_panels.png", "kind": "empty-panel", "detail": "the right panel has no data"},
                         {"figure": "fig_nolabel.png", "kind": "missing-labels", "detail": "neither axis is labelled"}]}
LOOKED = f"THOUGHT: two problems.\n\n```json\n{json.dumps(FINDINGS)}\n```\n"
CLEAN = 'THOUGHT: both fine now.\n\n```json\n{"findings": []}\n```\n'


def _fix():
    from conftest import blk

    return "Label the axes and fill the right panel.\n\n" + blk("LABELS = False\nRIGHT = False",
                                                                 "LABELS = True\nRIGHT = True", "plot.py")


@pytest.fixture
def models(tmp_path, monkeypatch):
    """models.json: the vision model and a text-only one, both priced (a budget needs prices)."""
    meta = tmp_path / "models.json"
    base = {"max_input_tokens": 100000, "litellm_provider": "openai", "mode": "chat"}
    meta.write_text(json.dumps({VISION: {**base, "supports_vision": True, "input_cost_per_token": 1e-4,
                                         "output_cost_per_token": 1e-4},
                                PLAIN: {**base, "input_cost_per_token": 0, "output_cost_per_token": 0}}))
    monkeypatch.setenv("ORCHESTRATE_MODEL_METADATA", str(meta))
    return meta


def _idea(tmp_path, tiny_copy, lines=None, **limits):
    """An idea on a tiny copy whose plot.py plants a blank panel and a missing axis label; scripted when `lines`."""
    from conftest import make_idea

    (tiny_copy / "plot.py").write_text(PLOT)
    path = make_idea(tmp_path, lines or [], limits=limits, template=tiny_copy)
    if lines is None:
        data = json.loads(path.read_text())
        data.pop("transcript")
        path.write_text(json.dumps(data))
    return path


def _vision_requests(server):
    from fake_openai import images

    return [r for r in server.requests if images(r)]


def _git_show(ws, commit, rel):
    import subprocess

    return subprocess.run(["git", "-C", str(ws), "show", f"{commit}:{rel}"], capture_output=True, check=True).stdout


def test_planted_blank_panel_and_missing_label_reach_the_agent_and_review_json(tmp_path, server, models, tiny_copy):
    from conftest import events, only_workspace, run_cli
    from fake_openai import images, texts

    server.replies = [Canned("The script plots both figures."), Canned(NOTES), Canned(LOOKED), Canned(_fix()),
                      Canned(CLEAN)]
    rc = run_cli("run", _idea(tmp_path, tiny_copy), "--model", VISION, "--sandbox", tmp_path / "sb",
                 "--stages", "plots,review")
    assert rc == 0
    ws = only_workspace(tmp_path / "sb")
    plots = [e for e in events(ws, "run_finished") if e["phase"] == "plot"]
    assert [(p["attempt"], p["status"]) for p in plots] == [(1, "ok"), (2, "ok")]
    first, second = _vision_requests(server)
    # the figures the model saw are the real files plot attempt 1 wrote, captioned from the notes
    sent = images(first)
    assert [m for m, _ in sent] == ["image/png", "image/png"]
    assert [b for _, b in sent] == [_git_show(ws, plots[0]["commit"], f) for f in ("fig_nolabel.png", "fig_panels.png")]
    assert "Figure fig_panels.png: fig_panels.png: eval.error per run (left)" in texts(first)
    # the findings went back to the agent in its next prompt, and it fixed plot.py; round 2 saw the new figures
    fix = server.requests[server.requests.index(first) + 1]
    last_user = fix["messages"][-1]["content"]
    assert "fig_panels.png: empty-panel: the right panel has no data" in last_user
    assert "fig_nolabel.png: missing-labels: neither axis is labelled" in last_user
    assert [b for _, b in images(second)] == [(ws / f).read_bytes() for f in ("fig_nolabel.png", "fig_panels.png")]
    assert [b for _, b in images(second)] != [b for _, b in sent]
    steps = [(e["step"], e["attempt"]) for e in events(ws, "exchange") if e["stage"] == "plots"]
    assert steps == [("edit", 1), ("notes", None), ("vision", 1), ("vision-fix", 2), ("vision", 2)]
    seen = events(ws, "figures_reviewed")
    assert [(e["round"], [f["kind"] for f in e["findings"]]) for e in seen] == [(1, ["empty-panel", "missing-labels"]),
                                                                               (2, [])]
    review = json.loads((ws / "review.json").read_text())["vision"]
    assert [(f["figure"], f["kind"]) for f in review["rounds"][0]["findings"]] == [
        ("fig_panels.png", "empty-panel"), ("fig_nolabel.png", "missing-labels")]
    assert review["open_findings"] == [] and review["rounds"][0]["model"] == VISION
    summary = next(e for e in events(ws, "stage_finished") if e["stage"] == "plots")["summary"]
    assert summary.endswith("vision review: no finding in round 2 (after 1 fix(es))")
    vision_cost = [e["cost_usd"] for e in events(ws, "exchange") if e["step"] == "vision"]
    assert all(c > 0 for c in vision_cost)  # priced and counted like every exchange


def test_without_a_vision_model_the_stage_says_so_and_skips(tmp_path, server, models, tiny_copy):
    from conftest import events, only_workspace, run_cli

    server.replies = [Canned("The script plots both figures."), Canned(NOTES)]
    assert run_cli("run", _idea(tmp_path, tiny_copy), "--model", PLAIN, "--sandbox", tmp_path / "sb",
                   "--stages", "plots,review") == 0
    ws = only_workspace(tmp_path / "sb")
    assert not _vision_requests(server) and len(server.requests) == 2
    said = [e["text"] for e in events(ws, "message") if e.get("stage") == "plots"]
    assert said == ["vision review skipped: no vision model: openai/test-model does not take images (pass "
                    "--vision-model, or set vision_model in the config file)"]
    summary = next(e for e in events(ws, "stage_finished") if e["stage"] == "plots")["summary"]
    assert "2 figure(s)" in summary and "vision review skipped: no vision model" in summary
    assert json.loads((ws / "review.json").read_text())["vision"]["skipped"].startswith("no vision model")


def test_a_scripted_transcript_without_vision_entries_skips_it(tmp_path, tiny_copy):
    from conftest import events, only_workspace, run_cli

    lines = [{"stage": "plots", "attempt": 1, "step": "edit", "response": "Plots both."},
             {"stage": "plots", "step": "notes", "response": NOTES}]
    assert run_cli("run", _idea(tmp_path, tiny_copy, lines), "--sandbox", tmp_path / "sb", "--stages", "plots") == 0
    ws = only_workspace(tmp_path / "sb")
    assert [e["text"] for e in events(ws, "message") if e.get("stage") == "plots"] == [
        "vision review skipped: no vision model: the transcript has no vision entries"]


def test_a_scripted_transcript_with_vision_entries_is_the_reviewer(tmp_path, tiny_copy):
    from conftest import events, only_workspace, run_cli

    lines = [{"stage": "plots", "attempt": 1, "step": "edit", "response": "Plots both."},
             {"stage": "plots", "step": "notes", "response": NOTES},
             {"stage": "plots", "attempt": 1, "step": "vision", "response": LOOKED},
             {"stage": "plots", "attempt": 2, "step": "vision-fix", "response": _fix()},
             {"stage": "plots", "attempt": 2, "step": "vision", "response": CLEAN}]
    assert run_cli("run", _idea(tmp_path, tiny_copy, lines), "--sandbox", tmp_path / "sb", "--stages", "plots") == 0
    ws = only_workspace(tmp_path / "sb")
    ex = [e for e in events(ws, "exchange") if e["step"] == "vision"]
    assert [e["transcript_line"] for e in ex] == [4, 6] and all(e["scripted"] for e in ex)
    assert "fig_panels.png" in json.dumps(ex[0]["messages"]) and "base64" not in json.dumps(ex[0]["messages"])
    fix = next(e for e in events(ws, "exchange") if e["step"] == "vision-fix")
    assert "fig_nolabel.png: missing-labels" in fix["prompt"]
    assert "LABELS = True" in (ws / "plot.py").read_text()


def test_budget_stops_before_the_vision_call_and_resume_asks_nothing_twice(tmp_path, server, models, tiny_copy, capsys):
    from conftest import events, only_workspace, run_cli

    server.replies = [Canned("The script plots both figures."), Canned(NOTES), Canned(CLEAN)]
    rc = run_cli("run", _idea(tmp_path, tiny_copy), "--model", PLAIN, "--vision-model", VISION, "--budget-usd", "0.01",
                 "--sandbox", tmp_path / "sb", "--stages", "plots")
    assert rc == 4 and "budget" in capsys.readouterr().err
    ws = only_workspace(tmp_path / "sb")
    assert len(server.requests) == 2 and not _vision_requests(server)  # stopped before the images were sent
    assert not events(ws, "figures_reviewed")
    assert run_cli("resume", ws, "--budget-usd", "5", "--stages", "plots") == 0  # the run's vision model is kept
    assert len(server.requests) == 3 and len(_vision_requests(server)) == 1
    assert server.requests[2]["model"] == "test-vision"
    steps = [e["step"] for e in events(ws, "exchange") if e["stage"] == "plots"]
    assert steps == ["edit", "notes", "vision"]
    (ex,) = [e for e in events(ws, "exchange") if e["step"] == "vision"]
    assert ex["model"] == VISION and ex["cost_usd"] > 0


def test_resume_reuses_the_recorded_vision_exchange(tmp_path, server, models, tiny_copy):
    """The provider refuses the fix request (401): the run stops after the look was recorded; resume sends
    the recorded findings to the agent without showing the figures to the model again."""
    from conftest import events, only_workspace, run_cli

    server.replies = [Canned("The script plots both figures."), Canned(NOTES), Canned(LOOKED),
                      Canned(status=401, error="Incorrect API key provided")]
    rc = run_cli("run", _idea(tmp_path, tiny_copy), "--model", VISION, "--sandbox", tmp_path / "sb", "--stages", "plots")
    assert rc == 3
    ws = only_workspace(tmp_path / "sb")
    assert len(_vision_requests(server)) == 1
    server.replies = [Canned(_fix()), Canned(CLEAN)]
    assert run_cli("resume", ws, "--stages", "plots") == 0
    assert len(_vision_requests(server)) == 2  # round 1 once (recorded), round 2 once
    fix = server.requests[4]
    assert "fig_panels.png: empty-panel" in fix["messages"][-1]["content"]
    looks = [(e["attempt"], e["response"]) for e in events(ws, "exchange") if e["step"] == "vision"]
    assert looks == [(1, LOOKED), (2, CLEAN)]
    assert [e["round"] for e in events(ws, "figures_reviewed")] == [1, 2]


def test_a_live_vision_workspace_replays_without_the_model(tmp_path, server, models, tiny_copy, capsys):
    from conftest import events, only_workspace, run_cli

    server.replies = [Canned("The script plots both figures."), Canned(NOTES), Canned(LOOKED), Canned(_fix()),
                      Canned(CLEAN)]
    assert run_cli("run", _idea(tmp_path, tiny_copy), "--model", VISION, "--sandbox", tmp_path / "sb",
                   "--stages", "plots") == 0
    ws = only_workspace(tmp_path / "sb")
    asked = len(server.requests)
    assert run_cli("replay", ws, "--sandbox", tmp_path / "replayed", "--stages", "plots") == 0
    assert len(server.requests) == asked  # the recorded looks were served, not asked again
    rws = only_workspace(tmp_path / "replayed")
    assert [e["findings"] for e in events(rws, "figures_reviewed")] == [e["findings"] for e in events(ws, "figures_reviewed")]
    assert (rws / "fig_panels.png").read_bytes() == (ws / "fig_panels.png").read_bytes()


REVIEW = json.dumps({"summary": "A step-size study.", "strengths": ["clear"], "weaknesses": ["small"], "questions": [],
                     "limitations": [], "soundness": 3, "presentation": 2, "contribution": 2, "overall": 5,
                     "confidence": 3, "decision": "Reject"})


def _paper(folder):
    """A two-page paper.pdf (matplotlib's PDF backend; its text is extractable by pdftotext)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    with PdfPages(folder / "paper.pdf") as pdf:
        for i, text in enumerate(["Faster descent. We tune the learning rate.", "Results: the error falls."]):
            fig = plt.figure(figsize=(8.5, 11))
            fig.text(0.1, 0.9, text)
            if i == 1:
                fig.add_axes([0.1, 0.4, 0.8, 0.4]).plot([0, 1, 2], [3, 2, 1])
            pdf.savefig(fig)
            plt.close(fig)


def _review_run(tmp_path, server, tiny_copy, model):
    """The review stage alone on a workspace holding paper.pdf, the loopback model answering one review."""
    from conftest import only_workspace, run_cli

    _paper(tiny_copy)
    server.replies = [Canned(f"```json\n{REVIEW}\n```")]
    assert run_cli("run", _idea(tmp_path, tiny_copy), "--model", model, "--sandbox", tmp_path / "sb",
                   "--stages", "review") == 0
    return only_workspace(tmp_path / "sb")


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="pdftoppm (poppler-utils) not installed")
def test_the_paper_review_gets_the_page_images_when_the_model_has_vision(tmp_path, server, models, tiny_copy):
    import io

    from fake_openai import images, texts

    ws = _review_run(tmp_path, server, tiny_copy, VISION)
    (req,) = server.requests
    pages = images(req)
    assert len(pages) == 2 and all(m == "image/png" for m, _ in pages)
    sizes = [Image.open(io.BytesIO(b)).size for _, b in pages]
    assert sizes == [(510, 660), (510, 660)]  # 8.5 x 11 in at 60 dpi: the real pages, rendered
    assert "Faster descent" in texts(req) and "page(s) follow as images" in texts(req)
    out = json.loads((ws / "review.json").read_text())
    assert out["vision"]["pages"] == ["page-1.png", "page-2.png"] and out["review"]["overall"] == 5
    assert out["model"] == VISION


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="pdftoppm (poppler-utils) not installed")
def test_the_paper_review_is_text_only_without_vision(tmp_path, server, models, tiny_copy):
    ws = _review_run(tmp_path, server, tiny_copy, PLAIN)
    assert not _vision_requests(server) and len(server.requests) == 1
    out = json.loads((ws / "review.json").read_text())["vision"]
    assert out["pages"] == [] and out["pages_skipped"].startswith("no vision model: openai/test-model")


def test_a_vision_model_that_refuses_the_images_is_skipped_not_fatal(tmp_path, server, models, tiny_copy):
    from conftest import events, only_workspace, run_cli

    server.replies = [Canned("The script plots both figures."), Canned(NOTES),
                      Canned(status=400, error="this model does not support image input")]
    assert run_cli("run", _idea(tmp_path, tiny_copy), "--model", VISION, "--sandbox", tmp_path / "sb",
                   "--stages", "plots") == 0
    ws = only_workspace(tmp_path / "sb")
    (failed,) = events(ws, "exchange_failed")
    assert failed["step"] == "vision" and failed["kind"] == "bad_request"
    summary = next(e for e in events(ws, "stage_finished") if e["stage"] == "plots")["summary"]
    assert "vision review skipped: the vision model failed (bad_request)" in summary
    assert (ws / "fig_panels.png").is_file()  # the figures that passed the checks stand


def test_a_fix_that_breaks_the_plot_is_undone_and_the_figures_that_passed_stay(tmp_path, tiny_copy):
    from conftest import blk, events, only_workspace, run_cli

    broken = "Fill the panel.\n\n" + blk("RIGHT = False", "RIGHT = False\nraise SystemExit('broken')", "plot.py")
    lines = [{"stage": "plots", "attempt": 1, "step": "edit", "response": "Plots both."},
             {"stage": "plots", "step": "notes", "response": NOTES},
             {"stage": "plots", "attempt": 1, "step": "vision", "response": LOOKED},
             {"stage": "plots", "attempt": 2, "step": "vision-fix", "response": broken}]
    assert run_cli("run", _idea(tmp_path, tiny_copy, lines), "--sandbox", tmp_path / "sb", "--stages", "plots") == 0
    ws = only_workspace(tmp_path / "sb")
    plots = [e for e in events(ws, "run_finished") if e["phase"] == "plot"]
    assert [p["status"] for p in plots] == ["ok", "failed"]
    assert "SystemExit" not in (ws / "plot.py").read_text()
    for f in ("fig_panels.png", "fig_nolabel.png"):
        assert (ws / f).read_bytes() == _git_show(ws, plots[0]["commit"], f)
    summary = next(e for e in events(ws, "stage_finished") if e["stage"] == "plots")["summary"]
    assert summary.startswith("2 figure(s)") and "the fix broke the plot and was undone" in summary


def test_a_round_reads_as_one_progress_line():
    from orchestrator.events import FiguresReviewed
    from orchestrator.formatting import describe

    seen = FiguresReviewed(stage="plots", round=1, findings=[{"figure": "fig_panels.png", "kind": "empty-panel"}])
    assert describe(seen) == "  vision review round 1: 1 finding(s), fig_panels.png empty-panel"
    assert describe(FiguresReviewed(stage="plots", round=0, skipped="no vision model")) is None  # said as a message
