"""The journal's records: one typed event per thing that happened. Readers (resume, replay, show,
report) depend only on these models."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from .migrations import JOURNAL_VERSION

Stage = Literal["experiments", "ablations", "plots", "writeup", "compile", "review"]
STAGES: tuple[str, ...] = ("experiments", "ablations", "plots", "writeup", "compile", "review")
VerdictStatus = Literal["ok", "failed", "degenerate", "misreported", "tampered", "timeout", "interrupted"]
Evaluation = Literal["evaluated", "self-reported"]  # metrics from the template's [evaluate] step, or the run's own
Phase = Literal["smoke", "full", "plot", "latex", "chktex"]


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seq: int = 0
    ts: float = 0.0


class WorkspaceCreated(_Event):
    """The journal's first event: the idea, template, limits, agent and executor the workspace was made with."""

    type: Literal["workspace_created"] = "workspace_created"
    idea: dict[str, Any]
    idea_path: str
    template: str
    template_root: str
    limits: dict[str, Any]
    agent: str  # "aider:<model>" or "transcript:<path>"
    scripted: bool = False
    python: str | None = None
    isolation: str = "none"
    imported_from: str | None = None
    executor: dict[str, Any] = Field(default_factory=dict)  # where runs execute (executors.factory.build_executor); {}: here
    options: dict[str, Any] = Field(default_factory=dict)  # run options that shape the pipeline (stages); resume keeps them
    version: int = JOURNAL_VERSION  # the journal's shape (migrations.py); absent in journals older than versions


class StageStarted(_Event):
    """A stage began (or began again after a resume)."""

    type: Literal["stage_started"] = "stage_started"
    stage: str


class StageFinished(_Event):
    """A stage ended: done, failed or skipped, with a one-line summary and its commit."""

    type: Literal["stage_finished"] = "stage_finished"
    stage: str
    status: Literal["done", "failed", "skipped"]
    summary: str = ""
    commit: str | None = None


class Exchange(_Event):
    """One model call: what was asked, what came back, what it cost."""

    type: Literal["exchange"] = "exchange"
    stage: str
    run: int | None = None
    attempt: int | None = None
    step: str = "edit"  # what the exchange was for: edit, fix, notes, section:<name>, review ...
    prompt: str
    messages: list[dict[str, Any]] = Field(default_factory=list)
    response: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    transcript_line: int | None = None
    scripted: bool = False
    retries: int = 0  # provider errors retried before this reply came


class ExchangeFailed(_Event):
    """A model call that gave no usable reply: nothing of it reached the workspace. `kind`: auth,
    bad_request, context_overflow, rate_limit, server, timeout, connection, empty_reply, invalid_reply,
    interrupted or error; `attempts` tries took `latency_s` in all."""

    type: Literal["exchange_failed"] = "exchange_failed"
    stage: str
    run: int | None = None
    attempt: int | None = None
    step: str = "edit"
    model: str
    kind: str
    message: str
    attempts: int = 1
    latency_s: float = 0.0
    status: int | None = None  # the provider's HTTP status, when it answered with one

    def describe(self) -> str:
        """One line for show and report."""
        where = f"{self.stage}" + (f" run {self.run} attempt {self.attempt}" if self.run is not None else "")
        tries = (f"after {self.attempts} tr{'y' if self.attempts == 1 else 'ies'}, {self.latency_s:.1f}s"
                 if self.attempts else "nothing sent")
        return f"model call failed ({self.kind.replace('_', ' ')}; {where}, {self.step}; {tries}): {self.message}"


class EditApplied(_Event):
    """The edits of one exchange, applied (or not) and committed in the workspace's repo."""

    type: Literal["edit_applied"] = "edit_applied"
    stage: str
    run: int | None = None
    attempt: int | None = None
    step: str = "edit"
    commit: str
    files: list[str] = Field(default_factory=list)
    diff: str = ""
    added: int = 0
    removed: int = 0
    refused: list[str] = Field(default_factory=list)
    failed: str | None = None  # aider's message when blocks did not apply
    done: bool = False  # the agent declared the stage finished


RUN_STAGE = {"smoke": "experiments", "full": "experiments", "plot": "plots", "latex": "compile", "chktex": "compile"}


class Feedback(BaseModel):
    """What goes back to the agent after a failed execution: the traceback summary and output tails of
    an experiment or plot script; LaTeX's problems (latex.LatexProblem, as dicts), warnings and log tail."""

    model_config = ConfigDict(extra="forbid")

    traceback: str | None = None
    stderr_tail: str = ""
    stdout_tail: str = ""
    problems: list[dict[str, Any]] = Field(default_factory=list)
    warnings: list[dict[str, Any]] = Field(default_factory=list)
    tail: str = ""


class RunStarted(_Event):
    """One execution (smoke, full, plot, latex or chktex) began, with the code commit and any job id.

    `run` numbers the experiment's runs (1, 2, ...); the executions of other stages (plots, compile) have
    run None and name their `stage`."""

    type: Literal["run_started"] = "run_started"
    stage: Stage = "experiments"
    run: int | None = None
    attempt: int
    phase: Phase
    out_dir: str
    commit: str | None = None
    job_id: str | None = None
    seed: int | None = None  # the seed of this execution (None: a journal from before seeds, or not a numbered run)


