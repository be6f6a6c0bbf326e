"""The terminal views of a timeline: rich renderables, nothing printed here. Every number is shown with
its uncertainty over the run's seeds (stats.py: mean ± 95% CI half-width; a difference with its Welch
interval) and its source (* evaluated by the sealed evaluator, † self-reported)."""

from __future__ import annotations

import datetime as dt

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from .formatting import delta, fmt_num, fmt_tokens, fmt_wall
from .readmodel import RunView
from .run_files import diff_base, log_tail, run_diff
from .search.render import BEST, NodeView, TreeView, linear_best, search_view
from .timeline import MetricRow, Timeline
from .workspace import Workspace

STYLE = {
    "ok": "bold green", "degenerate": "bold yellow", "failed": "bold red", "tampered": "bold magenta",
    "timeout": "bold red", "interrupted": "bold cyan", "unfinished": "cyan", "no edit": "yellow",
    "done": "blue", "not run": "dim", "running": "cyan", "not started": "dim", "skipped": "dim",
    "finished": "bold green", "imported": "bold blue", "not applicable": "dim",
}
ABLATION_STYLE = "magenta"
ABLATIONS_NOTE = ("Ablation runs are the best node with one change of its path taken out, made by the orchestrator "
                  "(no agent): not search results, never counted as results or failures of the search.")


def verdict(status: str) -> Text:
    """A status word in its colour."""
    return Text(status, style=STYLE.get(status, ""))


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def header(tl: Timeline) -> Panel:
    """The workspace's panel: idea, template, agent, where, when and state."""
    c = tl.created
    t = Table.grid(padding=(0, 2))
    t.add_column(style="dim")
    t.add_column()
    t.add_row("idea", Text(f"{tl.idea.get('name', '?')} — {tl.title}", style="bold"))
    exp = str(tl.idea.get("experiment", "")).strip()
    if exp:
        t.add_row("experiment", Text(exp if len(exp) <= 400 else exp[:400] + " …"))
    t.add_row("template", Text(c.template))
    t.add_row("agent", Text(c.agent + (" (scripted)" if c.scripted else "")))
    t.add_row("workspace", Text(str(tl.root)))
    t.add_row("imported" if tl.imported else "started", _when(tl.first_ts))
    state = Text.assemble(verdict(tl.state), f"  {tl.state_detail}")
    t.add_row("state", state)
    return Panel(t, title="orchestrate show", title_align="left")


def runs_table(tl: Timeline) -> Table:
    """Every run and attempt with its verdict, reason, time, exit code, diff size and tokens."""
    ablations = {a.run.run: a for a in tl.ablations}
    t = Table(title="Runs", title_justify="left", show_lines=False, expand=False,
              caption=ABLATIONS_NOTE if ablations else None, caption_justify="left")
    with_tokens = any(a.tokens for r in tl.runs for a in r.attempts)  # a scripted transcript has none
    t.add_column("run", justify="right")
    if ablations:
        t.add_column("what", overflow="fold", max_width=30)
    t.add_column("att", justify="right")
    t.add_column("verdict", no_wrap=True)
    t.add_column("reason", overflow="fold", max_width=60, ratio=1)
    t.add_column("wall", justify="right", no_wrap=True)
    t.add_column("exit", justify="right")
    t.add_column("diff", justify="right", no_wrap=True)
    if with_tokens:
        t.add_column("tokens", justify="right")

    def row(*cells, end: bool, what: Text | None = None) -> None:
        cells = cells if with_tokens else cells[:-1]
        if ablations:  # what the run is: the search's, or which change an ablation takes out of which node
            cells = (cells[0], what or "", *cells[1:])
        t.add_row(*cells, end_section=end)

    for r in tl.runs:
        last = len(r.attempts) - 1
        ab = ablations.get(r.run)
        node = tl.model.nodes.get(r.run)
        what = (Text(ab.label, style=ABLATION_STYLE) if ab is not None
                else Text("search" + (f": {node.kind}" if node is not None else ""), style="dim"))
        for i, a in enumerate(r.attempts):
            row(str(r.run) if i == 0 else "", str(a.attempt), verdict(a.verdict), Text(a.reason),
                fmt_wall(a.wall_s) if a.phases and not tl.imported else "-",
                "-" if a.exit_code is None else str(a.exit_code), f"+{a.added} -{a.removed}" if a.edits else "-",
                fmt_tokens(a.tokens) if a.tokens else "-", end=(i == last), what=what if i == 0 else None)
        if not r.attempts:
            row(str(r.run), "-", verdict(r.status), Text("; ".join(r.reasons)), "-", "-", "-", "-", end=True, what=what)
        t.rows[-1].end_section = True
        if not r.attempts and ab is not None:
            continue  # an ablation that was not applicable: nothing ran, its one row says so
        if len(r.attempts) == 1 and r.attempts[0].verdict == r.status:
            continue  # one attempt whose verdict is the run's: its row says it all
        summary = Text.assemble(("→ ", "dim"), verdict(r.status))
        if r.recorded is not None:
            note = f"after {r.recorded.attempts} attempt(s)"
        elif r.status == "unfinished":
            note = "no verdict in the journal"
        elif r.status == "not run":
            note = "the agent ended the stage before it"
        else:
            note = ""
        shown = r.attempts[-1].reason if r.attempts else ""
        more = [why for why in r.reasons if why not in shown and not why.startswith("gave up after")]
        if r.status not in ("ok", "not run") and more:
            note += ("; also: " if note else "") + "; ".join(more[:2])
        row("", "", summary, Text(note, style="dim"), fmt_wall(r.wall_s) if r.wall_s and not tl.imported else "", "",
            f"+{r.added} -{r.removed}" if r.edits else "", "", end=True)
    return t


