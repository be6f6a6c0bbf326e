"""Start a workspace from an idea, or pick one up again, and run its stages in order.

Stages are resumable from the journal: a finished stage is skipped, a started one re-walks its steps,
each served from the journal when it was already done."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import adopt, env
from . import sandbox as sandbox_mod
from .agents.aider import Budget, require_price
from .agents.replay import TranscriptSource, load_transcript
from .context import Context
from .conversation import Conversations
from .env import cache_home
from .errors import InputError, TemplateError, TranscriptError
from .events import STAGES, Exchange, Message, StageFinished, StageStarted
from .executors.factory import build_executor
from .latex import preflight_for
from .pyenv import experiment_python, require_imports
from .readmodel import WorkspaceModel, workspace_created
from .search.options import SearchSetup, recorded_search, resolve_search
from .seeds import local_slots
from .settings import Limits, SearchSettings
from .spec import Idea, load_idea
from .template import MANIFEST, Template, find_template, load_template
from .workspace import Workspace, create


@dataclass
class RunOptions:
    """What one run of an idea was asked on the command line (None: the idea's, the template's or the default)."""

    model: str | None = None
    template: str | None = None
    python: str | None = None
    idea_name: str | None = None
    max_runs: int | None = None
    max_attempts: int | None = None
    budget_usd: float | None = None
    stages: list[str] | None = None
    sandbox: Path = Path("sandbox")
    isolation: str | None = None
    full_timeout_s: float | None = None
    smoke_timeout_s: float | None = None
    memory_mb: int | None = None
    max_processes: int | None = None
    limit_sources: dict | None = None  # where each resource limit came from (set by prepare, shown at start)
    transcript: Path | None = None  # replay: serve this transcript, whatever the idea names
    executor: dict | None = None  # where runs execute (executors.factory.build_executor: GPU slots, Slurm); None: here
    seeds: int | None = None  # --seeds N: seeds per full run (over the idea's and the template's)
    strategy: str | None = None  # --strategy linear|tree (None: the idea's, else linear)
    max_nodes: int | None = None  # --max-nodes N: a tree search's nodes (None: the idea's search, else max_runs)
    search_time_s: float | None = None  # --search-time S: a tree search makes no new node after S seconds of nodes
    parallel_nodes: int | None = None  # --parallel-nodes N: a tree node's full runs in flight while the next is drafted
    search: SearchSettings | None = None  # a replay: the recorded search settings
    search_setup: SearchSetup | None = None  # set by prepare: the strategy, objective and settings resolved
    vision_model: str | None = None  # --vision-model: reviews figures and page images (else the config's, else model)
    vision_rounds: int | None = None  # --vision-rounds: rounds of the figures' findings back to the agent


def import_stages() -> None:
    """Register every stage module that exists (the paper stages arrive as their own modules)."""
    import importlib

    for name in STAGES:
        try:
            importlib.import_module(f"orchestrator.stages.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"orchestrator.stages.{name}":
                raise


def selected_stages(requested: list[str] | None) -> list[str]:
    """The stages to run, in pipeline order: those asked for (checked), else every one available."""
    from .stages import REGISTRY

    import_stages()
    names = requested or [s for s in STAGES if s in REGISTRY]
    for n in names:
        if n not in REGISTRY:
            have = ", ".join(s for s in STAGES if s in REGISTRY)
            raise InputError(None, f"--stages: unknown or unavailable stage {n!r} (have: {have})")
    return [s for s in STAGES if s in names]


def resolve_limits(template: Template, idea: Idea, opts: RunOptions) -> Limits:
    """Defaults and the machine's safe memory and process caps (machine.py), then the template's timeouts and
    [resources], then the idea's limits, then the command line."""
    return _limits_and_sources(template, idea, opts)[0]


