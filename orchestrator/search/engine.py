"""The tree search (`--strategy tree`): the experiments stage as a tree of candidate solutions.

Each node is a numbered run: the policy (policy.py) picks its kind and parent, `NodeCreated` is journaled,
the parent's code is put in the working tree (`checkout_code`; a draft gets the template's), the agent edits
it (one exchange, prompts search_draft/improve/debug.j2), then the node's smoke run and, when that passes,
its full run over the template's seeds go through the same execution path as the linear strategy
(execution.py: sandbox, evaluator, validation), and `RunRecorded` gives its verdict and its code's commit.
A failed node is not retried in place: the policy may debug it as a child with its feedback in the prompt.

Nodes in flight (`search.parallel`, `--parallel-nodes`, default the run's parallel_runs when above 1, else 0):
once a node's smoke run passes, its full run is submitted in the node's own folder (execution.submit_full: a
copy of the node's code commit under `.orchestrate/nodes/`, with nothing else of the workspace bound under
bwrap) and the agent drafts the next node in the workspace while it runs; the executor's slots bound how many
processes run at once. A node's full run lands (waited for, its run folder brought back, judged, recorded,
committed alone: the working tree keeps the node being drafted) before a node that could see it is chosen. What
a new node sees is fixed, not timed: the newest `parallel` nodes that passed their smoke run are hidden from the
policy and the prompt (treated as still running), whether or not they have landed, and every older node has
landed. So a resume and a replay grow the same tree, and `parallel` 0 is the one-after-another search.

Limits: `max_nodes` (default: the run's max_runs), `wall_s` (the nodes' own time, from each node's creation
to its verdict, as a union of those spans from the journal, so nodes in flight together count once and a
pause between a crash and its resume is not counted), and the model budget (BudgetExceeded, as for every
stage: the nodes in flight land first).

Resume: every step is memoised in the journal (NodeCreated, the exchange, the runs' verdicts), so a resumed
search re-walks nodes 1..n, skips those with a verdict, and finishes the one in progress without asking the
agent again or running a judged run twice. Replay: the policy's draws are seeded by the search seed and the
node number (recorded in WorkspaceCreated.options), so the same replies grow the same tree.

The agent: replies come from `conv.ask` (aider with a model, or the context's reply source: a transcript, or
any object with `next(stage, run, attempt, step) -> ScriptedReply`, such as a benchmark's stand-in agent).
"""

from __future__ import annotations

import fnmatch
from typing import Any

from .. import prompts
from ..adopt import template_prompt
from ..context import Context
from ..conversation import Conversations
from ..errors import BudgetExceeded, InputError
from ..events import EditApplied, Message, NodeCreated, RunFinished, RunRecorded, RunStarted
from ..notes import baseline_values, metric_rows, run_stats
from ..readmodel import live, union_seconds
from ..results import code_files, flatten
from ..stages.experiment_steps import STAGE, baseline_metrics, check_texts, experiment_files, record_run
from . import policy
from .tree import ROOT, SearchTree, TreeNode, build_tree

_WHAT = {"failed": "failed", "degenerate": "finished but its results are degenerate", "timeout": "ran out of time"}


def checkout_code(ctx: Context, commit: str) -> list[str]:
    """Put the experiment's code files (the manifest's editable code: not notes, not the plot script) as they
    are in `commit` into the working tree; code files `commit` lacks are removed. Returns the paths put back."""
    ws = ctx.ws
    patterns = code_files(ctx.manifest)

    def code(paths: list[str]) -> list[str]:
        return [p for p in paths if any(p == pat or fnmatch.fnmatch(p, pat) for pat in patterns)]

    wanted = code(ws.git("ls-tree", "-r", "--name-only", commit).splitlines())
    present = code(ws.git("ls-files").splitlines())
    for rel in sorted(set(present) - set(wanted)):
        ws.git("rm", "-q", "-f", "--", rel)
    if wanted:
        ws.git("checkout", commit, "--", *wanted)
    return wanted


def template_commit(ctx: Context) -> str:
    """The workspace's first commit: the template's code as shipped (every draft's starting point)."""
    return ctx.ws.git("rev-list", "--max-parents=0", "HEAD").split()[0]


def current_tree(ctx: Context, hidden: set[int] | frozenset[int] = frozenset()) -> SearchTree:
    """The tree from the journal; the nodes in `hidden` read as still running (no verdict, no score)."""
    tree = build_tree(live(ctx.journal), ctx.objective)
    for n in hidden:
        if n in tree.nodes:
            node = tree.nodes[n]
            node.status, node.score, node.feasible, node.metrics, node.reasons = "running", None, False, {}, []
    return tree


def in_flight_at(journal, node: int, parallel: int) -> set[int]:
    """The nodes node `node` is chosen without seeing: the newest `parallel` nodes before it whose smoke run
    passed (their full runs may still be going), by the journal, not by the clock."""
    if parallel <= 0:
        return set()
    search = {n.run for n in journal.of(NodeCreated) if n.kind != "ablation"}
    passed = sorted({f.run for f in journal.of(RunFinished, phase="smoke", status="ok", attempt=1)
                     if f.run in search and 0 < f.run < node})
    return set(passed[-parallel:])


