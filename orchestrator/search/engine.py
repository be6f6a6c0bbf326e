"""The tree search (`--strategy tree`): the experiments stage as a tree of candidate solutions.

Each node is a numbered run: the policy (policy.py) picks its kind and parent, `NodeCreated` is journaled,
the parent's code is put in the working tree (`checkout_code`; a draft gets the template's), the agent edits
it (one exchange, prompts search_draft/improve/debug.j2), then the node's smoke run and, when that passes,
its full run over the template's seeds go through the same execution path as the linear strategy
(execution.py: sandbox, evaluator, validation), and `RunRecorded` gives its verdict and its code's commit.
A failed node is not retried in place: the policy may debug it as a child with its feedback in the prompt.

Limits: `max_nodes` (default: the run's max_runs), `wall_s` (the nodes' own time, from each node's creation
to its verdict, summed from the journal, so a pause between a crash and its resume is not counted), and the
model budget (BudgetExceeded, as for every stage).

Resume: every step is memoised in the journal (NodeCreated, the exchange, the runs' verdicts), so a resumed
search re-walks nodes 1..n, skips those with a verdict, and finishes the one in progress without asking the
agent again or running a judged run twice. Replay: the policy's draws are seeded by the search seed and the
node number (recorded in WorkspaceCreated.options), so the same replies grow the same tree.

The agent: replies come from `conv.ask` (aider with a model, or the context's reply source: a transcript, or
any object with `next(stage, run, attempt, step) -> ScriptedReply`, such as a benchmark's stand-in agent).

Nodes run one after another: the full run of node n finishes before node n+1 is drafted.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from .. import prompts
from ..adopt import template_prompt
from ..context import Context
from ..conversation import Conversations
from ..errors import InputError
from ..events import EditApplied, Message, NodeCreated, RunFinished, RunRecorded
from ..notes import baseline_values, metric_rows, run_stats
from ..readmodel import WorkspaceModel
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


def current_tree(ctx: Context) -> SearchTree:
    return build_tree(WorkspaceModel.build(ctx.journal.events), ctx.objective)


def search_seconds(journal) -> float:
    """The nodes' own time so far: from each node's first NodeCreated to its verdict, summed."""
    first: dict[int, float] = {}
    for n in journal.of(NodeCreated):
        first.setdefault(n.run, n.ts)
    return sum(max(0.0, r.ts - first[r.run]) for r in journal.of(RunRecorded) if r.run in first)


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
    for node in range(1, max_nodes + 1):
        made = WorkspaceModel.build(j.events).nodes.get(node)
        if made is None:
            if s.wall_s is not None and search_seconds(j) >= s.wall_s:
                ended = f"; stopped at its time limit of {s.wall_s:g} s"
                j.append(Message(stage=STAGE, text=f"the search reached its time limit ({s.wall_s:g} s) before node {node}"))
                break
            made = _create(ctx, node)
        if j.last(RunRecorded, run=node) is not None:
            continue
        if _grow(ctx, conv, made, files, baseline, max_nodes) == "done":
            ended = "; the agent ended the search"
            break
    tree = current_tree(ctx)
    results = sum(1 for n in tree.search_nodes() if n.is_result)
    best = tree.best()
    where = f"; best node {best.node} ({_score_text(ctx, best)})" if best is not None else ""
    return f"{results} result(s) of {len(tree.search_nodes())} node(s){where}{ended}"


def _create(ctx: Context, node: int) -> NodeCreated:
    """Choose node `node`'s kind and parent (policy.choose), and journal it."""
    tree = current_tree(ctx)
    choice = policy.choose(tree, ctx.search, policy.rng_for(ctx.search.seed, node))
    base = template_commit(ctx) if choice.parent == ROOT else tree.nodes[choice.parent].commit
    made = ctx.journal.append(NodeCreated(run=node, parent=choice.parent, kind=choice.kind, base_commit=base))
    ctx.journal.append(Message(stage=STAGE, text=f"node {node}: {choice.why}"))
    return made


def _grow(ctx: Context, conv: Conversations, made: NodeCreated, files: list[str], baseline: dict[str, Any],
          max_nodes: int) -> str:
    """One node: its code from its parent, the agent's edit, the smoke and full runs, the verdict."""
    from ..execution import execute, execute_full

    j, ws, node = ctx.journal, ctx.ws, made.run
    tree = current_tree(ctx)
    if not j.of(EditApplied, stage=STAGE, run=node):  # else the tree is already at this node's edit (a resume)
        if made.base_commit:
            checkout_code(ctx, made.base_commit)
        ws.commit(f"node {node}: {made.kind} from {'the template' if made.parent == ROOT else f'node {made.parent}'}")
    conv.sessions.pop(STAGE, None)  # a fresh chat per node: its prompt carries what it needs to know
    outcome = conv.ask(STAGE, _prompt(ctx, tree, made, files, baseline, max_nodes), files=files, run=node, attempt=1)
    plan = plan_of(outcome.response)
    if plan and not WorkspaceModel.build(j.events).nodes[node].plan:
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
