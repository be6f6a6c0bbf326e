"""Import foreign logs (aider chat histories as the AI Scientist pipeline writes them) into a read-only
workspace whose journal `show` and `report` read like any other.

The results the log reports are judged by the orchestrator's own validation (`results.validate`) with
the template's manifest: the log's own template when given, else a built-in manifest for the AI
Scientist template the log names (sae_variants: `training_steps >= 1`, `final_loss` finite)."""

from __future__ import annotations

import json
import os
import re
import shutil
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import InputError, TemplateError
from ..events import WorkspaceCreated
from ..journal import Journal
from ..template import BASELINE_RUN, MANIFEST, Check, Manifest
from ..timeline import IMPORT_MANIFEST
from ..workspace import STATE_DIR, Workspace, new_folder
from . import aider_md, console
from .builder import Builder
from .items import Parsed

SLUG = re.compile(r"[^A-Za-z0-9_.-]+")

# AI Scientist's templates print their results as `{key: means}`; these are the checks that tell a run
# that did its work from one that did not. sae_variants: the reference log's template.
BUILTIN: dict[str, dict[str, Any]] = {
    "sae_variants": {
        "description": "AI Scientist's sae_variants template (built-in manifest for imports)",
        "required_keys": ["training_steps", "final_loss"],
        "key_metrics": ["training_steps", "final_loss"],
        "checks": [
            Check(path="training_steps", min=1, reason="no training step was executed"),
            Check(path="final_loss", finite=True, reason="the training loss must be a finite number"),
        ],
    },
}


def builtin_manifest(name: str | None) -> Manifest:
    """The built-in manifest for a template the log names; sae_variants' when it names none."""
    name = name or "sae_variants"
    spec = BUILTIN.get(name)
    base = {"name": name, "command": "python experiment.py --out_dir={out_dir}",
                "editable": ["experiment.py", "plot.py", "notes.txt"], "results_file": "final_info.json",
                "figures": ["*.png"]}
    if spec is None:
        base["description"] = "unknown AI Scientist template: only finiteness of the reported metrics is checked"
        return Manifest(**base)
    return Manifest(**base, **spec)


