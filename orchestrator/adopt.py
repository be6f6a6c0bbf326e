"""Adopting an AI Scientist template folder as it is: the manifest inferred when `template.toml` is missing.

An AI Scientist template is a folder with `experiment.py` (taking `--out_dir`), usually `plot.py`,
`prompt.json`, `seed_ideas.json`, `ideas.json` and `latex/template.tex`, and no manifest. Its results
file is `final_info.json` in one of two shapes, per dataset:
`{ds: {"means": {...}, "stds"|"stderrs": {...}}}` (2d_diffusion and most) or, grokking's,
`{ds: {"means": {k_mean}, "stderrs": {k_stderr}, "final_info_dict": {k: [per seed]}}}`.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from .errors import TemplateError
from .readmodel import PER_SEED
from .template import BASELINE_RUN, MANIFEST, Check, Compare, Manifest, Smoke, Template, load_template

EXPERIMENT = "experiment.py"
PLOT = "plot.py"
NOTES = "notes.txt"
COMMAND = "python experiment.py --out_dir={out_dir}"  # AI Scientist's launcher: --out_dir=run_{i}
SPREADS = ("stds", "stderrs")
_NOT_SHIPPED = {"__pycache__", ".git", ".ipynb_checkpoints", MANIFEST}


PROMPT = "prompt.json"  # {"system": ..., "task_description": ...}: AI Scientist's framing of the agent
SHIPPED_CAP = 1_000_000  # characters of a shipped file read for a prompt or the paper


class ResultsMap(BaseModel):
    """What an AI Scientist results file maps to: dotted metric paths into final_info.json."""

    key_metrics: list[str] = Field(default_factory=list)  # every mean, checked finite
    compare: list[str] = Field(default_factory=list)  # the means less the time fields
    spreads: dict[str, str] = Field(default_factory=dict)  # mean path -> its std/stderr path
    seed_values: dict[str, list[float]] = Field(default_factory=dict)  # mean path -> per-seed values


def is_ai_scientist(root: Path) -> bool:
    """A folder in AI Scientist's form: `experiment.py` and no `template.toml`."""
    return root.is_dir() and (root / EXPERIMENT).is_file() and not (root / MANIFEST).is_file()


def kind_of(root: Path) -> str:
    """'manifest' (ours) or 'ai-scientist'; a folder of neither kind is a TemplateError in one line."""
    root = Path(root)
    if not root.is_dir():
        raise TemplateError(root, "no such folder")
    if (root / MANIFEST).is_file():
        return "manifest"
    if (root / EXPERIMENT).is_file():
        return "ai-scientist"
    raise TemplateError(root, f"not a template of either kind: no {MANIFEST} (ours) and no {EXPERIMENT} "
                              f"taking --out_dir (AI Scientist's)")


def is_time(key: str) -> bool:
    """A time field (training_time, total_train_time, inference_time_mean): left out of compare."""
    return "time" in key.rsplit(".", 1)[-1].lower()


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _mean_for(spread_key: str, means: dict[str, Any]) -> str | None:
    """The mean a std/stderr key belongs to: the same name, or `k_std(err)` -> `k` or `k_mean`."""
    base = spread_key
    for suffix in ("_stderr", "_std"):
        if spread_key.endswith(suffix):
            base = spread_key[: -len(suffix)]
            break
    for cand in (spread_key, base, f"{base}_mean"):
        if cand in means:
            return cand
    return None


