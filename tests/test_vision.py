"""The vision review of figures against the loopback model: image content parts sent (data URLs), typed
findings back, journaled without the images' bytes; skipped, with the reason, without a vision model."""

from __future__ import annotations

import json

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

