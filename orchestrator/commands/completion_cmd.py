"""`orchestrate completion bash|zsh`: a shell completion script, generated from the parser itself, so it
never lists a command or flag that does not exist. Install: `source <(orchestrate completion bash)`."""

from __future__ import annotations

import argparse

HELP = "print a shell completion script (bash or zsh): source <(orchestrate completion bash)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    parser.add_argument("shell", choices=["bash", "zsh"], help="the shell to complete in")


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            return dict(a.choices)
    return {}


def _flags(parser: argparse.ArgumentParser) -> list[str]:
    return [o for a in parser._actions for o in a.option_strings]


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script for `shell`: commands, then each command's flags; files otherwise."""
    subs = _subparsers(parser)
    cases = "\n".join(f"        {name}) opts=\"{' '.join(_flags(p))}\" ;;" for name, p in subs.items())
    body = f"""_orchestrate() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} cmd="" opts="" i
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${{COMP_WORDS[i]}} in -*) ;; *) cmd=${{COMP_WORDS[i]}}; break ;; esac
    done
    if [[ -z $cmd ]]; then
        COMPREPLY=($(compgen -W "{' '.join(subs)} {' '.join(_flags(parser))}" -- "$cur"))
        return 0
    fi
    case $cmd in
{cases}
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    else
        COMPREPLY=($(compgen -f -- "$cur"))
    fi
}}
complete -o filenames -F _orchestrate orchestrate
"""
    if shell == "zsh":
        return "autoload -U +X bashcompinit && bashcompinit\n" + body
    return body


def main(args: argparse.Namespace) -> int:
    """Print the script."""
    print(script(args.root_parser, args.shell), end="")
    return 0
