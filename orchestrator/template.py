"""Experiment templates: a folder with `template.toml`, the code, and the `run_0` baseline."""

from __future__ import annotations

import ast
import fnmatch
import json
import re
import shlex
import string
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from .errors import TemplateError
from .objective import Objective
from .validation_message import first_problem

MANIFEST = "template.toml"
BASELINE_RUN = "run_0"


class Timeouts(BaseModel):
    """Per-template time limits (seconds). Settings and the command line may lower or raise them."""

    model_config = ConfigDict(extra="forbid")

    full_s: float = Field(7200, gt=0)
    smoke_s: float = Field(120, gt=0)
    plot_s: float = Field(600, gt=0)


class Smoke(BaseModel):
    """`[smoke]`: how a smoke run is kept short. `env` (the default): the script reads ORCHESTRATE_SMOKE=1 and
    runs a few steps. `args`: these arguments are appended to the command for the smoke run (a script's own
    short setting, `--num_train_iters 20`). `time`: the script runs as it is, and the smoke passes once it has
    run [timeouts] smoke_s without crashing (it is then stopped; its results are checked in the full run),
    or, when it ends sooner, on its results as usual. Never a silent second full run."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["env", "args", "time"] = "env"
    args: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _args_with_args(self) -> Smoke:
        if (self.mode == "args") != (self.args is not None):
            raise ValueError('args names the smoke arguments, with mode = "args" (and only then)')
        if self.args is not None:
            try:
                shlex.split(self.args)
            except ValueError as exc:
                raise ValueError(f"args: {exc}") from None
        return self


class Check(BaseModel):
    """A degenerate-result check on one metric. min/max: a number or an expression over final_info paths."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1)
    min: float | str | None = None
    max: float | str | None = None
    finite: bool = False
    reason: str | None = None
    smoke: bool = True

    @field_validator("min", "max")
    @classmethod
    def _parses(cls, v: float | str | None) -> float | str | None:
        if isinstance(v, str):
            try:
                ast.parse(v, mode="eval")
            except SyntaxError as exc:
                raise ValueError(f"bound {v!r} is not an expression: {exc.msg}") from None
        return v


class Compare(BaseModel):
    """Metrics that must move: identical to the baseline's or the previous run's means a no-op run."""

    model_config = ConfigDict(extra="forbid")

    keys: list[str] = Field(default_factory=list)


def _placeholders(command: str, allowed: tuple[str, ...]) -> str:
    """A command whose `{placeholders}` are only those allowed (named in the error otherwise)."""
    try:
        names = [f for _, f, _, _ in string.Formatter().parse(command) if f is not None]
    except ValueError as exc:
        raise ValueError(f"not a valid command template: {exc}") from None
    bad = sorted({n for n in names if n not in allowed})
    if bad:
        raise ValueError(f"unknown placeholder {{{bad[0]}}} (allowed: {', '.join('{' + a + '}' for a in allowed)})")
    return command


class Prepare(BaseModel):
    """`[prepare]`: the protected step that builds the data cache, once, before the first run: the only
    writer of the cache (experiments and evaluators see it read-only)."""

    model_config = ConfigDict(extra="forbid")

    command: str = Field(min_length=1)
    timeout_s: float = Field(3600, gt=0)

    @field_validator("command")
    @classmethod
    def _known(cls, v: str) -> str:
        return _placeholders(v, ("cache_dir",))


class Evaluate(BaseModel):
    """`[evaluate]`: the protected command that computes a run's metrics from what it saved, in its own
    sandbox. Reported and evaluated values agree when |r - e| <= atol + rtol * |e|."""

    model_config = ConfigDict(extra="forbid")

    command: str = Field(min_length=1)
    rtol: float = Field(0.05, ge=0)
    atol: float = Field(0.02, ge=0)
    compare_reported: list[str] | None = None  # None: every numeric key present in both
    timeout_s: float = Field(600, gt=0)

    @field_validator("command")
    @classmethod
    def _known(cls, v: str) -> str:
        return _placeholders(v, ("run_dir", "out", "cache_dir"))


class Resources(BaseModel):
    """`[resources]`: what one run of the template needs (default: the machine's safe share, machine.py)."""

    model_config = ConfigDict(extra="forbid")

    memory_mb: int | None = Field(None, ge=64)
    pids: int | None = Field(None, ge=8)
