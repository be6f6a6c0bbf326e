"""Search strategies compared without a model: tree vs linear on a synthetic landscape.

The template (`benchmarks/search_landscape/`) scores three settings X, Y, Z of its experiment.py with a known
function (global optimum 1.0 at (0.80, 0.25, 0.60), a local hill worth 0.6, baseline 0.153 at (0.5, 0.5, 0.5)),
crashes in two regions and trains nothing in a third. A seeded stochastic stand-in agent answers every
request of the pipeline through the same protocol as a transcript (`next(stage, run, attempt, step)` ->
`ScriptedReply`, applied by the real aider edit path): it reads the settings of the code it is shown (the
working tree: the parent's code, which the strategy chose) and proposes a random move of one or two of them.
So the strategies differ only in which code each node starts from.

Figures:
- the best objective reached after N = 10, 20, 40 nodes, tree vs linear, mean ± sd over 10 seeds (the best
  among a search's first N nodes: one search of 40 nodes per seed and strategy; linear: one attempt per run,
  so a node is one agent edit in both; the tree's nodes one after another, so each node may build on every
  node before it);
- the scheduler's overhead per node and the utilisation of 2 slots, on one search of 10 nodes whose full
  runs sleep 1 s, the tree with 2 nodes in flight (targets < 0.25 s, >= 0.9): from the journal, over the
  search's time (the baseline's verdict to the last node's), the overhead is the time in which no
  experiment ran and the agent (aider's edit path) was not answering, per node; the utilisation is the
  experiments' summed wall time over slots x that time.
  The overhead is also split by the two journal events each idle moment lies between (where to look).

    .venv/bin/python benchmarks/search.py [--quick] [--seeds 10] [--nodes 10,20,40] [--strategies linear,tree]
                                          [--no-timing | --timing-only] [--sleep-s 1]

Everything runs for real (aider, git, subprocesses) at isolation none, with no model.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LANDSCAPE = Path(__file__).resolve().parent / "search_landscape"
SETTINGS = ("X", "Y", "Z")
OPTIMUM = 1.0005  # score(0.80, 0.25, 0.60), the global hill's top (the local hill adds 0.0005)
SETTING = re.compile(r"(?m)^(X|Y|Z) = (-?\d+(?:\.\d+)?)$")


@dataclass
class StandInAgent:
    """A seeded random editor of the landscape's settings, serving the pipeline like a transcript does.

    Each reply depends only on the seed, the request (stage, run, attempt, step) and the code it edits, so a
    search replays the same way whatever order its requests come in. A move: one or two settings shifted by
    a Gaussian step (sd `step_sd`), or, with probability `jump`, all three drawn anew; clipped to [0, 1]."""

    seed: int
    read_code: Callable[[], str]
    step_sd: float = 0.2
    jump: float = 0.1
    replies: int = 0

    def next(self, stage: str, run: int | None, attempt: int | None, step: str):
        from orchestrator.agents.aider import ScriptedReply

        self.replies += 1
        code = self.read_code()
        return ScriptedReply(text=self.propose(code, f"{stage}:{run}:{attempt}:{step}"), model="stand-in")

    def propose(self, code: str, request: str) -> str:
        """The reply to `request` for `code`: a plan line and one SEARCH/REPLACE block per setting moved."""
        rng = random.Random(f"{self.seed}:{request}")
        now = {k: float(v) for k, v in SETTING.findall(code)}
        if set(now) != set(SETTINGS):
            return "I cannot find the settings X, Y and Z; no change."
        if rng.random() < self.jump:
            new = {k: round(rng.random(), 2) for k in SETTINGS}
        else:
            moved = rng.sample(SETTINGS, rng.choice((1, 2)))
            new = dict(now)
            for k in moved:
                new[k] = round(min(1.0, max(0.0, now[k] + rng.gauss(0.0, self.step_sd))), 2)
        changed = [k for k in SETTINGS if new[k] != now[k]]
        if not changed:  # a move that rounds back to where it was: nudge one setting
            k = rng.choice(SETTINGS)
            new[k] = round(now[k] + (0.01 if now[k] < 1.0 else -0.01), 2)
            changed = [k]
        plan = "Plan: " + ", ".join(f"{k} {now[k]:g} -> {new[k]:g}" for k in changed) + "."
        blocks = [f"experiment.py\n```python\n<<<<<<< SEARCH\n{k} = {_src(code, k)}\n=======\n{k} = {new[k]:g}\n"
                  f">>>>>>> REPLACE\n```\n" for k in changed]
        return plan + "\n\n" + "\n".join(blocks)


def _src(code: str, key: str) -> str:
    """The setting's value as the code spells it (the SEARCH side must match the file exactly)."""
    return next(v for k, v in SETTING.findall(code) if k == key)