def metrics_table(tl: Timeline) -> Table | Text:
    """The key metrics of the baseline and of each result, with the change."""
    rows = tl.metric_rows()
    results = tl.results
    if not rows or not results:
        return Text("No run is a result: no metrics to compare with the baseline.", style="yellow")
    what = "search results only, ablations apart" if tl.ablations else "results only"
    t = Table(title=f"Key metrics ({what}) vs baseline: mean ± 95% CI half-width over seeds; "
                    "Δ: difference from the baseline [95% Welch interval]; * evaluated, † self-reported",
              title_justify="left", caption=tl.evaluation_note, caption_justify="left")
    t.add_column("metric")
    t.add_column(f"baseline ({tl.seeds_line(0)})" if tl.model.baselines else "baseline", justify="right")
    for r in results:  # how many seeds, and whether the numbers come from the template's evaluator or the run itself
        label = f" ({r.recorded.evaluation})" if r.recorded is not None else ""
        t.add_column(f"run {r.run}{label}, {tl.seeds_line(r.run)}", justify="right")
    for row in rows:
        cells = []
        for r in results:
            cells.append(stat_cell(row, r.run))
        t.add_row(Text(row.key), stat_cell(row, 0), *cells)
    return t


def stat_cell(row: MetricRow, run: int) -> str:
    """"0.913 ± 0.012 * (Δ +0.006 [-0.002, 0.014])": the run's value with its interval, its source marker
    (* evaluated, † self-reported) and, for a run other than the row's reference (the baseline, or the best
    node for its ablations), its difference from the reference."""
    if run not in row.seeds:
        v = row.baseline if run == 0 else row.values.get(run)
        return fmt_num(v)
    mark = "*" if row.evaluation.get(run) == "evaluated" else "†"
    other = run not in (0, row.reference)
    d = row.diff_text(run) if other else ""
    rel = delta(row.values.get(run), row.reference_value()) if other else ""
    return f"{row.text(run)}{mark}" + (f" (Δ {d}" + (f", {rel}" if rel else "") + ")" if d else "")


def _against_cell(row: MetricRow, run: int) -> str:
    """stat_cell, with the relative change from the row's reference where the journal has no seeds of the run."""
    if run in row.seeds:
        return stat_cell(row, run)
    rel = delta(row.values.get(run), row.reference_value())
    return fmt_num(row.values.get(run)) + (f" ({rel})" if rel else "")


def ablations_tables(tl: Timeline) -> list[Table]:
    """For each ablated node (the best node): each change on its path taken out in turn, the run that made it, its
    verdict and its key metrics against that node, in the words of the paper's ablation table."""
    out = []
    for of, abls in tl.ablation_groups():
        rows = tl.ablation_rows(of)
        t = Table(title=f"Ablations of run {of} (the best node): not search results", title_justify="left",
                  title_style=ABLATION_STYLE, caption_justify="left",
                  caption=f"Each change on the path to run {of} taken out of its code in turn, each variant its own run; "
                          f"Δ: the difference from run {of} [95% Welch interval]; * evaluated, † self-reported. A change "
                          "that no longer comes out of the best node's code (a later step rewrote its lines) is not "
                          "applicable: nothing was run for it.")
        t.add_column("change taken out")
        t.add_column("run", justify="right")
        t.add_column("verdict", no_wrap=True)
        for row in rows:
            t.add_column(row.key, justify="right")
        best = tl.run(of)
        t.add_row(Text("none (the best node)"), str(of), verdict(best.status if best else "unfinished"),
                  *(stat_cell(row, of) for row in rows), end_section=True)
        for a in abls:
            cells = [_against_cell(row, a.run.run) if a.run.is_result else "--" for row in rows]
            t.add_row(Text(a.change), str(a.run.run), verdict(a.status), *cells)
        out.append(t)
    return out


