"""Turn pydantic validation errors into the one-line `file: field: problem` message users get."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError


def first_problem(path: Path | str, err: ValidationError) -> str:
    """`field: problem` for the first error (and how many more), for a one-line message."""
    errors = err.errors()
    first = errors[0]
    loc = ".".join(str(p) for p in first.get("loc", ())) or "(top level)"
    msg = first.get("msg", "invalid").removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return f"{loc}: {msg}{more}"