def search_seconds(journal) -> float:
    """The nodes' own time so far: the union of the spans from each node's first NodeCreated to its verdict."""
    first: dict[int, float] = {}
    for n in journal.of(NodeCreated):
        if n.kind != "ablation":
            first.setdefault(n.run, n.ts)
    return union_seconds((first[r.run], r.ts) for r in journal.of(RunRecorded) if r.run in first)


def plan_of(response: str) -> str:
    """The agent's plan: its reply's prose before the first edit block."""
    head = response.split("```", 1)[0].rstrip().splitlines()
    if head and head[-1].strip() and " " not in head[-1].strip():  # the file name line above a fenced block
        head = head[:-1]
    return "\n".join(head).strip()[:2000]


def run_search(ctx: Context, conv: Conversations) -> str:
    """Grow the search tree until its node limit, its time limit or the agent's `done`; returns a summary."""
    if ctx.objective is None:
        raise InputError(None, "--strategy tree needs an objective: [objective] in template.toml or the idea's objective")
    j, s = ctx.journal, ctx.search
    max_nodes = s.max_nodes or ctx.limits.max_runs
    baseline = baseline_metrics(ctx)
    files = experiment_files(ctx)
    ended = ""
    flight = Flight(ctx, baseline)
    try:
        for node in range(1, max_nodes + 1):
            made = live(j).nodes.get(node)
            hidden = in_flight_at(j, node, s.parallel or 0)
            if made is None:
                flight.land(keep=hidden)
                if s.wall_s is not None and search_seconds(j) >= s.wall_s:
                    ended = f"; stopped at its time limit of {s.wall_s:g} s"
                    j.append(Message(stage=STAGE, text=f"the search reached its time limit ({s.wall_s:g} s) before node {node}"))
                    break
                made = _create(ctx, node, hidden)
            if j.last(RunRecorded, run=node) is not None:
                continue
            flight.land(waiting=False)  # what has ended lands now (the views follow), in order
            if _grow(ctx, conv, made, files, baseline, max_nodes, hidden, flight) == "done":
                ended = "; the agent ended the search"
                break
        flight.land()
    except BudgetExceeded:  # no more model calls: the runs in flight cost none, so they land first
        flight.land()
        raise
    except BaseException:  # Ctrl-C, SIGTERM, a crash: their local runs end with us (resume runs them again)
        flight.stop()
        raise
    tree = current_tree(ctx)
    results = sum(1 for n in tree.search_nodes() if n.is_result)
    best = tree.best()
    where = f"; best node {best.node} ({_score_text(ctx, best)})" if best is not None else ""
    return f"{results} result(s) of {len(tree.search_nodes())} node(s){where}{ended}"


class Flight:
    """The nodes whose full runs are in flight (submitted in their own folders), landed oldest first."""

    def __init__(self, ctx: Context, baseline: dict[str, Any]) -> None:
        self.ctx, self.baseline = ctx, baseline
        self.runs: dict[int, Any] = {}  # node -> execution.FullRun

    def add(self, node: int, full) -> None:
        self.runs[node] = full

    def land(self, keep: set[int] | frozenset[int] = frozenset(), *, waiting: bool = True) -> None:
        """Land every node in flight but those in `keep`, oldest first (waiting: False, only those whose runs
        have ended, and none after one that has not)."""
        for node in sorted(self.runs):
            if node in keep:
                continue
            if not waiting and not self.runs[node].finished():
                break
            self._land(node, self.runs.pop(node))

    def _land(self, node: int, full) -> None:
        from ..execution import land_full

        ctx = self.ctx
        agg, _seeds = land_full(ctx, full)
        code = ctx.journal.last(RunStarted, run=node, phase="full")
        record_run(ctx, node, agg.status, 1, agg.reasons, agg.metrics, self.baseline, agg.evaluation,
                   code=code.commit if code is not None and code.commit else ctx.ws.head())

    def stop(self) -> None:
        for full in self.runs.values():
            full.stop()


def _create(ctx: Context, node: int, hidden: set[int]) -> NodeCreated:
    """Choose node `node`'s kind and parent (policy.choose) from what it may see, and journal it."""
    tree = current_tree(ctx, hidden)
    choice = policy.choose(tree, ctx.search, policy.rng_for(ctx.search.seed, node))
    base = template_commit(ctx) if choice.parent == ROOT else tree.nodes[choice.parent].commit
    made = ctx.journal.append(NodeCreated(run=node, parent=choice.parent, kind=choice.kind, base_commit=base))
    ctx.journal.append(Message(stage=STAGE, text=f"node {node}: {choice.why}"))
    return made


