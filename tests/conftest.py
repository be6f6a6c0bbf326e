"""Shared fixtures: every test gets its own HOME and orchestrator cache, and never a real provider key."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

# A suite started in the background by a shell without job control (`cmd &`, nohup) inherits SIGINT
# ignored, and so would every orchestrator it starts: the Ctrl-C tests would then test nothing. Ctrl-C
# gets Python's own handler here, and the processes the tests start get the default disposition.
signal.signal(signal.SIGINT, signal.default_int_handler)

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
TINY = FIXTURES / "tiny"


@pytest.fixture(autouse=True)
def hermetic_env(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("ORCHESTRATE_HOME", str(tmp_path / "orch_home"))
    monkeypatch.setenv("ORCHESTRATE_RETRY_BASE_S", "0.01")
    monkeypatch.setenv("ORCHESTRATE_LITERATURE", "offline")  # `orchestrate ideas` never searches but a loopback stub
    for var in list(os.environ):
        if var.startswith(("OPENAI_", "ANTHROPIC_", "ORCHESTRATE_MODEL", "ORCHESTRATE_FAULT", "ORCHESTRATE_STREAM")):
            monkeypatch.delenv(var, raising=False)
    yield


@pytest.fixture
def server(monkeypatch):
    """The loopback OpenAI-compatible server (tests/fake_openai.py), with the provider variables set to it."""
    from fake_openai import FakeOpenAI

    srv = FakeOpenAI()
    monkeypatch.setenv("OPENAI_API_BASE", srv.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    yield srv
    srv.close()


def blk(search: str, replace: str, fname: str = "experiment.py") -> str:
    """One aider SEARCH/REPLACE block."""
    return f"{fname}\n```python\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n```\n"


DONE = '```json\n{"orchestrate": "done", "reason": "finished"}\n```\n'


def make_idea(tmp_path: Path, lines: list[dict], *, name: str = "tiny", max_runs: int = 3, limits: dict | None = None,
              template: Path = TINY) -> Path:
    """An idea on a template plus its scripted transcript, in tmp_path."""
    tr = tmp_path / f"{name}.transcript.jsonl"
    header = {"transcript": 1, "idea": name, "template": template.name, "note": "scripted: test"}
    tr.write_text("".join(json.dumps(x) + "\n" for x in [header, *lines]))
    idea = {"name": name, "title": "Test idea", "template": str(template), "experiment": "Make the error small.",
            "max_runs": max_runs, "transcript": tr.name, "limits": {"isolation": "none", **(limits or {})}}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(idea))
    return path


def exp(run: int, attempt: int, response: str) -> dict:
    return {"stage": "experiments", "run": run, "attempt": attempt, "response": response}


def _stages(args: tuple) -> list[str]:
    """run/resume/replay default to the experiments stage here: these tests are about the backbone,
    the paper stages have their own tests."""
    out = [str(a) for a in args]
    if out and out[0] in ("run", "resume", "replay") and "--stages" not in out:
        out += ["--stages", "experiments"]
    return out


def run_cli(*args: str | Path) -> int:
    from orchestrator.cli import main

    try:
        return main(_stages(args))
    except SystemExit as exc:  # argparse refuses a flag from inside the parser, as the shell would see it
        return exc.code if isinstance(exc.code, int) else 2


def cli_subprocess(*args: str | Path, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *_stages(args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, cwd=ROOT)


def only_workspace(sandbox: Path) -> Path:
    found = [p for p in sandbox.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(found) == 1, found
    return found[0]


def events(ws: Path, kind: str | None = None) -> list[dict]:
    rows = [json.loads(line) for line in (ws / ".orchestrate" / "journal.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if kind is None or r["type"] == kind]


@pytest.fixture
def tiny_copy(tmp_path) -> Path:
    """A private copy of the tiny template a test may change."""
    dst = tmp_path / "tiny"
    shutil.copytree(TINY, dst)
    return dst