def stages_table(tl: Timeline) -> Table:
    """Every stage's status, summary, time, model calls, tokens and cost."""
    t = Table(title="Stages", title_justify="left")
    t.add_column("stage")
    t.add_column("status")
    t.add_column("summary", overflow="fold", max_width=50)
    t.add_column("wall", justify="right")
    t.add_column("calls", justify="right")
    t.add_column("tokens in/out", justify="right")
    t.add_column("cost", justify="right")
    for s in tl.stages:
        extra = f" [{s.executions_note}]" if s.executions else ""
        extra += f" [{len(s.artifacts)} artifact(s)]" if s.artifacts else ""
        t.add_row(s.name, verdict(s.status), Text(s.summary + extra), fmt_wall(s.wall_s), str(s.exchanges),
                  f"{fmt_tokens(s.prompt_tokens)}/{fmt_tokens(s.completion_tokens)}", f"${s.cost_usd:.4f}")
    t.add_row(Text("total", style="bold"), "", "", fmt_wall(tl.wall_s), str(sum(s.exchanges for s in tl.stages)),
              f"{fmt_tokens(tl.prompt_tokens)}/{fmt_tokens(tl.completion_tokens)}", Text(f"${tl.cost_usd:.4f}", style="bold"))
    return t


def messages_view(tl: Timeline) -> RenderableType | None:
    """The warnings and errors worth seeing, or None."""
    shown = [m for m in tl.messages if m.level != "info" or "interrupt" in m.text or "ended" in m.text]
    if not shown:
        return None
    t = Table.grid(padding=(0, 1))
    for m in shown:
        style = {"warning": "yellow", "error": "red"}.get(m.level, "dim")
        t.add_row(Text(m.level, style=style), Text(f"[{m.stage}]" if m.stage else "", style="dim"), Text(m.text))
    return Panel(t, title="messages", title_align="left")


def totals(tl: Timeline) -> Text:
    """One line of totals: runs, attempts, time, tokens and cost."""
    c = tl.counts
    parts = ", ".join(f"{n} {s}" for s, n in sorted(c.items())) or "no runs"
    abl = ""
    if tl.ablations:
        abl = f", {len(tl.ablations)} ablation(s) (" + ", ".join(f"{n} {s}" for s, n in sorted(tl.ablation_counts.items())) + ")"
    return Text.assemble(
        ("Totals: ", "bold"), f"{len(tl.search_runs)} run(s) ({parts}){abl}, {tl.attempts} attempt(s); ",
        f"wall {fmt_wall(tl.wall_s)} (experiments {fmt_wall(tl.run_wall_s)}); ",
        f"tokens {tl.prompt_tokens:,} in / {tl.completion_tokens:,} out; ", (f"cost ${tl.cost_usd:.4f}", "bold"),
    )


def node_label(n: NodeView) -> Text:
    """One node's line: ★ on the best path, its number and kind, its verdict, its score, its plan or why it failed."""
    t = Text()
    t.append(f"{BEST} " if n.on_best_path else "  ", style="bold yellow")
    t.append(f"{n.node} ", style="bold")
    t.append(n.what, style="bold" if n.best else "")
    t.append("  ")
    t.append_text(verdict(n.status))
    if n.score_note:
        t.append(f"  {n.score_note}", style="bold" if n.best else "")
    if n.best:
        t.append("  best", style="bold yellow")
    if n.reason:
        t.append(f"  {n.reason}", style="yellow")
    elif n.plan:
        t.append(f"  {n.plan}", style="dim")
    return t


def tree_panel(view: TreeView) -> Panel:
    """The search tree: the objective, every node under its parent (the template at the top), the best one."""
    top = Tree(Text("template" + (f" (baseline {view.baseline})" if view.baseline else ""), style="dim"), guide_style="dim")

    def add(branch: Tree, n: NodeView) -> None:
        below = branch.add(node_label(n))
        for c in n.children:
            add(below, c)

    for r in view.roots:
        add(top, r)
    return Panel(Group(Text(view.summary), top, Text(view.best_line, style="bold")), title="Search tree",
                 title_align="left")


def overview(tl: Timeline) -> Group:
    """`orchestrate show WORKSPACE`."""
    parts: list[RenderableType] = [header(tl)]
    view = search_view(tl)
    if view is not None:
        parts.append(tree_panel(view))
    if tl.runs:
        parts.append(runs_table(tl))
    else:
        parts.append(Text("No run yet.", style="dim"))
    best = linear_best(tl)
    if best is not None:
        parts.append(Text(best))
    parts.append(metrics_table(tl))
    parts.extend(ablations_tables(tl))
    parts.append(stages_table(tl))
    msgs = messages_view(tl)
    if msgs is not None:
        parts.append(msgs)
    parts.append(totals(tl))
    return Group(*parts)


