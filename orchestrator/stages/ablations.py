"""The ablations stage: each change on the best node's path taken out in turn, each variant its own run.

For the best node (search/tree.py: build_tree(...).best()), every node k on the path that led there has a
change: the code diff from the code it started from (its NodeCreated.base_commit; for a linear journal
the previous run's code, for a draft the template's) to its own. Reverse-applied onto the best node's code,
that change gives the best node without it: a new numbered run after every other (NodeCreated
kind="ablation", parent = the best node, ablates = k), smoke run then full run over the seeds through
execution.execute / execute_full and the sealed evaluator, and a RunRecorded verdict. No agent: the
orchestrator makes the code. A change that no longer reverse-applies (a later step rewrote the same
lines) is recorded as a run that is not applicable, with git's reason, and nothing is run for it.

Resumable: the journal says which ablations exist (their NodeCreated) and which are finished (their
RunRecorded); a resumed stage reuses each one's run number, runs only what has no verdict, and the
executions already judged are served from the journal.

It runs by default for the tree strategy (WorkspaceCreated.options["strategy"] == "tree"), and for any
workspace when asked by name (`--stages ...,ablations`); otherwise it is skipped with one line."""

from __future__ import annotations

from typing import Any

from ..context import Context
from ..conversation import Conversations
from ..events import Message, NodeCreated, RunRecorded
from ..notes import append_section, run_section, run_stats
from ..objective import Objective
from ..readmodel import NOT_APPLICABLE, NOT_APPLICABLE_REASON, WorkspaceModel, not_applicable
from ..search.code import change_of, reverse_apply
from ..search.engine import checkout_code, template_commit
from ..search.tree import ROOT, SearchTree, TreeNode, build_tree
from . import Skipped, stage

STAGE = "ablations"


def objective_of(ctx: Context) -> Objective | None:
    """The objective the best node is chosen by: the search's (a tree workspace records it), else the idea's,
    else the template's [objective]; None when none is declared (the best node is then the last result)."""
    return ctx.objective or ctx.idea.objective or ctx.manifest.objective


def tree_of(ctx: Context) -> SearchTree:
    return build_tree(WorkspaceModel.build(ctx.journal.events), objective_of(ctx))


def _wanted(ctx: Context) -> str | None:
    """None when the stage should run, else why it is skipped."""
    if ctx.strategy == "tree" or STAGE in (ctx.stages_asked or []):
        return None
    return f"skipped: the {ctx.strategy} strategy (ask for it with --stages ...,{STAGE})"


def base_of(ctx: Context, tree: SearchTree, node: TreeNode) -> str | None:
    """The code node `node` started from: its recorded base, else its parent's code (the template's for a draft)."""
    if node.base_commit:
        return node.base_commit
    if node.parent == ROOT or node.parent not in tree.nodes:
        return template_commit(ctx)
    return tree.nodes[node.parent].commit


def _label(best: int, k: int) -> str:
    return f"run {best} without the change of run {k}"


@stage(STAGE)
def run_stage(ctx: Context, conv: Conversations) -> str:
    why = _wanted(ctx)
    if why is not None:
        return Skipped(why)
    tree = tree_of(ctx)
    best = tree.best()
    if best is None or not best.commit:
        return Skipped("skipped: no result to ablate")
    path = tree.best_path()
    changes: list[tuple[TreeNode, str]] = []
    for node in path:
        base = base_of(ctx, tree, node)
        patch = change_of(ctx, base, node.commit) if base and node.commit else ""
        if patch.strip():
            changes.append((node, patch))
    if not changes:
        return Skipped(f"skipped: the path to run {best.node} changes no code")
    j = ctx.journal
    done = {(n.parent, n.ablates): n.run for n in j.of(NodeCreated) if n.kind == "ablation"}
    made, results, inapplicable = 0, 0, 0
    for node, patch in changes:
        run = done.get((best.node, node.node))
        if run is None:
            model = WorkspaceModel.build(j.events)
            run = max([0, *model.runs, *model.nodes]) + 1
            j.append(NodeCreated(run=run, parent=best.node, kind="ablation", base_commit=best.commit,
                                 ablates=node.node, plan=_label(best.node, node.node)))
        rec = j.last(RunRecorded, run=run) or _ablate(ctx, run, best, node, patch)
        made += 1
        results += rec.status == "ok"
        inapplicable += not_applicable(rec)
    checkout_code(ctx, best.commit)  # the tree ends with the best node's code, as the later stages describe it
    ctx.ws.commit(f"ablations: the code back at run {best.node}'s")
    na = f", {inapplicable} {NOT_APPLICABLE}" if inapplicable else ""
    return f"{made} ablation(s) of run {best.node}: {results} result(s){na}"


