"""Many ideas at once: each in its own workspace, `--parallel N` at a time, GPUs handed out so that no two
experiments share one, on this machine or as Slurm jobs.

Every workspace is made up front (bad input stops everything before anything runs), then each idea is
driven by its own orchestrator process (`fleet.worker`) — aider works in-process and changes directory,
so ideas cannot share one — started through the runner and watched here through its journal
(`fleet.view`, `fleet.schedule`). Ctrl-C reaches every idea's process, each records the interruption,
and each workspace is resumable on its own (`orchestrate resume WS`), exactly like a single run.

GPUs are leased per experiment, not per idea (`executors.gpus`): an idea spends much of its time
waiting for the model, so an experiment takes a free GPU slot only while it runs."""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from .. import pipeline
from ..drive import drive
from ..errors import InputError
from ..executors.factory import executor_spec
from ..pipeline import RunOptions
from ..spec import unique_names
from .schedule import drive_fleet
from .view import IdeaState


@dataclass
class FleetOptions:
    """What `orchestrate run` was asked beyond one idea's options: which ideas, how many at a time, where."""

    ideas: list[Path]
    all_: bool = False  # every entry of each ideas list
    idea_name: str | None = None
    parallel: int = 1
    executor: str = "local"  # local or slurm
    gpus: str | None = None  # --gpus as given; None: every visible GPU
    slurm_config: Path | None = None

    @property
    def scaled_out(self) -> bool:
        """Whether this needs the fleet (several ideas, slots, GPUs or Slurm) rather than one plain run."""
        return self.all_ or len(self.ideas) > 1 or self.parallel > 1 or self.executor != "local" or bool(self.gpus)


def expand_ideas(paths: list[Path], *, all_: bool, idea_name: str | None,
                 warn=lambda s: print(s, file=sys.stderr, flush=True)) -> list[tuple[Path, str | None]]:
    """(file, idea name) for every idea to run: each file's one idea, its named one, or with --all every entry."""
    out: list[tuple[Path, str | None]] = []
    for path in paths:
        if not all_:
            out.append((path, idea_name))
            continue
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(path, "no such file") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(path, f"cannot read: {exc}") from None
        if isinstance(raw, list) and raw and all(isinstance(e, dict) for e in raw):
            names, warnings = unique_names(Path(path), raw)  # a repeated name runs as NAME_2, with a warning
            for line in warnings:
                warn(line)
            out += [(path, name or None) for name in names]
        elif isinstance(raw, list):
            out += [(path, None)] * max(1, len(raw))  # load_idea says what is wrong with the list
        else:
            out.append((path, None))
    return out


def run_many(fleet: FleetOptions, opts: RunOptions) -> int:
    """`orchestrate run` with several ideas, --all, --parallel, --gpus or --executor slurm."""
    if fleet.parallel < 1:
        raise InputError(None, "--parallel: must be at least 1")
    if fleet.executor != "slurm" and fleet.slurm_config:
        raise InputError(fleet.slurm_config, "--slurm-config needs --executor slurm")
    ideas = expand_ideas(list(fleet.ideas), all_=fleet.all_, idea_name=fleet.idea_name)
    # Validate every idea before anything is made: a typo in the 7th idea stops all of them, not the 7th.
    prepared = []
    for path, name in ideas:
        o = dataclasses.replace(opts, idea_name=name)
        loaded, _template, _limits, _model, _t, stages = pipeline.prepare(path, o)
        prepared.append((path, o, loaded, stages))
    names = [p[2].idea.name for p in prepared]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(None, f"several ideas are named {', '.join(dup)}: each idea needs its own name")

    specs = [executor_spec(fleet.executor, gpus=fleet.gpus, slurm_config=fleet.slurm_config, idea_slurm=p[2].idea.slurm)
             for p in prepared]
    if len(prepared) == 1 and fleet.parallel == 1:  # one idea on GPUs or Slurm: the usual single-idea view
        path, o, _loaded, _stages = prepared[0]
        ctx, stages = pipeline.start(path, dataclasses.replace(o, executor=specs[0]), log=lambda s: print(s, flush=True))
        return drive(ctx, stages)

    states: list[IdeaState] = []
    for (path, o, loaded, stages), spec in zip(prepared, specs):
        lines: list[str] = []
        ctx, stages = pipeline.start(path, dataclasses.replace(o, executor=spec), log=lines.append)
        ctx.ws.unlock()  # the idea's own process takes the workspace's lock (pipeline.start took it for us)
        st = IdeaState(name=loaded.idea.name, ws=ctx.ws.root, stages=stages)
        states.append(st)
        for text in lines:
            if text.startswith(("replaying", "agent:")):
                print(f"[{st.name}] {text}", flush=True)
    gpus = specs[0].get("gpus") if specs and specs[0] else None
    where = ("Slurm jobs" if fleet.executor == "slurm" else f"GPU slots {','.join(gpus)}" if gpus
             else "CPU slots (no GPU)")
    slots = f"{fleet.parallel} at a time · {where}"
    print(f"{len(states)} workspace(s) under {Path(opts.sandbox).resolve()}; {slots}", flush=True)
    return drive_fleet(states, fleet.parallel, slots)
