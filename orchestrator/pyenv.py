"""The data plane's Python: a cached virtual environment built from a template's requirements.txt
(keyed by the file's hash), or an interpreter the user names with --python."""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import sys
from pathlib import Path

from .errors import EnvironmentBuildError, InputError
from .runner import tool
from .template import Template


def env_dir(cache: Path, requirements: Path) -> Path:
    """Where the environment for these requirements lives: keyed by their hash."""
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]
    return cache / "envs" / digest


def check_python(python: str) -> str:
    """The interpreter's path when it runs and is Python 3.9 or newer; EnvironmentBuildError otherwise."""
    exe = shutil.which(python) or python
    res = tool([exe, "-c", "import sys; print(sys.version_info[:2] >= (3, 9))"], timeout_s=60)
    if res.exit_code != 0 or res.stdout.strip() != "True":
        raise InputError(python, "--python: not a working Python 3.9+ interpreter")
    return exe


def experiment_python(template: Template, cache: Path, *, override: str | None = None, log=print) -> str:
    """The interpreter that runs the template's experiment, building its environment when needed."""
    if override:
        return check_python(override)
    req = template.requirements_file
    if req is None or not req.read_text().strip():
        return sys.executable
    target = env_dir(cache, req)
    python = target / "bin" / "python"
    ready = target / ".ready"
    if ready.exists():
        return str(python)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another orchestrator may be building the same environment
        if ready.exists():
            return str(python)
        log(f"building the experiment environment from {req} into {target} (once; cached by the file's hash)")
        shutil.rmtree(target, ignore_errors=True)
        steps = [
            [sys.executable, "-m", "venv", str(target)],
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", str(req)],
        ]
        for argv in steps:
            res = tool(argv, timeout_s=3600)
            if res.exit_code != 0:
                tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
                raise EnvironmentBuildError(f"{req}: building the experiment environment failed: {' | '.join(tail)[:400]}")
        shutil.copy2(req, target / "requirements.txt")
        ready.write_text("ok\n")
    return str(python)


def main(argv: list[str] | None = None) -> int:
    """`python -m orchestrator.pyenv TEMPLATE_DIR`: build (or find) the template's environment, print its python."""
    import argparse
    import sys as _sys

    from .env import cache_home
    from .errors import OrchestratorError
    from .template import find_template, load_template

    parser = argparse.ArgumentParser(prog="python -m orchestrator.pyenv")
    parser.add_argument("template")
    args = parser.parse_args(argv)
    try:
        template = load_template(find_template(args.template))
        print(experiment_python(template, cache_home(), log=lambda s: print(s, file=_sys.stderr)))
    except OrchestratorError as exc:
        print(f"orchestrate: {exc}", file=_sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
