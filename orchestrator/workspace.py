"""Workspaces: `sandbox/<YYYYmmdd_HHMMSS>_<name>/`, a template copy with its own git repository.

Made atomically (built under a temporary name, then renamed), so bad input never leaves one half-made.
One commit per agent edit and per run: every run's exact code is recoverable.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from .errors import WorkspaceError
from .journal import Journal
from .runner import tool
from .spec import LoadedIdea
from .template import MANIFEST, Template, load_template

STATE_DIR = ".orchestrate"
GITIGNORE = """\
.orchestrate/
.smoke/
__pycache__/
*.pyc
# large artefacts stay out of the workspace's history
*.pt
*.pth
*.ckpt
*.safetensors
*.bin
*.npy
*.npz
"""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Workspace:
    """An existing workspace folder: its files, its repository, its journal."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        if not (self.root / STATE_DIR / "journal.jsonl").is_file():
            raise WorkspaceError(self.root, "not a workspace (no .orchestrate/journal.jsonl)")
        self.state = self.root / STATE_DIR
        self.journal = Journal(self.state / "journal.jsonl")
        self.template = load_template(self.root) if (self.root / MANIFEST).is_file() else None
        self._lock_fh = None

    # -- files ---------------------------------------------------------------------------------
    @property
    def manifest(self):
        if self.template is None:
            raise WorkspaceError(self.root, f"the workspace has no {MANIFEST}")
        return self.template.manifest

    def attempt_dir(self, run: int, attempt: int) -> Path:
        return self.state / "runs" / f"run_{run}" / f"attempt_{attempt}"

    def read_json(self, rel: str) -> Any:
        return json.loads((self.state / rel).read_text())

    def protected_hashes(self) -> dict[str, str]:
        return json.loads((self.state / "protected.json").read_text())

    def changed_protected(self) -> list[str]:
        """Protected files whose content differs from when the workspace was made."""
        changed = []
        for rel, digest in self.protected_hashes().items():
            p = self.root / rel
            if not p.is_file() or sha256(p) != digest:
                changed.append(rel)
        return changed

    def restore_protected(self, rels: list[str]) -> None:
        for rel in rels:
            src = self.state / "pristine" / rel
            dst = self.root / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if dst.is_dir() and not dst.is_symlink():
                shutil.rmtree(dst)
            elif dst.exists() or dst.is_symlink():
                dst.unlink()
            shutil.copy2(src, dst)

    # -- git -----------------------------------------------------------------------------------
    def git(self, *args: str, check: bool = True) -> str:
        res = tool(["git", *args], cwd=self.root, env=_git_env())
        if check and res.exit_code != 0:
            raise WorkspaceError(self.root, f"git {' '.join(args[:2])} failed: {res.stderr.strip()[:200]}")
        return res.stdout

    def commit(self, message: str) -> str:
        """Commit everything (ignored files aside); returns the commit id (HEAD when nothing changed)."""
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD").strip()

    def last_recorded_commit(self) -> str:
        """The newest commit the journal vouches for: where a resume puts the tree back."""
        for event in reversed(self.journal.events):
            commit = getattr(event, "commit", None)
            if commit and event.type != "run_started":
                return commit
        return self.git("rev-list", "--max-parents=0", "HEAD").split()[0]

    def head(self) -> str:
        return self.git("rev-parse", "HEAD").strip()

    def reset_to(self, commit: str) -> None:
        """Put the tree back exactly at `commit` (untracked, non-ignored files removed)."""
        self.git("reset", "-q", "--hard", commit)
        self.git("clean", "-q", "-fd")

    def diff(self, a: str, b: str, *paths: str) -> str:
        return self.git("diff", "--no-color", a, b, "--", *paths, check=False)

    def show_file(self, commit: str, rel: str) -> str | None:
        res = tool(["git", "show", f"{commit}:{rel}"], cwd=self.root, env=_git_env())
        return res.stdout if res.exit_code == 0 else None

    # -- lock ----------------------------------------------------------------------------------
    def lock(self) -> None:
        """One orchestrator per workspace at a time."""
        self._lock_fh = open(self.state / "lock", "w")
        try:
            fcntl.flock(self._lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WorkspaceError(self.root, "another orchestrator is working in this workspace") from None
        self._lock_fh.write(str(os.getpid()))
        self._lock_fh.flush()

    def unlock(self) -> None:
        if self._lock_fh is not None:
            fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None


def _git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_AUTHOR_NAME="orchestrator", GIT_AUTHOR_EMAIL="orchestrator@localhost",
        GIT_COMMITTER_NAME="orchestrator", GIT_COMMITTER_EMAIL="orchestrator@localhost",
        GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL="/dev/null", GIT_TERMINAL_PROMPT="0",
    )
    return env


def new_folder(sandbox: Path, name: str) -> tuple[Path, Path]:
    """(`sandbox/<YYYYmmdd_HHMMSS>_<name>` not yet taken, the temporary name to build it under)."""
    sandbox.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d_%H%M%S")
    final = sandbox / f"{stamp}_{name}"
    n = 2
    while final.exists():
        final = sandbox / f"{stamp}_{name}_{n}"
        n += 1
    return final, sandbox / f".partial_{final.name}_{os.getpid()}"


def create(
    loaded: LoadedIdea,
    template: Template,
    *,
    sandbox: Path,
    header: dict[str, Any],
) -> Workspace:
    """Copy the template into a fresh workspace, merge the idea's template_config, record the start."""
    from .events import WorkspaceCreated

    idea = loaded.idea
    final, tmp = new_folder(sandbox, idea.name)
    try:
        shutil.copytree(template.root, tmp, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".git"))
        if idea.template_config:
            cfg = tmp / "config.json"
            base = json.loads(cfg.read_text()) if cfg.is_file() else {}
            base.update(idea.template_config)
            cfg.write_text(json.dumps(base, indent=2) + "\n")
        (tmp / ".gitignore").write_text(GITIGNORE)
        state = tmp / STATE_DIR
        state.mkdir()
        (state / "idea.json").write_text(idea.model_dump_json(indent=2))
        if loaded.transcript_path:
            shutil.copy2(loaded.transcript_path, state / "transcript.jsonl")
        hashes = {}
        for rel in template.manifest.protected:
            hashes[rel] = sha256(tmp / rel)
            (state / "pristine" / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(tmp / rel, state / "pristine" / rel)
        (state / "protected.json").write_text(json.dumps(hashes, indent=2))
        res = tool(["git", "init", "-q", "-b", "main"], cwd=tmp, env=_git_env())
        if res.exit_code != 0:
            raise WorkspaceError(tmp, f"git init failed: {res.stderr.strip()}")
        journal = Journal(state / "journal.jsonl")
        journal.append(WorkspaceCreated(**header))
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    ws = Workspace(final)
    ws.commit("baseline: template copied (run_0 is the template's baseline)")
    return ws