def map_results(info: Any, path: Path | str = "final_info.json") -> ResultsMap:
    """The metrics of an AI Scientist results file; a file of neither shape is a TemplateError in one line."""
    shape = ("{dataset: {\"means\": {...}, \"stds\" or \"stderrs\": {...}}} or {dataset: {\"means\": {...}, "
             "\"final_info_dict\": {key: [per seed]}}}")
    if not isinstance(info, dict) or not info:
        raise TemplateError(path, f"results of neither AI Scientist shape: expected {shape}")
    out = ResultsMap()
    for ds, block in info.items():
        means = block.get("means") if isinstance(block, dict) else None
        if not isinstance(means, dict) or not means or not all(_number(v) for v in means.values()):
            raise TemplateError(path, f"results of neither AI Scientist shape: {ds!r} has no \"means\" dict of "
                                      f"numbers (expected {shape})")
        for k in means:
            key = f"{ds}.means.{k}"
            out.key_metrics.append(key)
            if not is_time(k):
                out.compare.append(key)
        for spread in SPREADS:
            for s in (block.get(spread) or {}) if isinstance(block.get(spread), dict) else {}:
                m = _mean_for(s, means)
                if m is not None:
                    out.spreads[f"{ds}.means.{m}"] = f"{ds}.{spread}.{s}"
        per_seed = block.get(PER_SEED)
        if isinstance(per_seed, dict):
            for k, vals in per_seed.items():
                m = k if k in means else f"{k}_mean" if f"{k}_mean" in means else None
                if m is not None and isinstance(vals, list) and vals and all(_number(v) for v in vals):
                    out.seed_values[f"{ds}.means.{m}"] = [float(v) for v in vals]
    return out


def read_results(path: Path) -> ResultsMap:
    """map_results of a results file on disk (one line when it is not JSON)."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TemplateError(path, f"not a readable JSON results file ({exc})") from None
    return map_results(info, path)


def _shipped(root: Path, editable: list[str]) -> list[str]:
    """Every file the template ships beside the editable ones: the protected files (runs and caches aside)."""
    out = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if (rel.as_posix() in editable or rel.parts[0].startswith("run_") or p.is_symlink() or not p.is_file()
                or any(part in _NOT_SHIPPED or part.endswith(".pyc") for part in rel.parts)):
            continue
        out.append(rel.as_posix())
    return out


def infer_manifest(root: Path, results: ResultsMap | None = None) -> Manifest:
    """The manifest of an AI Scientist folder. Without results (no baseline yet) the metrics are left empty."""
    root = Path(root)
    if kind_of(root) != "ai-scientist":
        raise TemplateError(root / MANIFEST, "has a template.toml already: it is the manifest (nothing to infer)")
    editable = [EXPERIMENT] + ([PLOT] if (root / PLOT).is_file() else []) + [NOTES]
    results = results or ResultsMap()
    return Manifest(
        name=root.resolve().name,
        description=f"adopted from the AI Scientist template {root.resolve().name}",
        command=COMMAND,
        plot_command=f"python {PLOT}" if (root / PLOT).is_file() else None,
        editable=editable,
        protected=_shipped(root, editable) + [MANIFEST],
        results_file="final_info.json",
        required_keys=list(results.key_metrics),
        key_metrics=list(results.key_metrics),
        checks=[Check(path=k, finite=True, reason="a mean must be a finite number") for k in results.key_metrics],
        compare=Compare(keys=list(results.compare)),
        smoke=infer_smoke(root),
    )


def infer_smoke(root: Path) -> Smoke:
    """`env` when experiment.py reads ORCHESTRATE_SMOKE; else `time` (AI Scientist's scripts have no short mode:
    the smoke passes once the script has run a set time without crashing, derived from the baseline's wall time)."""
    text = (Path(root) / EXPERIMENT).read_text(encoding="utf-8", errors="replace")
    return Smoke(mode="env") if "ORCHESTRATE_SMOKE" in text else Smoke(mode="time")


def with_baseline_limits(m: Manifest, b: Baseline) -> Manifest:
    """The manifest's time limits from the baseline's wall time: the full limit, and a time smoke's set time."""
    t = {"full_s": b.full_timeout_s()}
    if m.smoke.mode == "time":
        t["smoke_s"] = b.smoke_time_s()
    return m.model_copy(update={"timeouts": m.timeouts.model_copy(update=t)})


def infer(root: Path) -> tuple[Manifest, ResultsMap | None]:
    """The manifest with its metrics read from the baseline `run_0/final_info.json` when there is one."""
    base = Path(root) / BASELINE_RUN / "final_info.json"
    results = read_results(base) if base.is_file() else None
    return infer_manifest(root, results), results


def shipped_text(ws: Any, rel: str) -> str | None:
    """A protected file of the workspace's template as shipped: its pristine copy under .orchestrate/, which
    the agent's code never sees nor writes. None when the template does not protect `rel` (so a file the
    agent's code wrote is never taken for the template's), or it is not readable text."""
    from .errors import WorkspaceError
    from .paths import readable

    try:
        protected = ws.manifest.protected
    except WorkspaceError:  # an imported workspace: no manifest
        return None
    if rel not in protected:
        return None
    path = readable(ws.state / "pristine", rel)
    try:
        text = path.read_text(encoding="utf-8") if path is not None and path.is_file() else None
    except (OSError, UnicodeDecodeError):
        return None
    return text[:SHIPPED_CAP] if text is not None else None


class TemplatePrompt(BaseModel):
    """`prompt.json`: AI Scientist's system prompt and task description for the template."""

    system: str = ""
    task_description: str = ""


def parse_prompt(text: str | None) -> TemplatePrompt | None:
    """prompt.json's two strings (each capped at 8,000 characters); None when absent or of another shape."""
    try:
        data = json.loads(text) if text else None
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    got = {k: data[k].strip()[:8000] for k in ("system", "task_description") if isinstance(data.get(k), str)}
    return TemplatePrompt(**got) if any(got.values()) else None


def template_prompt(ws: Any) -> TemplatePrompt | None:
    """The workspace template's prompt.json, as shipped (shipped_text)."""
    return parse_prompt(shipped_text(ws, PROMPT))


def launcher_notes(title: str, experiment: str, baseline: dict[str, Any]) -> str:
    """`notes.txt` as AI Scientist's launcher starts it: the idea's title and experiment, then run 0's results."""
    means = {ds: block["means"] for ds, block in baseline.items() if isinstance(block, dict) and "means" in block}
    return (f"# Title: {title}\n# Experiment description: {experiment}\n## Run 0: Baseline\n"
            f"Results: {means}\nDescription: Baseline results.\n")


def workspace_files(template: Template, idea: Any) -> dict[str, str]:
    """What an adopted template's workspace gets before its first run: `notes.txt` as AI Scientist's launcher
    writes it (the idea's title and experiment, the baseline's results), unless the template ships one."""
    if (template.root / NOTES).exists():
        return {}
    base = json.loads((template.root / BASELINE_RUN / template.manifest.results_file).read_text(encoding="utf-8"))
    return {NOTES: launcher_notes(idea.title, idea.experiment, base)}


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"{v} has no TOML form here")
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a TOML basic string
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(type(v).__name__)


