"""Workspaces: `sandbox/<YYYYmmdd_HHMMSS>_<name>/`, a template copy with its own git repository.

Made atomically (built under a temporary name, then renamed), so bad input never leaves one half-made.
One commit per agent edit and per run: every run's exact code is recoverable.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
import time
from pathlib import Path
from typing import Any

from .errors import WorkspaceError
from .journal import Journal
from .paths import UnsafePath, safe_path
from .runner import tool
from .spec import LoadedIdea
from .template import MANIFEST, Template, load_template

STATE_DIR = ".orchestrate"
GITIGNORE = """\
.orchestrate/
.smoke/
__pycache__/
*.pyc
# large artefacts stay out of the workspace's history (model weights; and any file over the commit cap)
*.pt
*.pth
*.ckpt
*.safetensors
*.bin
"""
# Arrays and pickles a run writes (`all_results.npy`, `all_results.pkl`: what AI Scientist's plot.py reads) are
# committed with the run, each up to this size; a larger file stays on disk, out of the history (.gitignore).
COMMIT_FILE_CAP_MB = 50


SEED_FILE = "eval_seed"  # under .orchestrate/: the evaluator's secret seed (hidden from every experiment)
# Git as the orchestrator runs it: no hooks, no fsmonitor, no pager, editor, external diff, credential helper
# or ssh command, whatever the workspace's .git/config says (it is checked and restored after every run too).
GIT_OVERRIDES = (
    "core.hooksPath=/dev/null", "core.fsmonitor=false", "core.untrackedCache=false", "core.pager=cat",
    "core.editor=true", "sequence.editor=true", "core.sshCommand=false", "core.askPass=", "credential.helper=",
    "core.attributesFile=/dev/null", "commit.gpgSign=false", "tag.gpgSign=false",
    "gc.auto=0", "maintenance.auto=false", "protocol.allow=never", "safe.directory=*",
)
GIT_WATCHED = ("config", "HEAD", "packed-refs", "hooks", "info", "refs/heads")  # what a run must not change in .git


def _ignore_pattern(rel: str) -> str:
    """A .gitignore line that matches exactly this path (its pattern characters escaped)."""
    return "/" + re.sub(r"([\[\]*?!# \\])", r"\\\1", rel)


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

    def path(self, rel: str | Path) -> Path:
        """A workspace file the orchestrator reads or writes, never through a symbolic link (safe_path)."""
        return safe_path(self.root, rel)

    def eval_seed(self) -> str:
        """The evaluator's secret seed: made with the workspace (or on first use by an older one)."""
        path = self.state / SEED_FILE
        if not path.is_file():
            path.write_text(str(secrets.randbelow(2**31)))
            path.chmod(0o600)
        return path.read_text().strip()

    def copy_eval_seed_to(self, other: Workspace) -> None:
        """Give `other` (a replay of this workspace) this workspace's evaluation seed, so that its runs are
        evaluated on the same held-out data."""
        (other.state / SEED_FILE).write_text(self.eval_seed())

    def protected_hashes(self) -> dict[str, str]:
        return json.loads((self.state / "protected.json").read_text())

    def changed_protected(self, root: Path | None = None) -> list[str]:
        """Protected files whose content differs from when the workspace was made (in the workspace, or in
        `root`: a tree node's own folder)."""
        changed = []
        for rel, digest in self.protected_hashes().items():
            p = (root or self.root) / rel
            if (root is not None and p.is_symlink()) or not p.is_file() or sha256(p) != digest:
                changed.append(rel)
        return changed

    def restore_protected(self, rels: list[str], root: Path | None = None) -> None:
        """Put the protected files `rels` back from the pristine copy (in the workspace, or in `root`: a tree
        node's own folder)."""
        for rel in rels:
            src = self.state / "pristine" / rel
            dst = (root or self.root) / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if dst.is_dir() and not dst.is_symlink():
                shutil.rmtree(dst)
            elif dst.exists() or dst.is_symlink():
                dst.unlink()
            shutil.copy2(src, dst)

    # -- git -----------------------------------------------------------------------------------
    def git(self, *args: str, check: bool = True) -> str:
        res = tool(git_argv(*args), cwd=self.root, env=_git_env())
        if check and res.exit_code != 0:
            raise WorkspaceError(self.root, f"git {' '.join(args[:2])} failed: {res.stderr.strip()[:200]}")
        return res.stdout

    def commit(self, message: str, paths: list[str] | None = None) -> str:
        """Commit everything (ignored files aside; a new file over COMMIT_FILE_CAP_MB is ignored from now on), or
        only `paths` (a node's run folder and notes landing while the tree holds another node's code: the rest of
        the tree stays as it is, uncommitted); returns the commit id (HEAD when nothing changed). Two git processes
        (add, commit) when no file is over the cap and every path is there."""
        self._leave_out_large()
        if paths is None:
            self.git("add", "-A")
            self.git("commit", "-q", "--allow-empty", "-m", message)
        else:
            wanted = [p for p in paths if (self.root / p).exists() or self.git("ls-files", "--", p).strip()]
            if wanted:
                self.git("--literal-pathspecs", "add", "-A", "--", *wanted)
            self.git("--literal-pathspecs", "commit", "-q", "--allow-empty", "-m", message,
                     *(["--only", "--", *wanted] if wanted else []))
        return self.head()

    def export(self, commit: str, dest: Path, *, skip=None) -> list[str]:
        """Write the files of `commit` (but those `skip(path)` names) into the new folder `dest`, through an index
        of their own (the workspace's index and tree are not touched); returns the paths written."""
        dest.mkdir(parents=True)
        env = {**_git_env(), "GIT_INDEX_FILE": str(dest.parent / f".{dest.name}.index")}
        try:
            for args, text in ((("read-tree", commit), None), (("ls-files", "-z"), None)):
                res = tool(git_argv(*args), cwd=self.root, env=env, input_text=text)
                if res.exit_code != 0:
                    raise WorkspaceError(self.root, f"git {args[0]} {commit[:12]} failed: {res.stderr.strip()[:300]}")
            names = [n for n in res.stdout.split("\0") if n and not (skip and skip(n))]
            if names:
                res = tool(git_argv("checkout-index", "-z", "--stdin", f"--prefix={dest}/"), cwd=self.root, env=env,
                           input_text="\0".join(names))
                if res.exit_code != 0:
                    raise WorkspaceError(self.root, f"git checkout-index into {dest} failed: {res.stderr.strip()[:300]}")
        finally:
            Path(env["GIT_INDEX_FILE"]).unlink(missing_ok=True)
        return names

    def _leave_out_large(self) -> None:
        """Ignore every new or changed file over the cap before it is added (kept on disk: a resume's clean leaves
        it; never hashed into the repository), and untrack one that was tracked while smaller. Git is asked only
        about the files over the cap on disk (`_over_cap`): none, the usual case, costs no git process."""
        cap = COMMIT_FILE_CAP_MB * 1024 * 1024
        candidates = _over_cap(self.root, cap)
        if candidates == []:
            return
        # untracked and not ignored, or tracked and changed: what `add -A` would hash (named, when git takes
        # the names: not too many, none that it refuses, such as one inside a nested repository; else all)
        ask = ("--literal-pathspecs", "ls-files", "-z", "--others", "--modified", "--exclude-standard", "--")
        try:
            listed = self.git(*ask, *(candidates if candidates and len(candidates) <= 1000 else []))
        except WorkspaceError:
            listed = self.git(*ask)
        big = sorted(rel for rel in set(filter(None, listed.split("\0"))) if _size(self.root / rel) > cap)
        if not big:
            return
        tracked = set(filter(None, self.git("--literal-pathspecs", "ls-files", "-z", "--", *big).split("\0")))
        if tracked:
            self.git("--literal-pathspecs", "rm", "-q", "--cached", "--", *sorted(tracked))
        ignore = self.root / ".gitignore"
        try:
            text = safe_path(self.root, ".gitignore").read_text() if ignore.is_file() else ""
        except UnsafePath:  # a link a run left (to a host file): replaced, never written through
            ignore.unlink()
            text = GITIGNORE
        lines = [_ignore_pattern(rel) for rel in big]
        ignore.write_text(text.rstrip("\n") + f"\n# over {COMMIT_FILE_CAP_MB} MB: kept out of the history\n"
                          + "\n".join(lines) + "\n")

    def last_recorded_commit(self) -> str:
        """The newest commit the journal vouches for: where a resume puts the tree back."""
        for event in reversed(self.journal.events):
            commit = getattr(event, "commit", None)
            if commit and event.type != "run_started":
                return commit
        return self.git("rev-list", "--max-parents=0", "HEAD").split()[0]

    def head(self) -> str:
        """HEAD's commit id, read from `.git` as git reads it (`read_head`); git rev-parse where that declines."""
        return read_head(self.root / ".git") or self.git("rev-parse", "HEAD").strip()

    def reset_to(self, commit: str) -> None:
        """Put the tree back exactly at `commit` (untracked, non-ignored files removed)."""
        self.git("reset", "-q", "--hard", commit)
        self.git("clean", "-q", "-fd")

    def diff(self, a: str, b: str, *paths: str) -> str:
        return self.git("diff", "--no-color", "--no-ext-diff", "--no-textconv", a, b, "--", *paths, check=False)

    def git_snapshot(self, *, refs: bool = True) -> dict[str, bytes | None]:
        """What a run must not change in `.git` (config, hooks, refs): file -> content (None: `.git` is not
        a plain folder any more). `refs=False` leaves the branch heads out: a node's full run in its own folder
        lasts while the orchestrator commits other nodes (it never sees `.git` under bwrap)."""
        git = self.root / ".git"
        if git.is_symlink() or not git.is_dir():
            return {".git": None}
        out: dict[str, bytes | None] = {}
        for rel in GIT_WATCHED if refs else tuple(w for w in GIT_WATCHED if w != "refs/heads"):
            p = git / rel
            if p.is_symlink() or (p.exists() and not p.is_dir()):
                out[rel] = b"link:" + os.readlink(p).encode() if p.is_symlink() else p.read_bytes()
            elif p.is_dir():
                for dirpath, _dirs, files in os.walk(p):
                    for name in files:
                        f = Path(dirpath) / name
                        out[str(f.relative_to(git))] = (b"link:" + os.readlink(f).encode()) if f.is_symlink() else f.read_bytes()
        return out

    def restore_git(self, before: dict[str, bytes | None], *, refs: bool = True) -> list[str]:
        """Put `.git`'s watched files back as `before`; returns what had changed (empty: nothing)."""
        after = self.git_snapshot(refs=refs)
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        if not changed or before.get(".git", b"") is None:
            return changed
        git = self.root / ".git"
        if after.get(".git", b"") is None:  # replaced by a link or a file: nothing in it can be trusted
            return [".git"]
        for rel in changed:
            p = git / rel
            if p.is_symlink() or p.is_file():
                p.unlink()
            elif p.is_dir():
                shutil.rmtree(p)
            if before.get(rel) is not None:
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(before[rel])
        return changed

    # -- lock ----------------------------------------------------------------------------------
    def lock(self) -> None:
        """One orchestrator per workspace at a time. A refused lock leaves the holder's file as it was;
        the holder repairs a torn journal (only it may write)."""
        fh = open(self.state / "lock", "a+")  # not "w": that would empty the live holder's pid
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            pid = self.running_pid()
            raise WorkspaceError(self.root, "another orchestrator is working in this workspace"
                                 + (f" (pid {pid})" if pid else "")) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._lock_fh = fh
        self.journal.repair()

    def unlock(self) -> None:
        if self._lock_fh is not None:
            fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None

    def running_pid(self) -> int | None:
        """The pid of a live orchestrator holding this workspace's lock, or None (reads only, makes nothing)."""
        path = self.state / "lock"
        try:
            fh = open(path)
        except OSError:
            return None
        with fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = fh.read().strip()
                return int(text) if text.isdigit() else -1
            except OSError:
                return None
            fcntl.flock(fh, fcntl.LOCK_UN)
            return None