def landscape_score(x: float, y: float, z: float) -> float:
    """The landscape's score, from the template's own function."""
    ns: dict = {}
    exec((LANDSCAPE / "experiment.py").read_text().split("if __name__")[0], ns)
    return ns["score"](x, y, z)


def make_template(dest: Path, sleep_s: float = 0.0) -> Path:
    """A copy of the landscape template whose full runs sleep `sleep_s` (its smoke runs a tenth of it)."""
    shutil.copytree(LANDSCAPE, dest)
    exp = dest / "experiment.py"
    exp.write_text(exp.read_text().replace("SLEEP_S = 0.0", f"SLEEP_S = {sleep_s!r}"))
    return dest


def make_idea(work: Path, template: Path, nodes: int, slots: int = 1) -> Path:
    """An idea on the landscape, naming a transcript of its header only (the stand-in agent answers instead);
    `slots` runs at once."""
    (work / "standin.transcript.jsonl").write_text(json.dumps(
        {"transcript": 1, "idea": "landscape", "template": "search_landscape", "note": "scripted: stand-in agent"}) + "\n")
    idea = {"name": "landscape", "title": "Climb the landscape", "template": str(template),
            "experiment": "Move X, Y and Z to raise the score.", "max_runs": nodes, "transcript": "standin.transcript.jsonl",
            "limits": {"isolation": "none", "parallel_runs": slots}}
    path = work / "landscape.json"
    path.write_text(json.dumps(idea))
    return path


@dataclass
class Search:
    """One search's outcome, read from its journal."""

    strategy: str
    seed: int
    scores: list[float | None]  # each node's objective, in node order (None: not a result)
    statuses: list[str]
    settings: list[dict[str, float]]  # each result's X, Y, Z as its results report them
    wall_s: float
    busy_s: float  # experiment processes' wall time, summed
    span_s: float  # the search's time: from the baseline's verdict to the last node's
    idle_s: float  # the part of span_s in which no experiment ran and the agent was not answering
    agent_s: float
    slots: int
    workspace: Path | None = None
    replies: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    cpu_s: float = 0.0  # the orchestrator's own CPU time (aider's edit path included)
    child_cpu_s: float = 0.0  # its children's: git, and the experiments (which mostly sleep)
    idle_by_step: dict[str, float] = field(default_factory=dict)  # idle_s by the journal events it lies between

    def best_after(self, n: int) -> float | None:
        """The best score among the first n nodes (None: none of them is a result)."""
        got = [s for s in self.scores[:n] if s is not None]
        return max(got) if got else None

    @property
    def nodes(self) -> int:
        return len(self.scores)