def manifest_toml(m: Manifest, results: ResultsMap | None = None) -> str:
    """`template.toml` text for a manifest, with comments saying what was inferred and how to change it."""
    d = m.model_dump(exclude_none=True)
    lines = ["# Inferred by `orchestrate adopt` from an AI Scientist template; edit freely.",
             "# command: AI Scientist's launcher form; editable: what the agent may change; protected: the rest.",
             "# key_metrics: every mean in run_0/final_info.json, each checked finite; compare leaves out time fields."]
    if results is None:
        lines.append(f"# No {BASELINE_RUN}/final_info.json yet: run `python experiment.py --out_dir={BASELINE_RUN}` "
                     "here and adopt again to fill the metrics.")
    elif results.spreads:
        lines.append("# Spreads paired with their means: " + ", ".join(f"{k} ± {v}" for k, v in results.spreads.items()))
    for k in ("name", "description", "command", "plot_command", "editable", "protected", "results_file",
              "required_keys", "key_metrics", "figures", "requirements"):
        if k in d:
            lines.append(f"{k} = {_toml_value(d[k])}")
    lines += ["", "[timeouts]"] + [f"{k} = {_toml_value(v)}" for k, v in d["timeouts"].items()]
    for c in d.get("checks", []):
        lines += ["", "[[checks]]"] + [f"{k} = {_toml_value(v)}" for k, v in c.items() if v is not None]
    lines += ["", "[compare]", f"keys = {_toml_value(d['compare']['keys'])}"]
    lines += ["", "# time: the script ignores ORCHESTRATE_SMOKE; a smoke passes once it has run [timeouts] smoke_s",
              "# without crashing (then stopped). Or mode = \"args\" with args = \"--your_short_flag 10\"; env: it reads",
              "# ORCHESTRATE_SMOKE=1.", "[smoke]"] + [f"{k} = {_toml_value(v)}" for k, v in d["smoke"].items() if v is not None]
    return "\n".join(lines) + "\n"