def manifest_from(template: Path) -> Manifest:
    """A template's manifest alone (an imported workspace has none of the template's files)."""
    path = template / MANIFEST if template.is_dir() else template
    try:
        return Manifest.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise TemplateError(path, "no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise TemplateError(path, f"not valid TOML: {exc}") from None
    except ValidationError as exc:
        from ..validation_message import first_problem

        raise TemplateError(path, first_problem(path, exc)) from None


def read_log(path: Path) -> str:
    """An AI Scientist log's text; InputError when the file is missing or unreadable."""
    if not path.is_file():
        raise InputError(path, "no such file")
    data = path.read_bytes()
    if b"\x00" in data[:8192]:
        raise InputError(path, "not a text log (binary data): expected an aider chat history or an AI Scientist console log")
    return data.decode("utf-8", errors="replace")


def parse(path: Path) -> Parsed:
    """Detect the log's form and parse it; an unknown form is an InputError (exit 2)."""
    text = read_log(path)
    if aider_md.looks_like(text):
        parsed = aider_md.parse(text)
    elif console.looks_like(text):
        parsed = console.parse(text, log_dir=path.parent)
    else:
        raise InputError(path, "unknown log form: neither an aider chat history ('# aider chat started at', '#### ' "
                               "prompts) nor an AI Scientist console log ('Currently on iteration I of run R', "
                               "'Run R failed with return code C', '*Starting Experiments*')")
    if not any(type(it).__name__ in ("Reply", "Outcome") for it in parsed.items):
        raise InputError(path, f"looks like an {parsed.form} log but holds no agent reply or run outcome")
    return parsed


def _name(parsed: Parsed, path: Path) -> str:
    name = parsed.idea.name
    if not name:
        stem = re.sub(r"(_aider|\.aider\.chat\.history)$", "", path.stem)
        stem = re.sub(r"^\d{8}_\d{6}_", "", stem)
        name = stem if stem not in ("log", "console", "console_log", "") else (parsed.idea.title or "imported")
    name = SLUG.sub("_", name).strip("_.-")[:60] or "imported"
    return name if name[0].isalnum() else f"i{name}"


def initial_notes(parsed: Parsed) -> str | None:
    """The notes.txt AI Scientist writes before the agent's first edit (launch_scientist.do_idea)."""
    i = parsed.idea
    if not (i.title and i.experiment):
        return None
    base = i.baseline if i.baseline is not None else {}
    return (f"# Title: {i.title}\n# Experiment description: {i.experiment}\n## Run 0: Baseline\n"
            f"Results: {base}\nDescription: Baseline results.\n")


def replay_notes(start: str | None, edits: list[tuple[str, list]]) -> tuple[str | None, int, int]:
    """notes.txt rebuilt by applying the agent's notes edits in order; (text, applied, skipped)."""
    if start is None:
        return None, 0, 0
    text, applied, skipped = start, 0, 0
    for _stage, bs in edits:
        for b in bs:
            if Path(b.file).name != "notes.txt":
                continue
            if b.search and b.search in text:
                text = text.replace(b.search, b.replace, 1)
                applied += 1
            elif not b.search.strip():
                text += b.replace
                applied += 1
            else:
                skipped += 1
    return text, applied, skipped


def import_log(path: Path, *, sandbox: Path, template: Path | None = None, model: str | None = None) -> Workspace:
    """Parse a foreign log and write it as a read-only workspace under `sandbox`."""
    path = Path(path)
    parsed = parse(path)
    idea = parsed.idea
    manifest = manifest_from(template) if template is not None else builtin_manifest(idea.template)
    name = _name(parsed, path)
    builder = Builder(manifest, model=model or idea.model or "unknown (imported)", baseline=idea.baseline,
                      find_results=lambda run: console._results_file(path.parent, run), max_runs=idea.max_runs or 5)
    built = builder.feed(parsed.items)

    final, tmp = new_folder(sandbox, f"imported_{name}")
    try:
        state = tmp / STATE_DIR
        state.mkdir(parents=True)
        shutil.copy2(path, state / f"source{path.suffix or '.txt'}")
        idea_dict = {
            "name": name, "title": idea.title or name.replace("_", " "), "template": manifest.name,
            "experiment": idea.experiment or "(not in the log)", "max_runs": idea.max_runs,
        }
        (state / "idea.json").write_text(json.dumps(idea_dict, indent=2))
        (state / IMPORT_MANIFEST).write_text(json.dumps({
            "form": parsed.form, "key_metrics": manifest.key_metrics, "results_file": manifest.results_file,
            "figures": manifest.figures, "manifest": manifest.model_dump(mode="json"), "started": idea.started,
        }, indent=2, default=str))
        if idea.baseline is not None:
            (tmp / BASELINE_RUN).mkdir()
            (tmp / BASELINE_RUN / manifest.results_file).write_text(json.dumps(idea.baseline, indent=2, default=str))
        for run, data in built.results.items():
            (tmp / f"run_{run}").mkdir(exist_ok=True)
            (tmp / f"run_{run}" / manifest.results_file).write_text(json.dumps(data, indent=2, default=str))
        notes, applied, skipped = replay_notes(initial_notes(parsed), built.edits)
        if notes is not None and applied:
            (tmp / "notes.txt").write_text(notes)
        journal = Journal(state / "journal.jsonl")
        journal.append(WorkspaceCreated(
            idea=idea_dict, idea_path=str(path.resolve()), template=manifest.name, template_root=str(template or ""),
            limits={"max_runs": idea.max_runs} if idea.max_runs else {}, agent=f"imported:{parsed.form}",
            isolation="none", imported_from=str(path.resolve()),
        ))
        from ..events import Message

        began = f" (the log began {idea.started})" if idea.started else ""
        not_applicable = f", {skipped} not applicable" if skipped else ""
        rebuilt = f"; notes.txt rebuilt from {applied} edit(s){not_applicable}" if applied else ""
        journal.append(Message(text=f"imported {parsed.form} log {path.name}{began}; results validated with the "
                                    f"{manifest.name!r} manifest{rebuilt}"))
        for e in built.events:
            journal.append(e)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Workspace(final)