def _limits_and_sources(template: Template, idea: Idea, opts: RunOptions) -> tuple[Limits, dict[str, str]]:
    from .machine import probe

    machine = probe()
    t, r = template.manifest.timeouts, template.manifest.resources
    src = {"memory_mb": f"the machine's share: {machine.memory_mb} MB less 2 GiB, at most 75%",
           "max_processes": "the machine's share: half the free tasks, at most 512"}
    limits = Limits().merged(memory_mb=machine.memory_cap_mb, max_processes=machine.process_cap,
                             full_timeout_s=t.full_s, smoke_timeout_s=t.smoke_s, plot_timeout_s=t.plot_s)
    layers = (("template.toml [resources]", dict(memory_mb=r.memory_mb, max_processes=r.pids)),
              ("the idea's limits", dict(idea.limits.model_dump(), max_runs=idea.max_runs)),
              ("the command line", dict(max_runs=opts.max_runs, max_attempts=opts.max_attempts, budget_usd=opts.budget_usd,
                                        isolation=opts.isolation, full_timeout_s=opts.full_timeout_s,
                                        smoke_timeout_s=opts.smoke_timeout_s, memory_mb=opts.memory_mb,
                                        max_processes=opts.max_processes, vision_rounds=opts.vision_rounds)))
    for name, values in layers:
        limits = limits.merged(**values)
        src.update({k: name for k in ("memory_mb", "max_processes") if values.get(k) is not None})
        if name == "the idea's limits" and idea.seeds is not None:
            limits = limits.merged(seeds=idea.seeds.count, seeds_min_ok=idea.seeds.min_ok)
    if opts.seeds is not None:
        if opts.seeds < 1:
            raise InputError(None, f"--seeds {opts.seeds}: a run needs at least 1 seed")
        limits = limits.merged(seeds=opts.seeds)
    check_seeds(template, limits)
    if r.memory_mb and r.memory_mb > machine.memory_mb and opts.memory_mb is None and idea.limits.memory_mb is None:
        raise TemplateError(template.root / "template.toml", f"[resources] memory_mb = {r.memory_mb}: more than this "
                            f"machine has ({machine.memory_mb} MB); pass --memory-mb to run it anyway")
    return limits, src


def limits_line(limits: Limits, sources: dict[str, str] | None = None, isolation: str | None = None) -> str:
    """The limits in effect, for the start of every run and the journal."""
    src = sources or {}

    def why(k: str) -> str:
        return f" ({src[k]})" if k in src else ""

    return (f"limits: memory {limits.memory_mb or 'unlimited'} MB{why('memory_mb')}, "
            f"processes {limits.max_processes}{why('max_processes')}, full run {limits.full_timeout_s:g} s, "
            f"smoke run {limits.smoke_timeout_s:g} s, written {limits.max_written_mb} MB, "
            f"isolation {isolation or limits.isolation}")


def seeds_in_progress(journal) -> list[str]:
    """The folders of full runs some of whose seeds are judged but whose aggregate is not (a resume keeps them)."""
    from .events import RunAggregated, RunFinished

    done = {(a.run, a.attempt) for a in journal.of(RunAggregated)}
    return sorted({f"run_{f.run}" for f in journal.of(RunFinished, phase="full")
                   if f.seed is not None and (f.run, f.attempt) not in done})


def check_seeds(template: Template, limits: Limits) -> None:
    """The seeds asked for fit the template: the seed reaches its experiment, min_ok <= count."""
    from .seeds import plan

    m = template.manifest
    p = plan(m, limits)
    where = template.root / MANIFEST
    if len(p.values) > 1 and not m.seeds_reach():
        raise InputError(where, f"{len(p.values)} seeds asked for, but the seed reaches the experiment neither by "
                                "[seeds] env nor by a {seed} placeholder in command")
    if p.min_ok > len(p.values):
        raise InputError(where, f"seeds: min_ok ({p.min_ok}) is more than the {len(p.values)} seed(s) of a run")


def configured_model(opts: RunOptions) -> str | None:
    """--model, else $ORCHESTRATE_MODEL, else the user's config file; its provider variables are applied."""
    from . import userconfig

    cfg = userconfig.load()
    userconfig.apply(cfg)
    return opts.model or env.default_model() or cfg.model or None


def configured_vision_model(opts: RunOptions, model: str | None) -> str | None:
    """--vision-model, else the config file's vision_model, else None (the run's model looks, if it can).
    A transcript run has none: its vision entries, if any, are the reviewer (vision.py)."""
    from . import userconfig

    if model is None:
        return None
    return opts.vision_model or userconfig.load().vision_model or None


def template_problem(template: Template) -> None:
    """Template errors found before a workspace is made, not blamed on the agent's runs: a manifest that
    verifies nothing (unless it says `unverified = true`), an editable pattern naming a protected file,
    a check bound that does not evaluate against the baseline's results. TemplateError (exit 2)."""
    import json

    from .results import bound_problem
    from .template import BASELINE_RUN, MANIFEST, policy_problem

    m = template.manifest
    problem = policy_problem(m)
    if problem is None:
        baseline = json.loads((template.root / BASELINE_RUN / m.results_file).read_text(encoding="utf-8"))
        problem = bound_problem(m.checks, baseline)
    if problem is not None:
        raise TemplateError(template.root / MANIFEST, problem)


