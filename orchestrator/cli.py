"""`orchestrate`: the command line. The only place errors become messages and exit codes."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from pathlib import Path

from . import __version__
from .commands.args import Parser, count, gpu_list, name_list, positive_float, positive_int, sandbox_dir
from .errors import OrchestratorError

COMMANDS = ("check", "replay", "show", "report", "review", "import", "list", "clean", "init", "completion", "ideas", "adopt")
# each a module orchestrator.commands.<name>_cmd with HELP, add_arguments(parser) and main(args)


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="any litellm model name (live aider); default: $ORCHESTRATE_MODEL, the config file's, "
                   "else the idea's transcript")
    p.add_argument("--python", help="the experiment's interpreter (default: an environment built from the template's "
                   "requirements.txt)")
    p.add_argument("--max-runs", type=positive_int, metavar="N", help="runs the agent may make (default: the idea's, else 5)")
    p.add_argument("--max-attempts", type=positive_int, metavar="K", help="attempts per run (default: the idea's, else 4)")
    p.add_argument("--seeds", type=positive_int, metavar="N",
                   help="seeds per full run (default: the idea's, else the template's [seeds])")
    p.add_argument("--budget-usd", type=positive_float, metavar="X",
                   help="stop before the model call that would spend more than X dollars (default: no limit)")
    p.add_argument("--stages", type=name_list, metavar="LIST",
                   help="comma-separated, of experiments,ablations,plots,writeup,compile,review (default: every "
                   "stage, ablations only for --strategy tree; resume: the run's own)")
    p.add_argument("--max-nodes", type=positive_int, metavar="N",
                   help="with --strategy tree: nodes the search makes (default: the idea's search, else --max-runs)")
    p.add_argument("--vision-model", metavar="MODEL",
                   help="a litellm model that takes images, to review the figures and the paper's pages (default: "
                   "the config file's vision_model, else --model when it takes images; resume: the run's own)")
    p.add_argument("--vision-rounds", type=count, metavar="N",
                   help="rounds of the vision review's findings back to the agent; 0: no vision review "
                   "(default: the idea's, else 2)")


def build_parser() -> argparse.ArgumentParser:
    """The `orchestrate` argument parser, with every command module's arguments."""
    parser = Parser(prog="orchestrate",
                    description="Run experiment ideas with a coding agent; report only runs that did their work.")
    parser.add_argument("--version", action="version", version=f"orchestrate {__version__}")
    parser.add_argument("-q", "--quiet", action="count", default=0, help="less progress output: only the end and errors")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more progress output: every journal event")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run an idea in a new workspace", description="Run an idea in a new workspace.")
    p.add_argument("idea", type=Path, nargs="+", metavar="IDEA", help="idea file(s); several files, or --all, run many ideas")
    p.add_argument("--idea", dest="idea_name", metavar="NAME", help="pick one idea from an AI Scientist ideas.json list")
    p.add_argument("--all", action="store_true", help="run every idea of an ideas list, each in its own workspace")
    p.add_argument("--parallel", type=positive_int, default=1, metavar="N", help="ideas at a time (with --all or several files)")
    p.add_argument("--gpus", type=gpu_list, metavar="LIST",
                   help="GPUs to hand out, e.g. 0,1 (default: all visible; none on a CPU machine)")
    p.add_argument("--executor", choices=["local", "slurm"], default="local", help="where runs execute")
    p.add_argument("--slurm-config", type=Path, metavar="TOML", help="partition, time, cpus, mem, gpus for --executor slurm")
    p.add_argument("--template", metavar="DIR", help="template name or folder (default: the idea's)")
    p.add_argument("--sandbox", type=sandbox_dir, default=Path("sandbox"), metavar="DIR", help="where workspaces are made")
    p.add_argument("--isolation", choices=["auto", "none", "bwrap"],
                   help="how experiments are contained (default: the idea's, else auto)")
    p.add_argument("--timeout", type=positive_float, dest="full_timeout_s", metavar="S",
                   help="full-run time limit, seconds (default: the idea's, else the template's)")
    p.add_argument("--smoke-timeout", type=positive_float, dest="smoke_timeout_s", metavar="S",
                   help="smoke-run time limit, seconds (default: the idea's, else the template's)")
    p.add_argument("--memory-mb", type=positive_int, metavar="MB",
                   help="resident memory per run (default: the idea's, else the template's [resources], else "
                   "min(machine - 2 GiB, 75%%))")
    p.add_argument("--max-processes", type=positive_int, metavar="N",
                   help="processes/threads per run (default: the idea's, else the template's, "
                   "else half the free tasks, at most 512)")
    p.add_argument("--strategy", choices=["linear", "tree"],
                   help="the experiments stage: one line of runs, or a tree search over the template's objective "
                   "(default: the idea's, else linear)")
    p.add_argument("--search-time", type=positive_float, dest="search_time_s", metavar="S",
                   help="with --strategy tree: no new node after S seconds of nodes (default: no limit)")
    p.add_argument("--parallel-nodes", type=count, metavar="N",
                   help="with --strategy tree: nodes whose full runs go on while the agent drafts the next "
                   "(default: the idea's search.parallel, else its parallel_runs or the --gpus slots when above 1, "
                   "else 0)")
    _run_args(p)

    p = sub.add_parser("resume", help="continue a workspace after a crash or Ctrl-C",
                       description="Continue a workspace after Ctrl-C, kill -9, a power cut or a full disk.")
    p.add_argument("workspace", type=Path, metavar="WORKSPACE", help="the workspace folder")
    _run_args(p)

    p = sub.add_parser("export", help="write a workspace's exchanges as a transcript",
                       description="Write a workspace's exchanges as a transcript.")
    p.add_argument("workspace", type=Path, metavar="WORKSPACE", help="the workspace folder")
    p.add_argument("-o", "--output", type=Path, metavar="FILE", help="where to write it (default: standard output)")
    p.add_argument("--to", choices=["transcript", "mlflow"], default="transcript",
                   help="a transcript, or the runs to MLflow (the optional extra orchestrator[mlflow])")
    p.add_argument("--tracking-uri", metavar="URI", help="with --to mlflow: the tracking server or store "
                   "(default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the current folder)")
    p.add_argument("--experiment", metavar="NAME", help="with --to mlflow: the MLflow experiment (default: the idea's name)")

    for name in COMMANDS:  # a command module that does not import is a bug: it fails here, loudly
        mod = importlib.import_module(f"orchestrator.commands.{name}_cmd")
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP[0].upper() + mod.HELP[1:] + ".")
        mod.add_arguments(p)
        p.set_defaults(root_parser=parser)  # completion reads the whole parser
    return parser