def _grow(ctx: Context, conv: Conversations, made: NodeCreated, files: list[str], baseline: dict[str, Any],
          max_nodes: int, hidden: set[int], flight: Flight) -> str:
    """One node: its code from its parent, the agent's edit, the smoke run, and the full run, waited for here
    or put in flight; the verdict (for a node in flight: when it lands)."""
    from ..execution import execute, execute_full, submit_full

    j, ws, node = ctx.journal, ctx.ws, made.run
    tree = current_tree(ctx, hidden)
    # a resume: the exchange and the smoke run come back from the journal, the edit untouched in its commit
    if j.last(EditApplied, stage=STAGE, run=node) is None:  # else the tree is already at this node's edit
        if made.base_commit:
            checkout_code(ctx, made.base_commit)
        ws.commit(f"node {node}: {made.kind} from {'the template' if made.parent == ROOT else f'node {made.parent}'}")
    conv.sessions.pop(STAGE, None)  # a fresh chat per node: its prompt carries what it needs to know
    outcome = conv.ask(STAGE, _prompt(ctx, tree, made, files, baseline, max_nodes), files=files, run=node, attempt=1)
    plan = plan_of(outcome.response)
    if plan and not live(j).nodes[node].plan:
        j.append(made.model_copy(update={"plan": plan, "seq": 0, "ts": 0.0}))
    if outcome.done and any(n.is_result for n in tree.search_nodes()):
        j.append(Message(stage=STAGE, text=f"the agent ended the search at node {node}"))
        return "done"
    status, reasons, metrics, evaluation = "failed", ["the reply changed no file"], {}, "self-reported"
    if not outcome.changed:
        e = outcome.edit
        reasons += ([f"edit not applied: {e.failed.strip()[:300]}"] if e.failed else []) + \
            [f"edit refused: {f} is protected" for f in e.refused[:3]]
    else:
        smoke = execute(ctx, node, 1, "smoke")
        status, reasons = smoke.status, smoke.reasons
        if smoke.status == "ok" and (ctx.search.parallel or 0) > 0:
            flight.add(node, submit_full(ctx, node, 1, code=outcome.edit.commit))
            return "in flight"
        if smoke.status == "ok":
            full, _seeds = execute_full(ctx, node, 1)
            status, reasons, metrics, evaluation = full.status, full.reasons, full.metrics, full.evaluation
    record_run(ctx, node, status, 1, reasons, metrics, baseline, evaluation)
    return status


# -- prompts ---------------------------------------------------------------------------------------------

def _score_text(ctx: Context, n: TreeNode) -> str:
    obj = ctx.objective
    assert obj is not None
    if n.score is None:
        return f"{obj.metric} unknown"
    return f"{obj.metric} {n.score:.6g}" + ("" if n.feasible else " (breaks a constraint)")


def _rows(ctx: Context, n: TreeNode, baseline: dict[str, Any]) -> list[dict[str, str]]:
    assert ctx.objective is not None
    keys = list(dict.fromkeys([*ctx.objective.read_keys(), *ctx.manifest.key_metrics]))
    return metric_rows(keys, n.metrics, baseline, run_stats(ctx.journal.events, n.node))


def _view(ctx: Context, n: TreeNode, baseline: dict[str, Any]) -> dict[str, Any]:
    return {"node": n.node, "kind": n.kind, "plan": n.plan, "score_text": _score_text(ctx, n),
            "rows": _rows(ctx, n, baseline)}


def _failure(ctx: Context, n: TreeNode) -> dict[str, Any]:
    """What the debug prompt says of the failed parent: its phase, its reasons and its feedback."""
    fin = next((f for f in reversed(ctx.journal.of(RunFinished, run=n.node)) if f.status != "ok"), None)
    if fin is None:  # no run: the edit did not apply
        return {"phase": "edit", "what": "changed no file", "reasons": n.reasons, "traceback": "",
                "stderr_tail": "", "stdout_tail": ""}
    fb = fin.feedback
    return {"phase": fin.phase, "what": _WHAT.get(n.status, n.status), "reasons": n.reasons or fin.reasons,
            "traceback": fb.traceback, "stderr_tail": fb.stderr_tail, "stdout_tail": fb.stdout_tail}


def _prompt(ctx: Context, tree: SearchTree, made: NodeCreated, files: list[str], baseline: dict[str, Any],
            max_nodes: int) -> str:
    m = ctx.manifest
    assert ctx.objective is not None
    best = tree.best()
    values: dict[str, Any] = dict(
        idea=ctx.idea, node=made.run, max_nodes=max_nodes, objective=ctx.objective.describe(),
        baseline=baseline_values(list(dict.fromkeys([*ctx.objective.read_keys(), *m.key_metrics])), flatten(baseline),
                                 run_stats(ctx.journal.events, 0)),
        best=_view(ctx, best, baseline) if best is not None else None, files=files,
        command=m.command_for(f"run_{made.run}"), protected=m.protected, checks=check_texts(ctx),
        framing=template_prompt(ctx.ws),
    )
    if made.kind == "draft" or made.parent not in tree.nodes:
        return prompts.render("search_draft", **values)
    parent = tree.nodes[made.parent]
    if made.kind == "debug":
        return prompts.render("search_debug", parent=_view(ctx, parent, baseline), failure=_failure(ctx, parent), **values)
    return prompts.render("search_improve", parent=_view(ctx, parent, baseline), **values)
