"""Argument types and the parser class every command shares: a bad value is refused by argparse in one
line (exit 2) before anything runs, and every flag's help shows its default."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path


class HelpFormatter(argparse.HelpFormatter):
    """Help that shows each flag's default (when it has one worth showing)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        d = action.default
        if ("%(default)" in text or d is None or d is False or d is argparse.SUPPRESS or not action.option_strings
                or isinstance(action, argparse._CountAction)):
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit code 2 (no usage block)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: {message} (see {self.prog} --help)\n")
        sys.exit(2)


def synopsis(parser: argparse.ArgumentParser, width: int = 100) -> str:
    """Every command's usage line (as its --help prints it, at a fixed width) with its one-line help: the
    README's command synopsis is exactly this text (tests/test_cli_help.py)."""
    fmt = HelpFormatter(parser.prog, width=width)
    fmt.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups, prefix="")
    out = [fmt.format_help().rstrip("\n"), "    global flags: -q quieter progress output, -v more (repeatable)"]
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            helps = {c.dest: c.help for c in a._choices_actions}
            for name, sub in a.choices.items():
                fmt = HelpFormatter(sub.prog, width=width)
                fmt.add_usage(sub.usage, sub._actions, sub._mutually_exclusive_groups, prefix="")
                out.append(fmt.format_help().rstrip("\n"))
                out.append(f"    {helps.get(name, '')}")
    return "\n".join(out) + "\n"


def _whole(text: str, least: int) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v < least:
        raise argparse.ArgumentTypeError(f"must be {least} or more, not {v}")
    return v


def positive_int(text: str) -> int:
    """An integer >= 1."""
    return _whole(text, 1)


def count(text: str) -> int:
    """An integer >= 0."""
    return _whole(text, 0)


def _finite(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text!r}")
    return v


def positive_float(text: str) -> float:
    """A finite number > 0 (seconds, dollars)."""
    v = _finite(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return v


def nonneg_float(text: str) -> float:
    """A finite number >= 0 (a tolerance)."""
    v = _finite(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return v


def gpu_list(text: str) -> str:
    """GPU indices, comma-separated (0,1; 0,0 shares one): checked here, handed on as the text."""
    parts = [p.strip() for p in text.split(",")]
    if not parts or any(not p.isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of GPU indices (e.g. 0,1)")
    return ",".join(parts)


def name_list(text: str) -> list[str]:
    """Comma-separated names (stages); at least one, no empty ones."""
    parts = [p.strip() for p in text.split(",")]
    if not any(parts):
        raise argparse.ArgumentTypeError(f"{text!r} names nothing (e.g. experiments,plots)")
    if not all(parts):
        raise argparse.ArgumentTypeError(f"{text!r} has an empty name between commas")
    return parts


def duration_s(text: str) -> float:
    """An age like 30s, 15m, 12h, 7d (a bare number is days), in seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
    t = text.strip().lower()
    mult = units.get(t[-1:])
    num = t[:-1] if mult else t
    try:
        v = float(num)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an age (e.g. 30m, 12h, 7d)") from None
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not an age (e.g. 30m, 12h, 7d)")
    return v * (mult or 86400)


def sandbox_dir(text: str) -> Path:
    """A folder workspaces can be made in: not a file, and writable (created when missing)."""
    p = Path(text)
    if p.exists() and not p.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file, not a folder")
    return p


def check_writable(sandbox: Path) -> None:
    """Raise InputError unless a workspace can be made under `sandbox` (probed by making and removing a folder)."""
    import tempfile

    from ..errors import InputError

    try:
        sandbox.mkdir(parents=True, exist_ok=True)
        probe = tempfile.mkdtemp(prefix=".probe_", dir=sandbox)
        Path(probe).rmdir()
    except FileExistsError:
        raise InputError(sandbox, "--sandbox: a file, not a folder") from None
    except OSError as exc:
        raise InputError(sandbox, f"--sandbox: cannot make a workspace here ({exc.strerror or exc})") from None
