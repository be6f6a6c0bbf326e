"""Every prompt is a jinja2 file under orchestrator/prompts/; this renders them."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jinja2

PROMPTS = Path(__file__).resolve().parent / "prompts"


@functools.cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(PROMPTS)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def render(name: str, **values: Any) -> str:
    return _env().get_template(f"{name}.j2").render(**values).strip() + "\n"