class Seeds(BaseModel):
    """`[seeds]`: how many seeds a full run gets and how the seed reaches the experiment (an environment
    variable `env`, and/or a `{seed}` placeholder in `command`). Smoke runs use the first seed only."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(1, ge=1, le=100)
    env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    values: list[int] | None = None  # default 0..count-1
    min_ok: int | None = Field(None, ge=1)  # a run is a result when at least min_ok seeds are ok (default: all)
    cpus: int = Field(1, ge=1, le=1024)  # CPU cores one seed's run needs (how many run at once locally)

    @model_validator(mode="after")
    def _consistent(self) -> Seeds:
        if self.values is not None and (len(self.values) < self.count or len(set(self.values)) != len(self.values)):
            raise ValueError(f"values must hold {self.count} distinct seeds (count)")
        if self.min_ok is not None and self.min_ok > self.count:
            raise ValueError(f"min_ok ({self.min_ok}) is more than count ({self.count})")
        return self


class Manifest(BaseModel):
    """`templates/<t>/template.toml`."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    description: str = ""
    command: str = Field(min_length=1)
    plot_command: str | None = None
    editable: list[str] = Field(min_length=1)
    protected: list[str] = Field(default_factory=list)
    results_file: str = "final_info.json"
    required_keys: list[str] = Field(default_factory=list)
    key_metrics: list[str] = Field(default_factory=list)
    goals: dict[str, Literal["max", "min"]] = Field(default_factory=dict)  # which way a key metric is better; absent: none
    figures: list[str] = Field(default_factory=lambda: ["*.png"])
    requirements: str = "requirements.txt"
    timeouts: Timeouts = Field(default_factory=Timeouts)
    checks: list[Check] = Field(default_factory=list)
    compare: Compare = Field(default_factory=Compare)
    prepare: Prepare | None = None
    evaluate: Evaluate | None = None
    unverified: bool = False  # true: the template knowingly checks nothing (every view says so)
    resources: Resources = Field(default_factory=Resources)
    seeds: Seeds = Field(default_factory=Seeds)
    smoke: Smoke = Field(default_factory=Smoke)
    objective: Objective | None = None  # what a search maximises or minimises (--strategy tree needs one)

    @field_validator("command", mode="before")
    @classmethod
    def _ai_scientist_form(cls, v: object) -> object:
        """AI Scientist's `--out_dir run_0`, `--out_dir=run_i` and `--out_dir=run_{i}` mean `--out_dir={out_dir}`."""
        return re.sub(r"--out_dir(?:=|\s+)run_(?:\d+|i|\{i\})(?=\s|$)", "--out_dir={out_dir}", v) if isinstance(v, str) else v

    @field_validator("command")
    @classmethod
    def _has_out_dir(cls, v: str) -> str:
        if "{out_dir}" not in v:
            raise ValueError("must contain {out_dir}")
        return _placeholders(v, ("out_dir", "seed"))

    @model_validator(mode="after")
    def _seed_reaches_the_experiment(self) -> Manifest:
        if self.seeds.count > 1 and not self.seeds_reach():
            raise ValueError(f"seeds: count is {self.seeds.count}, but the seed reaches the experiment neither by "
                             "[seeds] env nor by a {seed} placeholder in command")
        return self

    def seeds_reach(self) -> bool:
        """Whether the seed reaches the experiment (an env variable or `{seed}` in the command)."""
        return bool(self.seeds.env) or "{seed}" in self.command

    def command_for(self, out_dir: str, seed: int | None = None) -> str:
        """The command with its placeholders filled (`{seed}` with the seed, or 0 when there is none)."""
        return self.command.format(out_dir=out_dir, seed=0 if seed is None else seed)

    @field_validator("editable", "protected")
    @classmethod
    def _relative(cls, v: list[str]) -> list[str]:
        for p in v:
            if p.startswith("/") or ".." in Path(p).parts:
                raise ValueError(f"{p!r} must be a path inside the template")
        return v

    @field_validator("goals")
    @classmethod
    def _goals_of_key_metrics(cls, v: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        unknown = [k for k in v if k not in info.data.get("key_metrics", [])]
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not one of key_metrics")
        return v

    @model_validator(mode="after")
    def _objective_is_a_result(self) -> Manifest:
        if self.objective is not None:
            problem = objective_problem(self.objective, self.required_keys)
            if problem:
                raise ValueError(problem)
        return self

    @property
    def verifies_nothing(self) -> bool:
        """No required key, no check, no compare key and no evaluator: any results file (even `{}`) would pass."""
        return not (self.required_keys or self.checks or self.compare.keys or self.evaluate)


def objective_problem(objective: Objective, required_keys: list[str]) -> str | None:
    """Why an objective cannot score runs: its metric (or a constraint's) is not among the required keys, so
    a run could be a result without it."""
    if not required_keys:
        return None  # nothing is required: the run's own results decide (a run without the metric is unscored)
    missing = next((k for k in objective.read_keys() if k not in required_keys), None)
    if missing is not None:
        return f"objective: {missing!r} is not one of required_keys, so a result could lack it"
    return None


def policy_problem(m: Manifest) -> str | None:
    """What a new run refuses in a manifest that parses: one that verifies nothing without saying so, and an
    editable pattern that names a protected file (the agent would be told it may edit its own yardstick)."""
    for pat in m.editable:
        hit = next((p for p in m.protected if fnmatch.fnmatch(p, pat)), None)
        if hit is not None:
            return f"editable: {pat!r} names the protected file {hit!r}: a file is editable or protected, not both"
    if m.verifies_nothing and not m.unverified:
        return ("verifies nothing: no required_keys, no [[checks]], no [compare] keys and no [evaluate], so any "
                "results file would count as a result; add one, or set unverified = true to accept that")
    return None


class Template(BaseModel):
    """A loaded, checked template."""

    root: Path
    manifest: Manifest

    @property
    def requirements_file(self) -> Path | None:
        p = self.root / self.manifest.requirements
        return p if p.is_file() else None


def find_template(name_or_path: str, *, near: Path | None = None, ai_scientist: bool = False) -> Path:
    """Resolve a template name or path: a path as given, else `templates/<name>` near the idea, here, or in the checkout.
    With `ai_scientist`, a folder in AI Scientist's form (experiment.py, no template.toml) is found too."""
    cand = Path(name_or_path)
    if cand.is_dir() and ((cand / MANIFEST).is_file() or (ai_scientist and (cand / "experiment.py").is_file())):
        return cand.resolve()
    places = []
    if near is not None:
        places += [near / "templates", near.parent / "templates", near]
    places += [Path.cwd() / "templates", Path(__file__).resolve().parent.parent / "templates"]
    for base in places:
        if (base / name_or_path / MANIFEST).is_file():
            return (base / name_or_path).resolve()
    if cand.is_file():
        raise TemplateError(name_or_path, "a file, not a template: a template is a folder with a template.toml")
    if cand.is_dir() and (len(cand.parts) > 1 or cand.is_absolute()):
        if (cand / "experiment.py").is_file():
            raise TemplateError(name_or_path, f"a folder without {MANIFEST}, in AI Scientist's form: "
                                              f"`orchestrate adopt {cand}` writes one inferred from it")
        raise TemplateError(name_or_path, f"a folder without {MANIFEST}: not a template of either kind "
                                          f"(no {MANIFEST}, no experiment.py)")
    seen = list(dict.fromkeys([str(cand.absolute()), *(str(p / name_or_path) for p in places)]))
    raise TemplateError(name_or_path, f"unknown template: no {MANIFEST} in any of {', '.join(seen)}")


def load_template(root: Path) -> Template:
    """Read and check a template: its manifest parses, named files exist, the baseline has results."""
    root = Path(root)
    mpath = root / MANIFEST
    try:
        data = tomllib.loads(mpath.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TemplateError(mpath, "no such file (a template needs a template.toml)") from None
    except tomllib.TOMLDecodeError as exc:
        raise TemplateError(mpath, f"not valid TOML: {exc}") from None
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        raise TemplateError(mpath, first_problem(mpath, exc)) from None
    for rel in manifest.protected:
        if not (root / rel).exists():
            raise TemplateError(mpath, f"protected: {rel!r} does not exist in the template")
    for rel in manifest.editable:
        if rel != "notes.txt" and not any(c in rel for c in "*?[") and not (root / rel).exists():  # notes: made per run
            raise TemplateError(mpath, f"editable: {rel!r} does not exist in the template")
    for section, step in (("prepare", manifest.prepare), ("evaluate", manifest.evaluate)):
        for word in shlex.split(step.command) if step else []:
            if word.endswith(".py") and word not in manifest.protected:
                raise TemplateError(mpath, f"{section}.command: {word} must be one of the protected files "
                                           f"(the agent must not be able to change its own yardstick)")
    base = root / BASELINE_RUN / manifest.results_file
    if not base.is_file():
        raise TemplateError(base, "missing baseline: the template must ship run_0 with its results")
    try:
        baseline = json.loads(base.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise TemplateError(base, f"the baseline's results are not valid JSON ({str(exc).split(':')[0]})") from None
    if not isinstance(baseline, dict):
        raise TemplateError(base, "the baseline's results must be a JSON object")
    return Template(root=root.resolve(), manifest=manifest)
