"""The workspace's append-only event log: fsync'd JSONL, crash-safe.

A torn last line (power cut, kill -9 mid-write) is detected on open and never fatal; readers leave it
where it is, a writer (under the workspace's lock) moves it aside before its first append.
A failed write (a full disk) is rolled back so the file stays a sequence of whole records.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

from pydantic import ValidationError

from .env import fault_point
from .errors import JournalError, WorkspaceError
from .events import EVENT_ADAPTER, Event, _Event
from .migrations import migrate

E = TypeVar("E", bound=_Event)


class Journal:
    """Append and read the events of one workspace."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.events: list[Event] = []
        self.torn: bytes = b""
        self._good_end = 0
        self.listeners: list = []  # called with each appended event (the progress view)
        self._load()

    def _load(self) -> None:
        """Read the events, migrated to the current shape (`migrations`); a torn last record is cut off."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        lines: list[tuple[int, int, bytes]] = []  # (start, end past the newline, line) of each whole line
        pos = 0
        while pos < len(data):
            nl = data.find(b"\n", pos)
            if nl == -1:
                break  # no newline: the last write was torn
            lines.append((pos, nl + 1, data[pos:nl]))
            pos = nl + 1
        good_end = pos

        def bad(start: int, end: int) -> None:
            nonlocal good_end
            if data[end:].strip():
                raise WorkspaceError(self.path, f"corrupt record at byte {start} (not the last one)") from None
            good_end = start  # the last record is torn: cut it off

        parsed: list[tuple[int, int, dict]] = []
        for start, end, line in lines:
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                rec = None
            if not isinstance(rec, dict):
                bad(start, end)
                break
            parsed.append((start, end, rec))
        try:
            records = migrate([rec for _, _, rec in parsed])
        except ValueError as exc:
            raise WorkspaceError(self.path, str(exc)) from None
        for (start, end, _), rec in zip(parsed, records):
            try:
                self.events.append(EVENT_ADAPTER.validate_python(rec))
            except ValidationError:
                bad(start, end)
                break
        if good_end < len(data):
            self.torn = data[good_end:]  # readers leave it there; `repair` cuts it off, under the workspace's lock
        self._good_end = good_end

    def repair(self) -> None:
        """Move a torn last record aside (journal.torn, for forensics) and cut it off, so appends start on a
        clean line. Only a writer holding the workspace's lock calls this (run, resume): a reader never
        writes, and a record a live orchestrator is still writing looks torn to a reader."""
        if not self.torn:
            return
        with open(self.path.with_suffix(".torn"), "ab") as fh:
            fh.write(self.torn + b"\n")
        with open(self.path, "r+b") as fh:
            fh.truncate(self._good_end)
            fh.flush()
            os.fsync(fh.fileno())
        self.torn = b""

    def append(self, event: E) -> E:
        """Write one event durably (fsync'd, rolled back on a failed write), then tell the listeners."""
        self.repair()  # a writer never appends after a torn record
        event.seq = len(self.events) + 1
        event.ts = time.time()
        line = (event.model_dump_json() + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            before = os.fstat(fd).st_size
            try:
                view = memoryview(line)
                while view:  # a nearly full disk gives a short write first, the error after
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            except OSError as exc:
                try:
                    os.ftruncate(fd, before)
                except OSError:
                    pass
                raise JournalError(f"{self.path}: cannot write the journal: {exc.strerror}") from None
        finally:
            os.close(fd)
        self.events.append(event)  # type: ignore[arg-type]
        for listener in self.listeners:
            listener(event)
        if _FAULT:
            _fault_point(event.type, sum(1 for e in self.events if e.type == event.type))
        return event

    def of(self, kind: type[E], **match: object) -> list[E]:
        """Events of one type whose fields equal `match`."""
        return [
            e
            for e in self.events
            if isinstance(e, kind) and all(getattr(e, k) == v for k, v in match.items())
        ]

    def last(self, kind: type[E], **match: object) -> E | None:
        """The latest event of one type whose fields equal `match`, or None (read from the end)."""
        for e in reversed(self.events):
            if isinstance(e, kind) and all(getattr(e, k) == v for k, v in match.items()):
                return e
        return None

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)


_FAULT = fault_point()


def _fault_point(kind: str, count: int) -> None:
    """Fault injection for crash tests: ORCHESTRATE_FAULT=after:<event type>:<n> kills this process
    with SIGKILL right after the n-th event of that type is on disk — a real kill -9 at an exact point."""
    if _FAULT.startswith("after:"):
        _, want, n = _FAULT.split(":")
        if want == kind and int(n) == count:
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
