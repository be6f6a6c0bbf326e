"""A node's change (its code diff against the code it started from), and that change taken back out of
another node's code (reverse-applied): what the ablations stage makes its variants with. Putting a commit's
code in the working tree is search.engine.checkout_code.

Only the manifest's code files (results.code_files: the editable files that are the experiment's code, not
the notes or the plot script) are diffed. Git runs as everywhere else (workspace.git: no hooks, no config
but ours)."""

from __future__ import annotations

from ..context import Context
from ..errors import WorkspaceError
from ..results import code_files


def files_of(ctx: Context) -> list[str]:
    return code_files(ctx.manifest)


def change_of(ctx: Context, base: str, commit: str) -> str:
    """The code diff from `base` to `commit` ("" when the code is the same)."""
    files = files_of(ctx)
    return ctx.ws.diff(base, commit, *files) if files else ""


def reverse_apply(ctx: Context, patch: str, name: str) -> str | None:
    """Take `patch` back out of the working tree's code: None when it came out, else git's reason in one
    line (the tree is then as it was: every hunk is checked before any is applied). With its context first;
    then without (`-C0`), so a neighbouring line that a later step changed does not block it: the lines the
    change itself wrote must still be there."""
    ws = ctx.ws
    folder = ws.state / "ablations"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.patch"
    path.write_text(patch)
    problem = None
    for context in ([], ["-C0"]):
        try:
            ws.git("apply", "-R", "--check", "--whitespace=nowarn", *context, str(path))
        except WorkspaceError as exc:
            if problem is None:
                lines = [ln.strip() for ln in exc.problem.split(":", 1)[-1].splitlines() if ln.strip()]
                problem = "; ".join(lines)[:300] or "git apply refused it"
            continue
        ws.git("apply", "-R", "--whitespace=nowarn", *context, str(path))
        return None
    return problem