def prepare(idea_path: Path, opts: RunOptions) -> tuple:
    """Validate everything a run needs before anything is made. Raises InputError (exit 2)."""
    loaded = load_idea(idea_path, idea_name=opts.idea_name, template=opts.template)
    root = find_template(loaded.idea.template, near=loaded.path.parent, ai_scientist=True)
    if (root / MANIFEST).is_file():
        template = load_template(root)
        template_problem(template)
    else:  # an AI Scientist folder: the manifest inferred; its baseline is made (and checked) when the run starts
        template = adopt.provisional(root, cache=cache_home())
    limits, sources = _limits_and_sources(template, loaded.idea, opts)
    opts.limit_sources = sources
    opts.search_setup = resolve_search(template, loaded.idea, idea_path, limits, strategy=opts.strategy,
                                       max_nodes=opts.max_nodes, wall_s=opts.search_time_s, recorded=opts.search,
                                       parallel=opts.parallel_nodes, gpu_slots=len((opts.executor or {}).get("gpus") or []))
    if opts.search_setup.strategy == "tree" and not opts.transcript and loaded.tree_transcript_path:
        loaded = loaded.model_copy(update={"transcript_path": loaded.tree_transcript_path})
    model = None if opts.transcript else configured_model(opts)
    if opts.transcript:
        loaded = loaded.model_copy(update={"transcript_path": opts.transcript.resolve()})
    transcript = None
    if model is None:
        if loaded.transcript_path is None:
            raise InputError(idea_path, "no model configured and the idea names no transcript: "
                             "pass --model NAME (e.g. --model anthropic/claude-sonnet-4-5, or "
                             "--model openai/<name> with OPENAI_API_BASE for a local server) or set ORCHESTRATE_MODEL")
        transcript = load_transcript(loaded.transcript_path)
        h = transcript.header
        if h.idea and h.idea != loaded.idea.name:
            raise TranscriptError(loaded.transcript_path, f"header: transcript is for idea {h.idea!r}, not {loaded.idea.name!r}")
        if h.template and h.template != template.manifest.name:
            raise TranscriptError(loaded.transcript_path,
                                  f"header: transcript is for template {h.template!r}, not {template.manifest.name!r}")
    stages = selected_stages(opts.stages)
    return loaded, template, limits, model, transcript, stages


def start(idea_path: Path, opts: RunOptions, *, log=print) -> tuple[Context, list[str]]:
    """Make a new workspace for the idea and a context to run it; returns it with the stages to run."""
    loaded, template, limits, model, transcript, stages = prepare(idea_path, opts)
    require_price(model, limits)  # before anything is made
    search = opts.search_setup
    assert search is not None
    vision_model = configured_vision_model(opts, model)
    require_price(vision_model, limits)
    for line in loaded.warnings:
        log(line)
    cache = cache_home()
    python = experiment_python(template, cache, override=opts.python, log=log)
    isolation = sandbox_mod.resolve(limits.isolation)
    files = {}
    if adopt.is_ai_scientist(template.root):  # its baseline made (or found cached), its manifest into the workspace
        require_imports(template, python, isolation=isolation, work=cache / "check")  # before the baseline runs
        template = adopt.adopted_template(template.root, python, cache=cache, isolation=isolation, log=log)
        template_problem(template)
        limits, opts.limit_sources = _limits_and_sources(template, loaded.idea, opts)
        files = adopt.workspace_files(template, loaded.idea)  # notes.txt as AI Scientist's launcher starts it
    if transcript is not None:
        kind = "scripted (hand-written)" if transcript.scripted else "recorded"
        log(f"replaying the {kind} transcript {transcript.path} — no model configured")
        agent = f"transcript:{transcript.path}"
    else:
        log(f"agent: aider with {model}")
        agent = f"aider:{model}"
    ws = create(loaded, template, sandbox=opts.sandbox, header=dict(
        idea=loaded.idea.model_dump(), idea_path=str(loaded.path), template=template.manifest.name,
        template_root=str(template.root), limits=limits.model_dump(), agent=agent,
        scripted=bool(transcript and transcript.scripted), python=python, isolation=isolation,
        executor=opts.executor or {}, options={"stages": stages, "stages_asked": opts.stages, **search.options(),
                                              "vision_model": vision_model},
    ), files=files)
    log(f"workspace: {ws.root}")
    ctx = Context(
        ws=ws, idea=loaded.idea, limits=limits, python=python, isolation=isolation, model=model,
        transcript=TranscriptSource(transcript) if transcript else None,
        budget=Budget(limits.budget_usd), cache_dir=cache / "data" / template.manifest.name,
        executor=build_executor(opts.executor, local_slots=local_slots(template.manifest, limits)),
        strategy=search.strategy, objective=search.objective, search=search.settings,
        vision_model=vision_model,
        stages_asked=opts.stages,
    )
    tex = preflight_for(stages)  # TeX is checked now, not discovered at the compile stage
    if tex is not None and not tex[0]:
        ctx.tex_available, ctx.tex_missing = False, tex[1]
        log(tex[1])
        ws.journal.append(Message(level="warning", text=tex[1]))
    line = limits_line(limits, opts.limit_sources, isolation)  # after TeX: missing tools are said first
    log(line)
    ws.journal.append(Message(text=line))
    ws.lock()
    return ctx, stages