_WALK_LIMIT = 5_000  # entries: past this many the walk stops (~25 ms) and git lists the candidates (skipping ignored folders)


def _over_cap(root: Path, cap: int) -> list[str] | None:
    """Regular files under `root` larger than `cap` bytes (lstat: a link is never followed), relative paths;
    every folder but those named `.git`, which git never adds (a nested repository's files are not its own).
    None: more than _WALK_LIMIT entries (a cache or data folder, ignored or not), not walked to the end."""
    out: list[str] = []
    top = os.fspath(root)
    stack = [top]
    seen = 0
    while stack:
        folder = stack.pop()
        try:
            entries = os.scandir(folder)
        except OSError:
            continue
        with entries:
            for entry in entries:
                seen += 1
                if seen > _WALK_LIMIT:
                    return None
                if entry.name == ".git":
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_size > cap:
                        out.append(entry.path[len(top) + 1:])
                except OSError:
                    continue
    return sorted(out)


def _size(path: Path) -> int:
    try:
        return path.lstat().st_size
    except OSError:
        return 0


_HEX = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")
_BRANCH = re.compile(r"refs/heads/[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")


def read_head(git_dir: Path) -> str | None:
    """The commit HEAD names when it is a branch (`ref: refs/heads/<name>`) whose id is in its loose ref file or
    in packed-refs, read without a git process; None for anything else (a detached or unborn HEAD, a link
    anywhere on the way, a reftable or worktree repository, a malformed file): the caller then asks git."""
    def text(rel: str) -> str | None:
        try:
            fd = os.open(git_dir / rel, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            return os.read(fd, 1 << 20).decode("utf-8", "replace")
        finally:
            os.close(fd)

    try:
        if not stat.S_ISDIR(os.lstat(git_dir).st_mode) or any(
                os.path.lexists(git_dir / rel) for rel in ("commondir", "reftable")):
            return None
    except OSError:
        return None
    head = text("HEAD")
    if head is None or not head.startswith("ref: ") or not head.endswith("\n"):
        return None
    ref = head[5:-1]
    if not _BRANCH.fullmatch(ref) or ".." in ref or any(p.startswith(".") or p.endswith(".lock") for p in ref.split("/")):
        return None
    parts = ref.split("/")
    for i in range(1, len(parts)):  # refs, refs/heads, ...: plain folders, never links
        try:
            if not stat.S_ISDIR(os.lstat(git_dir.joinpath(*parts[:i])).st_mode):
                return None
        except OSError:
            return None
    if os.path.lexists(git_dir / ref):
        loose = text(ref)
        if loose is None or not loose.endswith("\n") or not _HEX.fullmatch(loose[:-1]):
            return None
        return loose[:-1]
    packed = text("packed-refs")
    for line in (packed or "").splitlines():
        if line.endswith(" " + ref):
            commit = line[: -len(ref) - 1]
            return commit if _HEX.fullmatch(commit) else None
    return None


def git_argv(*args: str) -> list[str]:
    """`git` with the overrides no workspace configuration can undo (GIT_OVERRIDES)."""
    return ["git", *[a for kv in GIT_OVERRIDES for a in ("-c", kv)], *args]


def _git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_AUTHOR_NAME="orchestrator", GIT_AUTHOR_EMAIL="orchestrator@localhost",
        GIT_COMMITTER_NAME="orchestrator", GIT_COMMITTER_EMAIL="orchestrator@localhost",
        GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL="/dev/null", GIT_TERMINAL_PROMPT="0", GIT_PAGER="cat",
        GIT_OPTIONAL_LOCKS="0",
    )
    for key in ("GIT_EXTERNAL_DIFF", "GIT_SSH", "GIT_SSH_COMMAND", "GIT_ASKPASS", "GIT_EDITOR"):
        env.pop(key, None)
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
    files: dict[str, str] | None = None,
) -> Workspace:
    """Copy the template into a fresh workspace, merge the idea's template_config, add `files` (relative path ->
    text, e.g. an adopted template's notes.txt; never over a file the template ships), record the start."""
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
        for rel, text in (files or {}).items():
            if not (tmp / rel).exists():
                (tmp / rel).write_text(text)
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
        (state / SEED_FILE).write_text(str(secrets.randbelow(2**31)))
        (state / SEED_FILE).chmod(0o600)
        res = tool(git_argv("init", "-q", "-b", "main"), cwd=tmp, env=_git_env())
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
