"""The user's own settings: a default model and provider variables (keys, OPENAI_API_BASE), kept out
of idea specs. `$ORCHESTRATE_CONFIG`, else `<ORCHESTRATE_HOME>/config.toml`:

    model = "openai/my-model"
    vision_model = "openai/gpt-4o"   # reviews figures and page images (default: model, when it takes images)
    [env]
    OPENAI_API_BASE = "http://localhost:8000/v1"
    OPENAI_API_KEY = "sk-..."

Variables already set in the environment win over the file."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import env
from .errors import InputError
from .validation_message import first_problem


class UserConfig(BaseModel):
    """The user's config file: a default model and provider variables."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    vision_model: str | None = None
    env: dict[str, str] = Field(default_factory=dict)


def config_path() -> Path:
    """Where the user's config file is (see `env.config_path`)."""
    return env.config_path()


def load() -> UserConfig:
    """The user's config (empty when there is no file); InputError on a bad one."""
    path = config_path()
    if not path.is_file():
        return UserConfig()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise InputError(path, f"not valid TOML: {exc}") from None
    try:
        return UserConfig.model_validate(data)
    except ValidationError as exc:
        raise InputError(path, first_problem(path, exc)) from None


def apply(cfg: UserConfig) -> None:
    """Provider variables from the file, where the environment does not set them already."""
    for key, value in cfg.env.items():
        os.environ.setdefault(key, value)