def run_search(strategy: str, seed: int, nodes: int, work: Path, *, sleep_s: float = 0.0, slots: int = 2,
               keep: bool = False, parallel: int | None = None) -> Search:
    """One search of `nodes` nodes by `strategy` (linear | tree) with the stand-in agent of `seed`; a tree's nodes
    in flight: `parallel` (None: its default, the `slots`)."""
    from orchestrator.events import BaselineRecorded, Exchange, RunFinished, RunRecorded
    from orchestrator.pipeline import RunOptions, execute, start
    from orchestrator.readmodel import WorkspaceModel
    from orchestrator.search.tree import build_tree

    work.mkdir(parents=True, exist_ok=True)
    slots = 1 if strategy == "linear" else slots
    template = make_template(work / "template", sleep_s)
    idea = make_idea(work, template, nodes, slots)
    opts = RunOptions(sandbox=work / "sandbox", stages=["experiments"], isolation="none", max_runs=nodes)
    if strategy == "linear":
        opts.max_attempts = 1  # a node is one agent edit, as in the tree
    else:
        _tree_options(opts, nodes, seed, parallel)
    ctx, stages = start(idea, opts, log=lambda s: None)
    agent = StandInAgent(seed, lambda: (ctx.ws.root / "experiment.py").read_text())
    ctx.transcript = agent  # type: ignore[assignment]  # the transcript protocol: next(stage, run, attempt, step)
    _warm()
    t0, cpu0 = time.perf_counter(), _cpu()
    try:
        execute(ctx, stages)
    finally:
        ctx.ws.unlock()
    wall = time.perf_counter() - t0
    cpu = tuple(b - a for a, b in zip(cpu0, _cpu(), strict=True))
    j = ctx.journal
    model = WorkspaceModel.build(j.events, ctx.ws.root)
    tree = build_tree(model, ctx.manifest.objective)
    search = tree.search_nodes()
    finished = [e for e in j.of(RunFinished) if e.run]
    begin = max((e.ts for e in j.of(BaselineRecorded)), default=ctx.journal.events[0].ts)
    end = max((e.ts for e in j.of(RunRecorded)), default=begin)
    working = [(e.ts - e.wall_s, e.ts) for e in finished] + [(e.ts - e.latency_s, e.ts) for e in j.of(Exchange)]
    idle_by_step = idle_between(j.events, working, begin, end)
    kinds: dict[str, int] = {}
    for n in search:
        kinds[n.kind] = kinds.get(n.kind, 0) + 1
    out = Search(
        strategy=strategy, seed=seed, scores=[n.score for n in search], statuses=[n.status for n in search],
        settings=[{k: n.metrics.get(f"config.{k.lower()}") for k in SETTINGS} for n in search],
        wall_s=wall, busy_s=sum(e.wall_s for e in finished), span_s=end - begin,
        idle_s=(end - begin) - covered(working, begin, end),
        agent_s=sum(e.latency_s for e in j.of(Exchange)), slots=slots, workspace=ctx.ws.root if keep else None,
        replies=agent.replies, kinds=kinds, cpu_s=cpu[0], child_cpu_s=cpu[1], idle_by_step=idle_by_step,
    )
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    return out


def _warm() -> None:
    """Import aider and litellm before the clock starts: seconds once per process (more on a loaded machine),
    not a cost of any node, and the first strategy measured would pay it for the others."""
    from orchestrator.agents import hermetic

    hermetic.prepare()
    import aider.coders  # noqa: F401
    import litellm  # noqa: F401


def _cpu() -> tuple[float, float]:
    """(this process's CPU seconds, its finished children's), user + system."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def covered(intervals: list[tuple[float, float]], begin: float, end: float) -> float:
    """How much of [begin, end] the intervals cover (their union's length)."""
    from orchestrator.readmodel import union_seconds

    return union_seconds((max(a, begin), min(b, end)) for a, b in intervals)


def uncovered(intervals: list[tuple[float, float]], begin: float, end: float) -> list[tuple[float, float]]:
    """The parts of [begin, end] that no interval covers."""
    out, reach = [], begin
    for a, b in sorted((max(a, begin), min(b, end)) for a, b in intervals):
        if a > reach:
            out.append((reach, a))
        reach = max(reach, b)
    return out + ([(reach, end)] if reach < end else [])


def idle_between(events: list, working: list[tuple[float, float]], begin: float, end: float) -> dict[str, float]:
    """The idle time (no experiment, no agent) by the two journal events it lies between (`a -> b`: the
    orchestrator's work after appending a and before appending b), largest first."""
    def name(e) -> str:
        phase = getattr(e, "phase", None)
        return e.type + (f"/{phase}" if phase else "")

    marks = sorted((e.ts, name(e)) for e in events if begin <= e.ts <= end)
    out: dict[str, float] = {}
    for a, b in uncovered(working, begin, end):
        for (t0, n0), (t1, n1) in zip(marks, marks[1:]):
            part = min(b, t1) - max(a, t0)
            if part > 0:
                out[f"{n0} -> {n1}"] = out.get(f"{n0} -> {n1}", 0.0) + part
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _tree_options(opts, nodes: int, seed: int, parallel: int | None = None) -> None:
    """`--strategy tree --max-nodes N [--parallel-nodes P]`, the policy's random choices drawn from `seed` too."""
    from orchestrator.pipeline import RunOptions

    if "strategy" not in RunOptions.__dataclass_fields__:
        raise SystemExit("the tree strategy is not in this checkout (no RunOptions.strategy): run --strategies linear")
    from orchestrator.settings import SearchSettings

    opts.strategy, opts.max_nodes = "tree", nodes
    opts.search = SearchSettings(max_nodes=nodes, seed=seed, parallel=parallel)


def mean_sd(values: list[float]) -> str:
    if not values:
        return "n/a"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} ± {sd:.3f}"