def write_manifest(root: Path) -> tuple[Path, str]:
    """`orchestrate adopt DIR`: write the inferred manifest as DIR/template.toml (never over one)."""
    root = Path(root)
    if kind_of(root) == "manifest":
        raise TemplateError(root / MANIFEST, "exists already: adopt writes a template.toml only where there is none "
                                             "(edit it, or remove it to infer it again)")
    manifest, results = infer(root)
    text = manifest_toml(manifest, results)
    target = root / MANIFEST
    target.write_text(text, encoding="utf-8")
    return target, text


class Baseline(BaseModel):
    """The cached baseline of an adopted template: `run_0` made by running the unmodified experiment."""

    key: str  # the template's content hash
    run_dir: Path  # <cache>/baselines/<key>/run_0
    wall_s: float
    results: ResultsMap
    isolation: str = "none"  # the sandbox it ran under
    cached: bool = False  # found in the cache, not run now

    def full_timeout_s(self) -> float:
        """A full run's limit from the baseline's wall time: three times it plus a minute for the agent's change."""
        return round(3 * self.wall_s + 60, 1)

    def smoke_time_s(self) -> float:
        """A time smoke's set time: a tenth of the baseline's wall time, 10 s at least and 60 s at most (a
        script shorter than that runs to its end, and its results are checked as a smoke's)."""
        return float(min(60, max(10, round(self.wall_s / 10))))


