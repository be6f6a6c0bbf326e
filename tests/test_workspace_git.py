"""The workspace's commits: files over the cap kept out of the history, HEAD read without git where it can be."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from orchestrator import runner
from orchestrator import workspace as workspace_mod
from orchestrator.workspace import GITIGNORE, Workspace, git_argv, read_head

MB = 1024 * 1024


def _git(root: Path, *args: str) -> str:
    return subprocess.run(git_argv(*args), cwd=root, env=workspace_mod._git_env(), capture_output=True, text=True,
                          check=True).stdout


@pytest.fixture
def ws(tmp_path) -> Workspace:
    root = tmp_path / "ws"
    (root / ".orchestrate").mkdir(parents=True)
    (root / ".orchestrate" / "journal.jsonl").write_text("")
    (root / ".gitignore").write_text(GITIGNORE)
    (root / "experiment.py").write_text("print('hi')\n")
    _git(root, "init", "-q", "-b", "main")
    w = Workspace(root)
    w.commit("baseline")
    return w


def test_a_commit_with_nothing_over_the_cap_runs_git_twice_and_returns_head(ws, monkeypatch):
    calls: list[list[str]] = []
    real = runner.tool

    def counted(argv, **kw):
        calls.append([a for a in argv if not a.startswith("-") and "=" not in a][1:2])
        return real(argv, **kw)

    monkeypatch.setattr(workspace_mod, "tool", counted)
    (ws.root / "run_1").mkdir()
    (ws.root / "run_1" / "final_info.json").write_text("{}")
    commit = ws.commit("run 1")
    assert calls == [["add"], ["commit"]]
    assert commit == _git(ws.root, "rev-parse", "HEAD").strip()
    assert "run_1/final_info.json" in _git(ws.root, "ls-files").split()


@pytest.mark.parametrize("walk_limit", [workspace_mod._WALK_LIMIT, 3], ids=["walked", "listed-by-git"])
def test_files_over_the_cap_stay_out_of_the_history(ws, monkeypatch, walk_limit):
    monkeypatch.setattr(workspace_mod, "COMMIT_FILE_CAP_MB", 1)
    monkeypatch.setattr(workspace_mod, "_WALK_LIMIT", walk_limit)  # 3: a workspace too big to walk, git lists
    root = ws.root
    (root / "grows.npy").write_bytes(bytes(10))
    (root / "kept.npy").write_bytes(bytes(10))
    (root / "weights.pt").write_bytes(bytes(10))
    _git(root, "add", "-f", "weights.pt")  # tracked although its pattern is ignored
    ws.commit("small")
    (root / "grows.npy").write_bytes(bytes(2 * MB))  # tracked while small, now over the cap
    (root / "weights.pt").write_bytes(bytes(2 * MB))
    (root / "run_1" / "deep").mkdir(parents=True)
    (root / "run_1" / "deep" / "huge [1].npy").write_bytes(bytes(2 * MB))  # new, in an untracked folder
    (root / "run_1" / "small.json").write_text("{}")
    (root / ".orchestrate" / "big.log").write_bytes(bytes(2 * MB))  # ignored already: no line for it
    (root / "elsewhere.bin").write_bytes(bytes(2 * MB))  # ignored by pattern
    (root / "link.npy").symlink_to(root / "run_1" / "deep" / "huge [1].npy")  # a link: its own size, committed
    ws.commit("big ones")
    tracked = set(_git(root, "ls-files").splitlines())
    assert {"kept.npy", "run_1/small.json", "link.npy", "experiment.py"} <= tracked
    assert not {"grows.npy", "weights.pt", "run_1/deep/huge [1].npy", ".orchestrate/big.log"} & tracked
    lines = (root / ".gitignore").read_text().splitlines()
    assert {"/grows.npy", "/weights.pt", "/run_1/deep/huge\\ \\[1\\].npy"} <= set(lines)
    assert not any("big.log" in line or "elsewhere" in line for line in lines)
    for rel in ("grows.npy", "run_1/deep/huge [1].npy"):  # never hashed into the repository
        blob = _git(root, "hash-object", rel).strip()
        assert subprocess.run(["git", "cat-file", "-e", blob], cwd=root, capture_output=True).returncode != 0
        assert (root / rel).stat().st_size == 2 * MB
    assert _git(root, "status", "--porcelain") == ""
    assert ws.head() == _git(root, "rev-parse", "HEAD").strip()


def test_head_reads_loose_and_packed_refs_and_leaves_the_rest_to_git(ws):
    git = ws.root / ".git"
    first = ws.head()
    assert read_head(git) == first == _git(ws.root, "rev-parse", "HEAD").strip()
    _git(ws.root, "pack-refs", "--all")
    assert not (git / "refs" / "heads" / "main").exists()
    assert read_head(git) == first
    (ws.root / "experiment.py").write_text("print('bye')\n")
    second = ws.commit("second")  # a loose ref again, newer than the packed one
    assert second != first and read_head(git) == second == _git(ws.root, "rev-parse", "HEAD").strip()
    _git(ws.root, "checkout", "-q", "--detach", first)
    assert read_head(git) is None and ws.head() == first  # detached: git answers
    _git(ws.root, "checkout", "-q", "main")
    ref = git / "refs" / "heads" / "main"
    (git / "elsewhere").write_text(first + "\n")
    ref.unlink()
    ref.symlink_to(git / "elsewhere")  # a link on the way: never followed here
    assert read_head(git) is None
    ref.unlink()
    ref.write_text("not a commit id\n")
    assert read_head(git) is None
