"""Items of a foreign log -> journal events, with AI Scientist's experiment loop as the model:
each agent reply is an attempt at the current run; a failure or timeout means another attempt at the
same run; `Run N completed` ends run N with its results, which we validate ourselves."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..events import (
    BaselineRecorded,
    EditApplied,
    Exchange,
    Feedback,
    Message,
    RunFinished,
    RunRecorded,
    RunStarted,
    StageFinished,
    StageStarted,
    _Event,
)
from ..results import flatten, validate
from ..template import Manifest
from .items import Item, Iteration, Note, Outcome, Prompt, Reply, StageMark, block_diff, blocks, notes_results

ResultsLookup = Callable[[int], tuple[dict[str, Any] | None, str | None]]


@dataclass
class Built:
    events: list[_Event] = field(default_factory=list)
    results: dict[int, dict[str, Any]] = field(default_factory=dict)  # run -> results as reported
    edits: list[tuple[str, list[Any]]] = field(default_factory=list)  # (stage, blocks) in order, for notes.txt


STEPS = re.compile(r"(^|[._])(training_)?(steps?|iters?|iterations?|epochs?|updates?|batches)"
                   r"(_(done|executed|run|trained))?$", re.I)
LOSS = re.compile(r"loss", re.I)
TIME = re.compile(r"(time|duration|wall|elapsed|_s$|seconds)", re.I)


def silent_failures(data: dict[str, Any], manifest: Manifest) -> list[str]:
    """What a foreign template's results show without a check saying so: zero steps, a loss never computed.
    Keys the manifest checks already are left to it."""
    checked = {c.path for c in manifest.checks}
    out = []
    for key, value in _leaves(data):
        if key in checked:
            continue
        if STEPS.search(key) and isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0:
            out.append(f"{key} = {value:g}: no training step was executed (a silent failure)")
        elif LOSS.search(key) and value is None:
            out.append(f"{key} is None: the loss was never computed (a silent failure)")
    return out


def _leaves(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in data.items():
        if isinstance(v, dict):
            out += _leaves(v, f"{prefix}{k}.")
        else:
            out.append((f"{prefix}{k}", v))
    return out


def _identity(data: dict[str, Any], manifest: Manifest) -> dict[str, Any]:
    """The values two runs must not share all of: the manifest's compare or key metrics, else every
    reported number but times."""
    keys = manifest.compare.keys or manifest.key_metrics
    leaves = dict(_leaves(data))
    if keys:
        return {k: leaves.get(k) for k in keys if k in leaves}
    return {k: v for k, v in leaves.items() if not TIME.search(k) and (v is None or isinstance(v, (int, float)))}


def _said(new: str, old: str) -> bool:
    """The manifest's validation already gave this reason (the same key, or identity with another run)."""
    return ("identical" in new and "identical" in old) or ("identical" not in new and old.startswith(new.split(" ")[0] + " "))


def _summary(error: str) -> str:
    """The exception line of a traceback (its last non-empty line), else the error's first line."""
    lines = [ln.strip() for ln in error.strip().splitlines() if ln.strip()]
    if not lines:
        return "the run failed (no error text in the log)"
    return lines[-1][:300]