def run_detail(tl: Timeline, run: RunView, ws: Workspace | None = None, *, tail: int = 15) -> Group:
    """`orchestrate show WORKSPACE --run N`: the run's diff, its logs' tails and its results."""
    parts: list[RenderableType] = []
    title = Text.assemble((f"Run {run.run}: ", "bold"), verdict(run.status))
    ablation = next((a for a in tl.ablations if a.run.run == run.run), None)
    if ablation is not None:
        title.append(f" — {ablation.label}, not a search result", style=ABLATION_STYLE)
    if ablation is not None and not ablation.applicable:
        title.append(": nothing was run")
    elif run.recorded is not None:
        title.append(f" after {run.recorded.attempts} attempt(s)")
        if run.recorded.status == "ok":
            title.append(f", metrics {run.recorded.evaluation}")
    if run.code_commit:
        title.append(f"  code {run.code_commit[:10]}", style="dim")
    parts.append(Panel(title))
    node = tl.model.nodes.get(run.run)
    if ablation is not None:
        parts.append(Text.assemble(("ablation ", "dim"), f"run {ablation.of}'s code without the change of {ablation.change}",
                                   (" (made by the orchestrator, no agent)", "dim")))
    elif node is not None:
        parts.append(Text.assemble(("node ", "dim"), f"{node.kind}" + (f" of node {node.ablates}" if node.ablates else ""),
                                   (" from ", "dim"), "the template" if node.parent == 0 else f"node {node.parent}"))
        if node.plan.strip():
            parts.append(Panel(Text(node.plan.strip()), title="plan", title_align="left", border_style="dim"))
    diff = run_diff(tl, run, ws)
    what = "experiment.py" if node is None else "the code"
    parts.append(Text(f"Change to {what} against {diff_base(tl, run)}", style="bold underline"))
    if diff.strip():
        parts.append(Syntax(diff, "diff", theme="ansi_dark", word_wrap=True))
    else:
        parts.append(Text("(no change recorded)", style="dim"))
    for a in run.attempts:
        head = Text.assemble((f"Attempt {a.attempt}: ", "bold"), verdict(a.verdict))
        if a.reason:
            head.append(f" — {a.reason}")
        if a.files:
            head.append(f"  [{', '.join(a.files)} +{a.added} -{a.removed}]", style="dim")
        parts.append(head)
        for p in a.phases:
            parts.append(Text.assemble(
                f"  {p.phase} run{'' if p.seed is None or p.phase == 'smoke' else f' seed {p.seed}'} ({p.out_dir}): ",
                verdict(p.status),
                f"  wall {fmt_wall(None if tl.imported else p.wall_s)}  exit {p.exit_code if p.exit_code is not None else '-'}",
                f"  peak {p.peak_rss_mb:.0f} MB" if p.peak_rss_mb else "",
            ))
            for why in p.reasons:
                parts.append(Text(f"    - {why}", style="yellow"))
            shown = False
            for name in ("stdout.txt", "stderr.txt"):
                text = log_tail(tl.root, p.log_dir, name, tail)
                if text:
                    shown = True
                    parts.append(Panel(Text(text), title=Text(f"{p.log_dir}/{name} (last {tail} lines)"), title_align="left",
                                       border_style="dim"))
            if not shown and p.feedback:
                fb = p.feedback.get("traceback") or p.feedback.get("stderr_tail") or p.feedback.get("stdout_tail")
                if fb:
                    parts.append(Panel(Text(str(fb)), title="recorded error", title_align="left", border_style="dim"))
    parts.append(Text("Results", style="bold underline"))
    metrics = run.metrics
    if metrics:
        t = Table(show_header=True, caption=f"run {run.run}: {tl.seeds_line(run.run)}. {tl.evaluation_note}",
                  caption_justify="left")
        for col, right in (("metric", False), ("baseline", True), (f"run {run.run}", True),
                           ("Δ vs baseline [95% CI]", True), ("source", False)):
            t.add_column(col, justify="right" if right else "left")
        for m in tl.run_metrics(run):
            value = Text("missing or not a number", style="yellow") if m.value is None else m.value
            t.add_row(Text(m.key), m.baseline, value, m.diff, m.source)
        parts.append(t)
        if not run.is_result:
            parts.append(Text("These are reported numbers, not a result: the run was not validated as ok.", style="yellow"))
    else:
        parts.append(Text("(no results)", style="dim"))
    for why in run.reasons:
        parts.append(Text(f"- {why}", style="yellow"))
    return Group(*parts)

