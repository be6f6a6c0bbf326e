"""The experiment's environment: built from the template's requirements.txt into a cache keyed by the
file's hash, reused while the file is unchanged, or taken from --python."""

from __future__ import annotations

import shutil
import sys
import time

import pytest
from conftest import TINY

from orchestrator.errors import InputError
from orchestrator.pyenv import env_dir, experiment_python
from orchestrator.template import load_template


def test_environment_is_built_once_per_requirements_hash(tmp_path):
    tpl = tmp_path / "tiny"
    shutil.copytree(TINY, tpl)
    (tpl / "requirements.txt").write_text("pip\n")  # already satisfied in a new venv: no network needed
    cache = tmp_path / "cache"
    template = load_template(tpl)
    py = experiment_python(template, cache, log=lambda s: None)
    assert py == str(env_dir(cache, tpl / "requirements.txt") / "bin" / "python")
    assert (env_dir(cache, tpl / "requirements.txt") / ".ready").is_file()
    t0 = time.monotonic()
    assert experiment_python(template, cache, log=lambda s: None) == py  # cached: no rebuild
    assert time.monotonic() - t0 < 1.0
    (tpl / "requirements.txt").write_text("pip\n# changed\n")
    other = experiment_python(load_template(tpl), cache, log=lambda s: None)
    assert other != py and other.startswith(str(cache / "envs"))


def test_template_without_requirements_uses_this_interpreter(tmp_path):
    assert experiment_python(load_template(TINY), tmp_path, log=lambda s: None) == sys.executable


def test_python_override_is_checked(tmp_path):
    assert experiment_python(load_template(TINY), tmp_path, override=sys.executable) == sys.executable
    with pytest.raises(InputError, match="not a working Python"):
        experiment_python(load_template(TINY), tmp_path, override=str(tmp_path / "no-python"))
