"""The plots stage and the figure checks: a crashing plot script, then a blank figure, both fed back to
the agent and fixed; plot.py sees only runs that are results; figures are checked for real."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FIXTURES, events, only_workspace, run_cli

from orchestrator.figures import check_image


def _png(path, array):
    from PIL import Image

    Image.fromarray(array).save(path)
    return path


def test_blank_white_image_is_rejected(tmp_path):
    c = check_image(_png(tmp_path / "w.png", np.full((100, 120, 3), 255, np.uint8)))
    assert not c.ok and "blank" in c.problem and "#ffffff" in c.problem


def test_single_colour_image_is_rejected(tmp_path):
    c = check_image(_png(tmp_path / "c.png", np.full((60, 60, 3), (30, 120, 200), np.uint8)))
    assert not c.ok and "single colour" in c.problem


def test_fully_transparent_image_is_blank(tmp_path):
    arr = np.zeros((50, 50, 4), np.uint8)
    arr[..., 0] = 255  # red, but invisible
    assert not check_image(_png(tmp_path / "t.png", arr)).ok


def test_a_few_stray_pixels_are_still_blank(tmp_path):
    arr = np.full((200, 200, 3), 255, np.uint8)
    arr[10, 10:15] = 0
    c = check_image(_png(tmp_path / "s.png", arr))
    assert not c.ok and "nearly blank" in c.problem


def test_corrupt_and_missing_files_are_rejected(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    assert "not a readable image" in check_image(tmp_path / "bad.png").problem
    (tmp_path / "empty.png").write_bytes(b"")
    assert "empty" in check_image(tmp_path / "empty.png").problem
    assert "not written" in check_image(tmp_path / "none.png").problem


def test_a_real_plot_passes(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1, 2], [3, 1, 2])
    fig.savefig(tmp_path / "ok.png")
    plt.close(fig)
    c = check_image(tmp_path / "ok.png")
    assert c.ok, c.problem
    assert c.width > 100


def test_crash_then_blank_figure_are_fed_back_and_fixed(tmp_path):
    """The paper fixture's transcript: plot.py raises KeyError, then writes an empty figure, then a good one."""
    sandbox = tmp_path / "sb"
    rc = run_cli("run", FIXTURES / "paper_idea.json", "--sandbox", sandbox, "--isolation", "none",
                 "--stages", "experiments,plots")
    assert rc == 0
    ws = only_workspace(sandbox)
    plots = [e for e in events(ws, "run_finished") if e["phase"] == "plot"]
    assert [p["status"] for p in plots] == ["failed", "failed", "ok"]
    assert "KeyError" in plots[0]["feedback"]["traceback"]
    assert any("blank" in r for r in plots[1]["reasons"])
    prompts = [e for e in events(ws, "exchange") if e["stage"] == "plots"]
    assert [(p["attempt"], p["step"]) for p in prompts] == [(1, "edit"), (2, "fix"), (3, "fix"), (None, "notes")]
    assert "KeyError: 'err'" in prompts[1]["prompt"]  # the crash went back to the agent
    assert "error.png: the image is blank" in prompts[2]["prompt"]  # and so did the blank figure
    assert "error.png" in prompts[3]["prompt"] and "## Figures" in (ws / "notes.txt").read_text()
    figs = [a for a in events(ws, "artifact") if a["kind"] == "figure"]
    assert [(f["path"], f["ok"]) for f in figs] == [("error.png", False), ("error.png", True)]
    assert check_image(ws / "error.png").ok
    finished = [e for e in events(ws, "stage_finished") if e["stage"] == "plots"]
    assert finished and "1 figure(s): error.png" in finished[0]["summary"]
    # the first prompt lists only results: run 1 and run 2 and the baseline, as folders
    assert "run_1/final_info.json" in prompts[0]["prompt"] and "run_2/final_info.json" in prompts[0]["prompt"]


def test_plot_script_that_rewrites_results_is_undone(tmp_path, tiny_copy):
    """A plot script must read the runs, never change them: the change is reverted and fed back."""
    (tiny_copy / "plot.py").write_text(
        "import json\nimport matplotlib.pyplot as plt\n"
        "json.dump({'eval': {'error': 0.0}}, open('run_0/final_info.json', 'w'))\n"
        "plt.plot([0, 1], [1, 0]); plt.savefig('error.png')\n")
    from conftest import make_idea

    idea = make_idea(tmp_path, [
        {"stage": "plots", "attempt": 1, "step": "edit", "response": "Looks right."},
        {"stage": "plots", "attempt": 2, "step": "fix", "response": "No change."},
    ], limits={"max_plot_attempts": 2}, template=tiny_copy)
    before = (tiny_copy / "run_0" / "final_info.json").read_text()
    assert run_cli("run", idea, "--sandbox", tmp_path / "sb", "--stages", "plots") == 0
    ws = only_workspace(tmp_path / "sb")
    assert (ws / "run_0" / "final_info.json").read_text() == before
    plots = [e for e in events(ws, "run_finished") if e["phase"] == "plot"]
    assert plots[0]["status"] == "tampered"
    assert any("changed run results" in r for r in plots[0]["reasons"])


@pytest.mark.parametrize("size", [(4, 4)])
def test_tiny_images_are_rejected(tmp_path, size):
    arr = np.random.default_rng(0).integers(0, 255, (*size, 3), dtype=np.uint8)
    assert "pixels" in check_image(_png(tmp_path / "x.png", arr)).problem