def _ablate(ctx: Context, run: int, best: TreeNode, node: TreeNode, patch: str) -> RunRecorded:
    """Make run `run` (best's code without node's change), run and judge it, and record it."""
    from ..execution import baseline, execute, execute_full, prepare

    ws, j = ctx.ws, ctx.journal
    assert best.commit is not None
    checkout_code(ctx, best.commit)
    problem = reverse_apply(ctx, patch, f"run_{run}")
    if problem is not None:
        checkout_code(ctx, best.commit)
        reasons = [f"{NOT_APPLICABLE_REASON} the change of run {node.node} does not come out of run {best.node}'s code "
                   f"({problem})"]
        j.append(Message(level="warning", stage=STAGE, text=f"ablation run {run}: {reasons[0]}"))
        return _record(ctx, run, best, node, "failed", 0, reasons, {}, {})
    ws.commit(f"ablation run {run}: {_label(best.node, node.node)}")
    prepare(ctx)
    base = baseline(ctx).metrics
    smoke = execute(ctx, run, 1, "smoke")
    if smoke.status != "ok":
        return _record(ctx, run, best, node, smoke.status, 1, smoke.reasons, {}, base)
    full, _seeds = execute_full(ctx, run, 1)
    return _record(ctx, run, best, node, full.status, 1, full.reasons, full.metrics, base, full.evaluation)


def _record(ctx: Context, run: int, best: TreeNode, node: TreeNode, status: str, attempts: int, reasons: list[str],
            metrics: dict[str, Any], baseline: dict[str, Any], evaluation: str = "self-reported") -> RunRecorded:
    """The ablation's verdict, its notes section (marked as an ablation) and its commit."""
    j = ctx.journal
    rec = RunRecorded(run=run, status=status, attempts=attempts, reasons=[] if status == "ok" else reasons,
                      metrics=metrics if status == "ok" else {}, evaluation=evaluation)
    if "notes.txt" in ctx.manifest.editable:
        applicable = not not_applicable(rec)
        section = run_section(rec.model_copy(update={"commit": ctx.ws.head()}), [], ctx.manifest.key_metrics, baseline,
                              1, run_stats(j.events, run))
        lines = section.splitlines()
        lines[0] = (f"## Run {run} (ablation, not a search result: {_label(best.node, node.node)}): "
                    f"{status.upper() if applicable else NOT_APPLICABLE.upper()}")
        replace = {"What changed:": f"What changed: the change of run {node.node} taken out of run {best.node}'s code "
                                    "(no agent)"}
        if not applicable:
            replace["Not a result;"] = "Not applicable, not a failure: nothing was run for it. Why:"
        lines = [next((new for old, new in replace.items() if ln.startswith(old)), ln)
                 for ln in lines if not ln.startswith("Attempts:")]
        section = "\n".join(lines) + "\n"
        problem = append_section(ctx.ws.root, "notes.txt", section)
        if problem:
            j.append(Message(level="warning", stage=STAGE, text=problem))
    rec.commit = ctx.ws.commit(f"ablation run {run}: {status}")
    return j.append(rec)
