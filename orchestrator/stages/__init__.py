"""Pipeline stages, each resumable from the journal. `REGISTRY` maps a stage name to its function."""

from __future__ import annotations

from collections.abc import Callable

REGISTRY: dict[str, Callable] = {}


class Skipped(str):
    """A stage's summary when it had nothing to do: the pipeline records the stage as skipped."""


def stage(name: str):
    def register(fn: Callable) -> Callable:
        REGISTRY[name] = fn
        return fn

    return register