def content_hash(root: Path) -> str:
    """sha256 over the template's shipped files (names and bytes; runs, caches and a manifest left out)."""
    h = hashlib.sha256()
    root = Path(root)
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if rel.parts[0].startswith("run_") or any(part in _NOT_SHIPPED for part in rel.parts) or p.is_symlink():
            continue
        if p.is_file():
            h.update(rel.as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def make_baseline(root: Path, python: str, *, cache: Path, isolation: str = "none",
                  timeout_s: float = 7200) -> Baseline:
    """`run_0` for an AI Scientist folder: the unmodified experiment run once in a copy of the folder, under
    the runner (and sandbox) every run uses, its results checked for shape and validated, then cached by the
    template's content hash. The user's folder is only read. A baseline that fails is a TemplateError, not cached."""
    from .results import load_results, validate
    from .runner import RunSpec, command_argv, run

    root = Path(root)
    key = content_hash(root)
    home = Path(cache) / "baselines" / key
    record = home / "baseline.json"
    if record.is_file() and (home / BASELINE_RUN / "final_info.json").is_file():
        data = json.loads(record.read_text(encoding="utf-8"))
        return Baseline(key=key, run_dir=home / BASELINE_RUN, wall_s=data["wall_s"], isolation=data["isolation"],
                        results=read_results(home / BASELINE_RUN / "final_info.json"), cached=True)
    work = Path(cache) / "baselines" / f"{key}.work"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(root, work, symlinks=True,
                    ignore=lambda _d, names: [n for n in names if n in _NOT_SHIPPED or n.startswith("run_")])
    rec = run(RunSpec(argv=command_argv(COMMAND, python, out_dir=BASELINE_RUN), cwd=work, log_dir=work / ".logs",
                      timeout_s=timeout_s, isolation=isolation, key="adopt/run_0"))
    if not rec.ok:
        tail = Path(rec.stderr_path).read_text(errors="replace").strip().splitlines()[-1:] if rec.stderr_path else []
        raise TemplateError(root / EXPERIMENT, f"the unmodified experiment failed as the baseline "
                                               f"({rec.limit_detail or f'exit {rec.exit_code}'}): {' '.join(tail)}")
    results_path = work / BASELINE_RUN / "final_info.json"
    info, err = load_results(results_path)
    if info is None:
        raise TemplateError(root / EXPERIMENT, f"the baseline wrote no usable results: {err}")
    results = map_results(info, results_path)
    verdict = validate(info, infer_manifest(root, results))
    if not verdict.ok:
        raise TemplateError(results_path, f"the baseline is not a result: {'; '.join(verdict.reasons)}")
    home.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(home / BASELINE_RUN, ignore_errors=True)
    shutil.move(str(work / BASELINE_RUN), home / BASELINE_RUN)
    record.write_text(json.dumps({"wall_s": rec.wall_s, "isolation": rec.isolation}), encoding="utf-8")
    shutil.rmtree(work, ignore_errors=True)
    return Baseline(key=key, run_dir=home / BASELINE_RUN, wall_s=rec.wall_s, isolation=rec.isolation, results=results)


def cached_baseline(root: Path, *, cache: Path) -> Baseline | None:
    """The cached baseline of this exact template content, if one was made."""
    home = Path(cache) / "baselines" / content_hash(root)
    record, results = home / "baseline.json", home / BASELINE_RUN / "final_info.json"
    if not (record.is_file() and results.is_file()):
        return None
    data = json.loads(record.read_text(encoding="utf-8"))
    return Baseline(key=home.name, run_dir=home / BASELINE_RUN, wall_s=data["wall_s"], isolation=data["isolation"],
                    results=read_results(results), cached=True)


def provisional(root: Path, *, cache: Path) -> Template:
    """The template `check` and `prepare` see for an AI Scientist folder: the inferred manifest (its metrics from
    the cached baseline when there is one), rooted at the user's folder. Nothing is run or written."""
    b = cached_baseline(root, cache=cache)
    m = infer_manifest(root, b.results if b else None)
    if b is not None:
        m = with_baseline_limits(m, b)
    return Template(root=Path(root).resolve(), manifest=m)


def summary(m: Manifest, b: Baseline) -> str:
    """What was inferred, in a few lines for the user."""
    spreads = len(b.results.spreads)
    return (f"adopted the AI Scientist template {m.name} (no template.toml; inferred, written into the workspace only):\n"
            f"  command {m.command}; plot {m.plot_command or '(none)'}; editable {', '.join(m.editable)}; "
            f"protected {', '.join(p for p in m.protected if p != MANIFEST)}\n"
            f"  key metrics {len(m.key_metrics)} (checked finite, {spreads} with their spread), compare "
            f"{', '.join(m.compare.keys) or '(none)'}; full limit {m.timeouts.full_s:g} s from the baseline's "
            f"{b.wall_s:.1f} s{' (cached)' if b.cached else ''}\n"
            f"  smoke: {_smoke_words(m)}\n"
            f"  `orchestrate adopt FOLDER` writes this as a template.toml you can edit")


def _smoke_words(m: Manifest) -> str:
    if m.smoke.mode == "time":
        return (f"the script ignores ORCHESTRATE_SMOKE: a smoke run passes once it has run {m.timeouts.smoke_s:g} s "
                "without crashing (then stopped); one that ends sooner is checked on its results")
    if m.smoke.mode == "args":
        return f"the command with {m.smoke.args}"
    return "ORCHESTRATE_SMOKE=1 (the script reads it)"


def adopted_template(root: Path, python: str, *, cache: Path, isolation: str, log=print) -> Template:
    """The template a run uses for an AI Scientist folder: a copy of the folder in the cache with the inferred
    template.toml and the cached baseline's run_0 (made now if it is not cached). The user's folder is only read."""
    root = Path(root)
    b = make_baseline(root, python, cache=cache, isolation=isolation)
    m = with_baseline_limits(infer_manifest(root, b.results), b)
    dest = Path(cache) / "adopted" / b.key
    if not (dest / MANIFEST).is_file():
        tmp = dest.with_name(f"{b.key}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(root, tmp, symlinks=True,
                        ignore=lambda _d, names: [n for n in names if n in _NOT_SHIPPED or n.startswith("run_")])
        shutil.copytree(b.run_dir, tmp / BASELINE_RUN)
        (tmp / MANIFEST).write_text(manifest_toml(m, b.results), encoding="utf-8")
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
    log(summary(m, b))
    return load_template(dest)