def reopen(root: Path, opts: RunOptions, *, log=print) -> tuple[Context, list[str]]:
    """A context for an existing workspace; the tree is put back at the last commit the journal vouches for."""
    ws = Workspace(root)
    head = workspace_created(ws.journal.events, root)
    if head.imported_from:
        raise InputError(root, "an imported workspace is read-only: show or report it instead")
    ws.lock()
    idea = Idea.model_validate(head.idea)
    limits = Limits.model_validate(head.limits).merged(budget_usd=opts.budget_usd, max_runs=opts.max_runs,
                                                     max_attempts=opts.max_attempts, vision_rounds=opts.vision_rounds)
    model = vision_model = None
    transcript = None
    if head.agent.startswith("aider:"):
        from . import userconfig

        userconfig.apply(userconfig.load())  # the provider's keys and endpoint, as for `run`
        model = opts.model or head.agent.split(":", 1)[1]
        vision_model = opts.vision_model or head.options.get("vision_model")
        try:
            require_price(model, limits)
            require_price(vision_model, limits)
        except InputError:
            ws.unlock()
            raise
    else:
        t = load_transcript(ws.state / "transcript.jsonl")
        lines = [e.transcript_line for e in ws.journal.of(Exchange) if e.transcript_line is not None]
        src = TranscriptSource(t)
        src.pos = src.numbers.index(lines[-1]) + 1 if lines else 0
        transcript = src
    python = opts.python or head.python or experiment_python(load_template(Path(head.template_root)), cache_home(), log=log)
    # a killed orchestrator may leave its experiment running (isolation none): end it first
    from .runner import kill_marked

    kill_marked(env.WORKSPACE, str(ws.root))
    # Slurm jobs may still write there; judged seeds of a run not yet aggregated are not run again
    keep = [f"--exclude=/{d}" for d in WorkspaceModel.build(ws.journal.events).pending_job_dirs()]
    keep += [f"--exclude=/{d}" for d in seeds_in_progress(ws.journal)]
    if keep:
        ws.git("reset", "-q", "--hard", ws.last_recorded_commit())
        ws.git("clean", "-q", "-fd", *keep)
    else:
        ws.reset_to(ws.last_recorded_commit())
    spent = sum(e.cost_usd for e in ws.journal.of(Exchange))
    search = recorded_search(head.options, max_nodes=opts.max_nodes)
    ctx = Context(
        ws=ws, idea=idea, limits=limits, python=python, isolation=head.isolation, model=model,
        transcript=transcript, budget=Budget(limits.budget_usd, spent),
        cache_dir=cache_home() / "data" / head.template,
        executor=build_executor(head.executor, local_slots=local_slots(load_template(Path(head.template_root)).manifest,
                                                                       limits)),
        strategy=search.strategy, objective=search.objective, search=search.settings,
        vision_model=vision_model,
        stages_asked=opts.stages or head.options.get("stages_asked"),
    )
    done = {e.stage for e in ws.journal.of(StageFinished)}
    asked = opts.stages or head.options.get("stages")  # the run's own --stages unless resume names others
    stages = [s for s in selected_stages(asked) if s not in done]
    ws.journal.append(Message(text=f"resumed; stages left: {', '.join(stages) or 'none'}"))
    line = limits_line(limits, {"memory_mb": "as recorded", "max_processes": "as recorded"}, head.isolation)
    log(line)
    ws.journal.append(Message(text=line))
    return ctx, stages


def execute(ctx: Context, stages: list[str]) -> None:
    """Run each stage that has not finished yet, in order, recording its start and its end."""
    from .stages import REGISTRY, Skipped

    conv = Conversations(ctx)
    j = ctx.journal
    for name in stages:
        if j.last(StageFinished, stage=name):
            continue
        if not j.last(StageStarted, stage=name):
            j.append(StageStarted(stage=name))
        summary = REGISTRY[name](ctx, conv)
        status = "skipped" if isinstance(summary, Skipped) else "done"
        j.append(StageFinished(stage=name, status=status, summary=str(summary or ""),
                               commit=ctx.ws.commit(f"stage {name}: {status}")))
