"""Event migrations: a workspace made by an older orchestrator still opens after an event changes.

The way simonw/llm migrates its log database: an ordered list of numbered functions, each taking the
journal's records (plain dicts, oldest first) to the next version. `WorkspaceCreated.version` says how
many a journal has had; reading it applies the rest, in memory (the file is never rewritten).

Appends after a migration are in the new shape while the head still names the old version, so the
next read migrates them again: a migration must leave a record that is already in the new shape as
it is. To change an event, add a field with a default where you can (no migration needed); otherwise
append a function here with `@migration`, and a fixture journal of the old shape under tests/fixtures."""

from __future__ import annotations

from collections.abc import Callable

Records = list[dict]
MIGRATIONS: list[Callable[[Records], Records]] = []


def migration(fn: Callable[[Records], Records]) -> Callable[[Records], Records]:
    """Register `fn` as the next migration (version len(MIGRATIONS) -> len(MIGRATIONS) + 1)."""
    MIGRATIONS.append(fn)
    return fn


@migration
def m001_version_field(records: Records) -> Records:
    """Journals from before versions: nothing changed but the head's new `version` field."""
    return records


_STAGE_OF_PHASE = {"plot": "plots", "latex": "compile", "chktex": "compile"}


@migration
def m002_typed_feedback_and_run_stage(records: Records) -> Records:
    """RunFinished.feedback was a JSON string (now an object); plot, LaTeX and chktex executions were
    "run 0" (now run None with their `stage`, so run 0 means only the baseline)."""
    import json

    out = []
    for r in records:
        if r.get("type") in ("run_started", "run_finished"):
            r = dict(r)
            stage = _STAGE_OF_PHASE.get(r.get("phase", ""))
            if stage is not None and "stage" not in r:
                r["stage"] = stage
                r["run"] = None
            fb = r.get("feedback")
            if isinstance(fb, str):
                try:
                    data = json.loads(fb) if fb.strip() else {}
                except ValueError:
                    data = {"tail": fb}
                r["feedback"] = data if isinstance(data, dict) else {"tail": str(data)}
        out.append(r)
    return out


JOURNAL_VERSION = len(MIGRATIONS)  # what a workspace made now is written as


def version_of(records: Records) -> int:
    """The version a journal was written as: its head's `version`, 0 when it has none (before versions)."""
    head = records[0] if records else {}
    if head.get("type") != "workspace_created":
        return JOURNAL_VERSION  # not a workspace's journal: nothing to migrate (readers report the bad head)
    v = head.get("version", 0)
    return v if isinstance(v, int) else 0


def migrate(records: Records) -> Records:
    """The records in the current shape; raises ValueError for a journal newer than this orchestrator."""
    v = version_of(records)
    if v > JOURNAL_VERSION:
        raise ValueError(f"the journal is version {v}; this orchestrator reads up to version {JOURNAL_VERSION}: upgrade it")
    for fn in MIGRATIONS[v:]:
        records = fn(records)
    if records and v < JOURNAL_VERSION and records[0].get("type") == "workspace_created":
        records[0] = {**records[0], "version": JOURNAL_VERSION}
    return records