class Builder:
    def __init__(self, manifest: Manifest, *, model: str, baseline: dict[str, Any] | None,
                 find_results: ResultsLookup | None = None, max_runs: int = 5) -> None:
        self.m = manifest
        self.model = model
        self.baseline = baseline
        self.find_results = find_results or (lambda run: (None, None))
        self.out = Built()
        self.max_runs = max_runs  # AI Scientist's MAX_RUNS (5) unless the log's first prompt says otherwise
        self.stage: str | None = None
        self.run = 1
        self.attempt = 0
        self.open_attempt = False  # the current attempt has a reply and no outcome yet
        self.step_n = 0
        self.prompt = ""
        self.reflection = False
        self.last_failure: RunFinished | None = None
        self.done_declared = False
        self.previous_ok: dict[str, Any] | None = None
        self.stage_steps: dict[str, int] = {}
        self.session_cost: float | None = None
        self.iterations = False  # the log has `Currently on iteration` lines
        self.cost = 0.0
        self.notes: dict[int, tuple[dict[str, Any], int]] = {}  # run -> (results the agent wrote in notes.txt, line)

    def emit(self, e: _Event) -> None:
        self.out.events.append(e)

    # -- stages ----------------------------------------------------------------------------------
    def start_stage(self, stage: str) -> None:
        if self.stage == stage:
            return
        if self.stage == "experiments" and stage == "plots" and self.open_attempt and not self.done_declared:
            # The loop only reaches the plots after a run that exited 0 (or ALL_COMPLETED): it completed.
            self.outcome(Outcome(kind="completed", line=0, run=self.run, exit_code=0))
            if self.stage == stage:
                return
        if self.stage is not None:
            self.finish_stage("done")
        self.stage = stage
        self.emit(StageStarted(stage=stage))

    def finish_stage(self, status: str, summary: str = "") -> None:
        if self.stage is None:
            return
        if self.stage == "experiments":
            self.close_run(at_end=False)
            recs = [e for e in self.out.events if isinstance(e, RunRecorded)]
            ok = sum(1 for r in recs if r.status == "ok")
            summary = summary or f"{ok} result(s) of {len(recs)} run(s) (imported; validated by the orchestrator)"
        self.emit(StageFinished(stage=self.stage, status=status, summary=summary))
        self.stage = None

    # -- runs ------------------------------------------------------------------------------------
    def close_run(self, *, at_end: bool) -> None:
        """The experiments loop moved on (or the log ended) without `Run N completed`."""
        if self.attempt == 0:
            return
        if any(isinstance(e, RunRecorded) and e.run == self.run for e in self.out.events):
            return
        if self.last_failure is not None and not self.open_attempt:
            f = self.last_failure
            self.emit(RunRecorded(run=self.run, status=f.status, attempts=self.attempt,
                                  reasons=[f"gave up after {self.attempt} attempt(s)", *f.reasons]))
        elif self.open_attempt and not self.done_declared:
            where = "the log ends" if at_end else "the pipeline moved on"
            self.emit(Message(level="warning", stage="experiments",
                              text=f"run {self.run}: {where} before its outcome (attempt {self.attempt} has no result)"))

    def new_attempt(self) -> None:
        self.attempt += 1
        self.open_attempt = True
        self.step_n = 0

    def reply(self, r: Reply) -> None:
        if self.stage is None:
            self.start_stage("experiments")
        reflection = self.reflection or r.reflection
        if self.stage == "experiments" and self.open_attempt and not reflection and not self.prompt and not self.iterations:
            # A console capture without progress lines: the loop asked again without a failure line, so the
            # previous attempt exited 0 — AI Scientist's loop then moves to the next run (or to the plots).
            self.outcome(Outcome(kind="completed", line=r.line, run=self.run, exit_code=0))
        stage = self.stage or "experiments"
        bs = blocks(r.text)
        self.cost += r.cost
        if r.session_cost is not None:
            self.session_cost = r.session_cost
        diff, added, removed = block_diff(bs)
        files = list(r.applied) or ([] if r.failed else sorted({b.file for b in bs}))
        done = stage == "experiments" and "ALL_COMPLETED" in r.text
        if stage == "experiments":
            if not self.open_attempt:
                self.new_attempt()
                step = "edit"
            else:
                self.step_n += 1
                step = "lint" if reflection else f"fix{self.step_n}"
            run, attempt = self.run, self.attempt
            if done:
                self.done_declared = True
        else:
            n = self.stage_steps[stage] = self.stage_steps.get(stage, 0) + 1
            step = ("lint" if reflection else "edit") + f"{n}"
            run = attempt = None
        self.emit(Exchange(stage=stage, run=run, attempt=attempt, step=step, prompt=self.prompt, response=r.text,
                           model=self.model, prompt_tokens=r.sent, completion_tokens=r.received, cost_usd=r.cost,
                           transcript_line=r.line))
        self.emit(EditApplied(stage=stage, run=run, attempt=attempt, step=step, commit="", files=files, diff=diff,
                              added=added, removed=removed, failed=r.failed, done=done))
        if bs and not r.failed:
            self.out.edits.append((stage, bs))
        self.prompt, self.reflection = "", False

    def outcome(self, o: Outcome) -> None:
        if self.stage != "experiments":
            self.emit(Message(level="warning", stage=self.stage,
                              text=f"run outcome outside the experiments: {o.kind} {o.error[:200]}"))
            return
        if o.run is not None and o.run != self.run:
            self.close_run(at_end=False)
            self.run, self.attempt, self.last_failure = o.run, 0, None
        if not self.open_attempt:
            self.new_attempt()  # an outcome with no reply before it: the log lacks the reply
        out_dir = f"run_{self.run}"
        self.emit(RunStarted(run=self.run, attempt=self.attempt, phase="full", out_dir=out_dir))
        if o.kind in ("failed", "timeout"):
            status = "failed" if o.kind == "failed" else "timeout"
            reasons = [_summary(o.error) if o.kind == "failed" else o.error]
            if o.exit_code is not None:
                reasons.append(f"exited with code {o.exit_code}")
            fin = RunFinished(run=self.run, attempt=self.attempt, phase="full", out_dir=out_dir, status=status,
                              reasons=reasons, exit_code=o.exit_code, timed_out=o.kind == "timeout",
                              feedback=Feedback(traceback=o.error))
            self.emit(fin)
            self.last_failure = fin
            self.open_attempt = False
            return
        data, err = o.results, o.results_error
        if data is None and err is None:
            data, err = self.find_results(self.run)
        if data is None and err is None and self.run in self.notes:
            data, line = self.notes[self.run]
            self.emit(Message(level="warning", stage="experiments",
                              text=f"run {self.run}: the log shows no results but the agent's notes.txt edit (line {line}); "
                                   f"those are judged (self-reported by the agent)"))
        if data is None and err is None:
            err = f"the log does not show the results of run {self.run}"
        verdict = validate(data, self.m, baseline=self.baseline, previous=self.previous_ok, load_error=err)
        reasons = list(verdict.reasons)
        if data is not None and verdict.status != "failed":
            extra = silent_failures(data, self.m)
            mine = _identity(data, self.m)
            earlier = ([(0, self.baseline)] if self.baseline else []) + sorted(self.out.results.items())
            for run, other in earlier:
                if mine and _identity(other, self.m) == mine:
                    what = "the baseline's" if run == 0 else f"run {run}'s"
                    extra.append(f"metrics {', '.join(mine)} are identical to {what}: the change did nothing (a silent failure)")
                    break
            extra = [r for r in extra if not any(_said(r, x) for x in reasons)]
            reasons += extra
            if extra and verdict.status == "ok":
                verdict = verdict.model_copy(update={"status": "degenerate", "reasons": reasons})
        self.emit(RunFinished(run=self.run, attempt=self.attempt, phase="full", out_dir=out_dir, status=verdict.status,
                              reasons=reasons, exit_code=0, metrics=verdict.metrics))
        if data is not None:
            self.out.results[self.run] = data
        self.emit(RunRecorded(run=self.run, status=verdict.status, attempts=self.attempt, reasons=reasons,
                              metrics=verdict.metrics if verdict.ok else {}))
        if verdict.ok:
            self.previous_ok = data
        self.run, self.attempt, self.open_attempt, self.last_failure = self.run + 1, 0, False, None
        if self.run > self.max_runs:
            self.start_stage("plots")  # the loop ends after its last run

    def iteration(self, it: Iteration) -> None:
        """`Currently on iteration I of run R`: a new attempt at run R is about to be asked for."""
        self.iterations = True
        self.start_stage("experiments")
        if it.run > self.run and self.open_attempt:
            # The loop only moves to the next run when the last attempt exited 0: it completed.
            self.outcome(Outcome(kind="completed", line=it.line, run=self.run, exit_code=0))
        elif it.run != self.run:
            self.close_run(at_end=False)
        if it.run != self.run:
            self.run, self.attempt, self.last_failure = it.run, 0, None
        self.open_attempt = False

    def feed(self, items: list[Item]) -> Built:
        if self.baseline is not None:  # every view reads the baseline from the journal, never from run_0/
            self.emit(BaselineRecorded(metrics=flatten(self.baseline), evaluation="self-reported",
                                       reasons=["imported: the log's baseline as its first prompt gave it"]))
        for it in items:  # the agent writes a run's results into its notes after the run, in a later reply
            if isinstance(it, Reply):
                for run, data in notes_results(it.text).items():
                    self.notes[run] = (data, it.line)
        for it in items:
            if isinstance(it, StageMark):
                if it.status == "started":
                    self.start_stage(it.stage)
                elif it.stage in ("*", self.stage):
                    self.finish_stage(it.status, it.text if it.status == "failed" else "")
            elif isinstance(it, Prompt):
                self.prompt, self.reflection = it.text, it.reflection
            elif isinstance(it, Reply):
                self.reply(it)
            elif isinstance(it, Outcome):
                self.outcome(it)
            elif isinstance(it, Iteration):
                self.iteration(it)
            elif isinstance(it, Note):
                self.emit(Message(level=it.level, text=it.text, stage=it.stage))
        if self.stage == "experiments":
            self.close_run(at_end=True)
        if self.stage is not None:
            self.emit(Message(level="info", stage=self.stage, text=f"the log ends during the {self.stage} stage"))
        if self.session_cost is not None and abs(self.session_cost - self.cost) >= 0.005:
            self.emit(Message(level="info", text=f"the log's last session cost is ${self.session_cost:.2f}; its per-message "
                                                 f"costs (rounded to cents by aider) sum to ${self.cost:.2f}"))
        return self.out