class RunFinished(_Event):
    """One execution's verdict: status, reasons, exit code, resources, metrics and feedback for the agent."""

    type: Literal["run_finished"] = "run_finished"
    stage: Stage = "experiments"
    run: int | None = None  # None: an execution of another stage (plots, compile), not a numbered run
    attempt: int
    phase: Phase
    out_dir: str
    status: VerdictStatus
    reasons: list[str] = Field(default_factory=list)
    exit_code: int | None = None
    wall_s: float = 0.0
    peak_rss_mb: float = 0.0
    timed_out: bool = False
    metrics: dict[str, Any] = Field(default_factory=dict)
    feedback: Feedback = Field(default_factory=Feedback)
    log_dir: str = ""
    commit: str | None = None  # full runs that are results are committed before this is written
    containment: list[str] = Field(default_factory=list)  # the isolation layers that applied (runner.RunRecord)
    job: dict[str, Any] = Field(default_factory=dict)  # the Slurm job it ran as: job_id, state, node
    evaluation: Evaluation = "self-reported"
    outputs: dict[str, str] = Field(default_factory=dict)  # sha256 of every file of an ok run's out_dir
    eval_wall_s: float = 0.0  # the evaluator's wall time (0: none ran)
    seed: int | None = None  # the seed of this execution (None: a journal from before seeds, or not a numbered run)


class RunAggregated(_Event):
    """A full run's verdict over its seeds (after every seed was judged): ok when at least min_ok seeds
    are; `metrics` is the per-key mean over the ok seeds (what run_i/final_info.json holds)."""

    type: Literal["run_aggregated"] = "run_aggregated"
    run: int
    attempt: int
    status: VerdictStatus
    seeds_ok: list[int] = Field(default_factory=list)
    seeds_failed: list[int] = Field(default_factory=list)
    min_ok: int = 1
    reasons: list[str] = Field(default_factory=list)
    metrics: dict[str, Any] = Field(default_factory=dict)
    evaluation: Evaluation = "self-reported"
    out_dir: str = ""
    commit: str | None = None
    outputs: dict[str, str] = Field(default_factory=dict)  # sha256 of every file of the run's folder when ok


class RunRecorded(_Event):
    """A run's final verdict after its attempts: what notes, tables and the paper may use."""

    type: Literal["run_recorded"] = "run_recorded"
    run: int
    status: VerdictStatus
    attempts: int
    reasons: list[str] = Field(default_factory=list)
    commit: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    evaluation: Evaluation = "self-reported"


NodeKind = Literal["draft", "improve", "debug", "ablation"]


class NodeCreated(_Event):
    """A node of the search tree (`--strategy tree`): numbered run `run` (its node id), made from node `parent`
    (0: the template, i.e. the baseline's code) by a `kind` of step. The node's own events (exchanges, edits,
    executions, verdict) carry `run` = its id. `base_commit` is the parent's code the agent started from;
    an ablation node is the best node's code with node `ablates`'s change removed."""

    type: Literal["node_created"] = "node_created"
    run: int
    parent: int
    kind: NodeKind
    base_commit: str | None = None
    plan: str = ""  # the agent's stated plan for this node (its reply's text), once known
    ablates: int | None = None


class Prepared(_Event):
    """The template's [prepare] step: built the data cache (or found it built for the same key)."""

    type: Literal["prepared"] = "prepared"
    command: str
    cache_dir: str
    key: str
    status: Literal["ok", "failed"]
    reasons: list[str] = Field(default_factory=list)
    reused: bool = False
    wall_s: float = 0.0
    log_dir: str = ""


class BaselineRecorded(_Event):
    """The baseline's (`run_0`) metrics, once per workspace: what every comparison reads."""

    type: Literal["baseline_recorded"] = "baseline_recorded"
    metrics: dict[str, Any] = Field(default_factory=dict)  # flattened, as RunFinished.metrics
    evaluation: Evaluation = "self-reported"
    reasons: list[str] = Field(default_factory=list)  # why it is self-reported when the template has an evaluator
    outputs: dict[str, str] = Field(default_factory=dict)  # sha256 of run_0's files
    seed: int | None = None  # one event per baseline seed (run_0/seed_<s>/); None: a single-seed baseline
    produced_by: Literal["template", "orchestrator"] = "template"  # who made run_0's results


class Message(_Event):
    """Something the user should see in the timeline (resumed, budget stop, tools missing ...)."""

    type: Literal["message"] = "message"
    level: Literal["info", "warning", "error"] = "info"
    text: str
    stage: str | None = None


class Artifact(_Event):
    """A file a stage produced (figure, paper, review)."""

    type: Literal["artifact"] = "artifact"
    stage: str
    kind: str
    path: str
    ok: bool = True
    detail: str = ""


class FiguresReviewed(_Event):
    """One round of the vision review of figures (vision.py): what the model saw and found, or why it was skipped."""

    type: Literal["figures_reviewed"] = "figures_reviewed"
    stage: str
    round: int = 0  # 0: skipped before any round
    model: str | None = None
    skipped: str = ""
    figures: list[str] = Field(default_factory=list)
    not_sent: list[str] = Field(default_factory=list)
    findings: list[dict[str, Any]] = Field(default_factory=list)  # vision.FigureFinding: figure, kind, detail


Event = Annotated[
    WorkspaceCreated | StageStarted | StageFinished | Exchange | ExchangeFailed | EditApplied | RunStarted | RunFinished
    | RunAggregated | RunRecorded | Message | Artifact | Prepared | BaselineRecorded | NodeCreated
    | FiguresReviewed,
    Field(discriminator="type"),
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