def sweep(strategies: list[str], seeds: list[int], ns: list[int], work: Path, log=print) -> dict[str, list[Search]]:
    """One search of max(ns) nodes per strategy and seed."""
    out: dict[str, list[Search]] = {s: [] for s in strategies}
    for strategy in strategies:
        for seed in seeds:
            t = time.perf_counter()
            # one node after another: what a node can build on, per node (nodes in flight see less: timing())
            s = run_search(strategy, seed, max(ns), work / f"{strategy}-{seed}", parallel=0)
            out[strategy].append(s)
            best = s.best_after(max(ns))
            log(f"  {strategy} seed {seed}: best {'none' if best is None else f'{best:.3f}'}, {s.nodes} nodes, "
                f"{sum(st != 'ok' for st in s.statuses)} not results, {time.perf_counter() - t:.1f} s")
    return out


def table(results: dict[str, list[Search]], ns: list[int]) -> str:
    """Best objective after N nodes, mean ± sd over seeds (a search without a result counts the baseline's)."""
    base = landscape_score(0.5, 0.5, 0.5)
    head = f"{'strategy':<9}" + "".join(f"{'N = ' + str(n):>18}" for n in ns) + f"{'not results':>14}"
    rows = [head, "-" * len(head)]
    for strategy, searches in results.items():
        cells = []
        for n in ns:
            best = [max(base, s.best_after(n) or base) for s in searches]
            cells.append(f"{mean_sd(best):>18}")
        failed = sum(st != "ok" for s in searches for st in s.statuses) / max(1, sum(s.nodes for s in searches))
        rows.append(f"{strategy:<9}" + "".join(cells) + f"{failed:>13.0%}")
    note = f"(optimum {OPTIMUM:.3f}, baseline {base:.3f}; the best of the first N nodes, at least the baseline)"
    return "\n".join(rows) + "\n" + note


def timing(strategy: str, nodes: int, sleep_s: float, work: Path, slots: int = 2) -> str:
    """The scheduler's overhead per node and the slots' utilisation, on a search whose full runs sleep."""
    s = run_search(strategy, 0, nodes, work / f"timing-{strategy}", sleep_s=sleep_s, slots=slots)
    overhead = s.idle_s / s.nodes  # the orchestrator's own time: neither an experiment nor the agent at work
    util = s.busy_s / (s.slots * s.span_s) if s.span_s else 0.0
    return (f"{strategy}: {s.nodes} nodes of {sleep_s:g} s full runs, {s.slots} slot(s): search {s.span_s:.1f} s, "
            f"experiments {s.busy_s:.1f} s, agent {s.agent_s:.1f} s; overhead per node {overhead:.3f} s "
            f"(target < 0.25 s); utilisation of {s.slots} slot(s) {util:.2f}" + (" (target >= 0.9)" if s.slots > 1 else "")
            + f"; CPU per node: orchestrator {s.cpu_s / s.nodes:.3f} s, children {s.child_cpu_s / s.nodes:.3f} s"
            + "\n  overhead per node by the journal events it lies between: "
            + ", ".join(f"{k} {v / s.nodes * 1000:.0f} ms" for k, v in list(s.idle_by_step.items())[:6]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 seeds, N = 5, 10; timing on 6 nodes")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--nodes", default="10,20,40")
    ap.add_argument("--strategies", default="linear,tree")
    ap.add_argument("--sleep-s", type=float, default=1.0, help="full-run length for the timing figures")
    ap.add_argument("--no-timing", action="store_true", help="the sweep only")
    ap.add_argument("--timing-only", action="store_true", help="the overhead and utilisation figures only")
    args = ap.parse_args()
    seeds = list(range(3 if args.quick else args.seeds))
    ns = [5, 10] if args.quick else sorted(int(x) for x in args.nodes.split(","))
    strategies = args.strategies.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="search_bench_", dir=os.environ.get("TMPDIR")))
    os.environ.setdefault("ORCHESTRATE_HOME", str(tmp / "home"))
    t0 = time.perf_counter()
    try:
        if not args.timing_only:
            results = sweep(strategies, seeds, ns, tmp)
            print(f"\nbest objective after N nodes, mean ± sd over {len(seeds)} seeds ({time.perf_counter() - t0:.0f} s)")
            print(table(results, ns))
            print()
        if not args.no_timing:
            print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
            for strategy in strategies:
                print(timing(strategy, 6 if args.quick else 10, args.sleep_s, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