def _opts(args: argparse.Namespace):
    """The run's options from `run`'s or `resume`'s arguments."""
    from .pipeline import RunOptions

    return RunOptions(
        model=getattr(args, "model", None), template=getattr(args, "template", None), python=getattr(args, "python", None),
        idea_name=getattr(args, "idea_name", None), max_runs=getattr(args, "max_runs", None),
        max_attempts=getattr(args, "max_attempts", None), budget_usd=getattr(args, "budget_usd", None),
        seeds=getattr(args, "seeds", None), strategy=getattr(args, "strategy", None),
        max_nodes=getattr(args, "max_nodes", None), search_time_s=getattr(args, "search_time_s", None),
        parallel_nodes=getattr(args, "parallel_nodes", None),
        stages=getattr(args, "stages", None),
        sandbox=getattr(args, "sandbox", Path("sandbox")), isolation=getattr(args, "isolation", None),
        full_timeout_s=getattr(args, "full_timeout_s", None), smoke_timeout_s=getattr(args, "smoke_timeout_s", None),
        memory_mb=getattr(args, "memory_mb", None), max_processes=getattr(args, "max_processes", None),
        vision_model=getattr(args, "vision_model", None), vision_rounds=getattr(args, "vision_rounds", None),
    )


def _log(args):
    """Where the run's start lines go: stdout, or nowhere with -q."""
    return (lambda s: None) if _verbosity(args) < 0 else (lambda s: print(s, flush=True))


def _verbosity(args) -> int:
    return getattr(args, "verbose", 0) - getattr(args, "quiet", 0)


def cmd_run(args) -> int:
    """`orchestrate run`: one idea here, or many (and GPU slots, Slurm) through the fleet."""
    from .commands.args import check_writable
    from .drive import drive
    from .fleet import FleetOptions
    from .pipeline import start

    check_writable(args.sandbox)
    fleet = FleetOptions(ideas=list(args.idea), all_=args.all, idea_name=args.idea_name, parallel=args.parallel,
                         executor=args.executor, gpus=args.gpus, slurm_config=args.slurm_config)
    if fleet.scaled_out:
        from .fleet import run_many

        return run_many(fleet, _opts(args))
    ctx, stages = start(args.idea[0], _opts(args), log=_log(args))
    return drive(ctx, stages, verbosity=_verbosity(args))


def cmd_resume(args) -> int:
    """`orchestrate resume`: continue a workspace's stages from its journal."""
    from .drive import drive
    from .pipeline import reopen

    ctx, stages = reopen(args.workspace, _opts(args), log=_log(args))
    _log(args)(f"resuming {ctx.ws.root}: stages left: {', '.join(stages) or 'none'}")
    return drive(ctx, stages, verbosity=_verbosity(args))


def cmd_export(args) -> int:
    """`orchestrate export`: a workspace's exchanges as a transcript file."""
    from .agents.replay import export_transcript
    from .errors import InputError
    from .events import Exchange
    from .readmodel import workspace_created
    from .workspace import Workspace

    if args.output and not args.output.parent.is_dir():
        raise InputError(args.output, f"-o: the folder {args.output.parent} does not exist")
    ws = Workspace(args.workspace)
    head = workspace_created(ws.journal.events, args.workspace)
    if args.to == "mlflow":
        from .exporters.mlflow import export, summary

        print(summary(ws, export(ws, tracking_uri=args.tracking_uri, experiment=args.experiment)))
        return 0
    exchanges = ws.journal.of(Exchange)
    if not exchanges:
        raise InputError(args.workspace, "nothing to export: the journal records no exchange with the agent yet")
    text = export_transcript(exchanges, idea=head.idea["name"], template=head.template,
                             note=f"recorded from {head.agent}" + (" (scripted)" if head.scripted else ""))
    if args.output:
        try:
            args.output.write_text(text)
        except OSError as exc:
            raise InputError(args.output, f"-o: cannot write: {exc.strerror}") from None
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the command, and turn a typed error into one line and its exit code."""
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    args = build_parser().parse_args(argv)
    handler = {"run": cmd_run, "resume": cmd_resume, "export": cmd_export}.get(args.command)
    try:
        if handler is None:
            mod = importlib.import_module(f"orchestrator.commands.{args.command}_cmd")
            return mod.main(args)
        return handler(args)
    except OrchestratorError as exc:
        print(f"orchestrate: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
