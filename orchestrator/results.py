"""Is a run a result? `validate` answers ok, failed or degenerate, with reasons the agent can act on.

The catalogue (`Verdict.kinds` names each reason's entry, in order):

    failed      results-missing    the results file was not written
                results-not-json   it is not JSON, or not a JSON object
                key-missing        a required key is absent
    degenerate  not-finite         a metric is NaN or infinite (diverged, or never computed)
                check              a manifest check failed: zero steps executed (`steps_executed >= 1`),
                                   a metric outside its declared range, a metric that is not a number
                same-as-baseline   the compared metrics equal the baseline's: the change did nothing
                same-as-previous   they equal the previous result's: the change did nothing
                code-unchanged     the code is identical to the previous run's: no edit was applied
                                   (`code_unchanged`, judged by execution.judge from the workspace history)
    misreported misreported        a metric the run reported about itself disagrees with what the template's
                                   evaluator computed from the run's saved artifacts beyond the manifest's
                                   tolerance (`misreports`; the evaluated value is the run's metric, the
                                   reported one is kept as `reported.<key>`)
    failed      evaluator-failed   the template's evaluator crashed or wrote no JSON object (execution.judge)

When the template has an `[evaluate]` step, the metrics judged are the run's results file overlaid by
the evaluated ones (`overlay`); comparisons with the baseline and the previous run read the journal's
validated metrics, never a results file on disk.

Process-level verdicts (crash, timeout, a limit, a tampered yardstick) are execution.judge's.
"""

from __future__ import annotations

import ast
import json
import math
import operator
import shlex
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from .readmodel import PER_SEED
from .template import Check, Evaluate, Manifest

Status = Literal["ok", "failed", "degenerate", "misreported", "tampered", "timeout", "interrupted"]
_MISSING = object()


class Verdict(BaseModel):
    status: Status
    reasons: list[str] = Field(default_factory=list)
    metrics: dict[str, Any] = Field(default_factory=dict)  # flattened numeric metrics
    kinds: list[str] = Field(default_factory=list)  # the catalogue entry of each reason, in order
    eval_wall_s: float = 0.0  # the evaluator's wall time (execution.judge), 0 when there was none

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def get_path(data: Any, dotted: str) -> Any:
    """`a.b.c` in nested dicts, or _MISSING."""
    cur = data
    for part in dotted.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            return _MISSING
    return cur


MAX_LISTED_SEEDS = 100


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts to `a.b` keys, numbers (and bools) only. AI Scientist's per-seed lists
    (`ds.final_info_dict.k: [per seed]`) are kept as `ds.final_info_dict.k.0`, `.1`, ... (at most 100), so the
    journal holds a template's own seeds (readmodel.fold_listed_seeds); other lists are left out."""
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for k, v in data.items():
            out.update(flatten(v, f"{prefix}{k}."))
    elif isinstance(data, list) and prefix.split(".")[-3:-2] == [PER_SEED]:
        for i, v in enumerate(data[:MAX_LISTED_SEEDS]):
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out[f"{prefix}{i}"] = v
    elif isinstance(data, bool):
        pass
    elif isinstance(data, (int, float)):
        out[prefix[:-1]] = data
    return out


_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def evaluate(expr: float | str, data: Any) -> float:
    """A bound: a number, or arithmetic over dotted paths of final_info (`0.5 * config.d_sae`)."""
    if isinstance(expr, (int, float)):
        return float(expr)

    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        if isinstance(node, (ast.Name, ast.Attribute)):
            value = get_path(data, ast.unparse(node))
            if value is _MISSING or not isinstance(value, (int, float)):
                raise ValueError(f"{ast.unparse(node)} is not a number in the results")
            return float(value)
        raise ValueError(f"unsupported expression {ast.unparse(node)!r}")

    return ev(ast.parse(expr, mode="eval"))


def bound_problem(checks: list[Check], baseline: dict[str, Any]) -> str | None:
    """The first check bound that does not evaluate to a finite number against the baseline's results (a
    division by zero, a path the results lack, an unsupported expression): a template error, found before
    any run rather than blamed on the agent's."""
    for i, check in enumerate(checks, 1):
        for side in ("min", "max"):
            expr = getattr(check, side)
            if not isinstance(expr, str):
                continue
            try:
                value = evaluate(expr, baseline)
            except ZeroDivisionError:
                why = "divides by zero"
            except (ValueError, OverflowError, SyntaxError, TypeError) as exc:
                why = str(exc)
            else:
                if math.isfinite(value):
                    continue
                why = f"is {value}, not a finite number"
            return f"checks[{i}] ({check.path}): {side} = {expr!r} against the baseline's results: {why}"
    return None


def _check(check: Check, info: dict[str, Any]) -> str | None:
    value = get_path(info, check.path)
    why = f" ({check.reason})" if check.reason else ""
    if value is _MISSING:
        return f"{check.path} is missing{why}"
    if value is None:
        return f"{check.path} is null{why}: the run must compute it"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{check.path} is {value!r}, not a number{why}"
    if check.finite and not math.isfinite(value):
        return f"{check.path} is {value}, not finite{why}"
    try:
        if check.min is not None and not value >= evaluate(check.min, info):
            return f"{check.path} = {value:g} is below its minimum {check.min}{why}"
        if check.max is not None and not value <= evaluate(check.max, info):
            return f"{check.path} = {value:g} is above its maximum {check.max}{why}"
    except (ValueError, ZeroDivisionError) as exc:
        return f"{check.path}: cannot evaluate its bound: {exc}"
    return None


def load_results(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(data, None) or (None, why it is not a result)."""
    if not path.is_file():
        return None, (f"the results file {path.name} was not written in {path.parent.name}/: the experiment "
                      f"must write it (through the harness) before it exits")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return None, f"{path.name} is not valid JSON ({exc}): write it with json.dump of a dict of metrics"
    if not isinstance(data, dict):
        return None, f"{path.name} must hold a JSON object (a dict of metrics), not {type(data).__name__}"
    return data, None


def _kind_of_load_error(err: str | None) -> str:
    return "results-missing" if err and "was not written" in err else "results-not-json"


def _same(a: dict[str, Any], b: dict[str, Any] | None, keys: list[str]) -> bool:
    """`a` and `b` (nested results or flattened metrics) agree on every key."""
    if not b or not keys:
        return False
    fa, fb = flatten(a), flatten(b)
    return all(k in fa and fa[k] == fb.get(k, _MISSING) for k in keys)


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        cur = out
        *parents, last = key.split(".")
        for part in parents:
            cur = cur.setdefault(part, {})
        cur[last] = value
    return out


def _deep_update(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in new.items():
        out[k] = _deep_update(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def overlay(info: dict[str, Any], evaluated: dict[str, Any]) -> dict[str, Any]:
    """The run's results overlaid by the evaluated metrics; what the run said of each evaluated key is
    kept under `reported` (a `reported` of the run's own is replaced)."""
    own = flatten(info)
    merged = _deep_update({k: v for k, v in info.items() if k != "reported"}, evaluated)
    merged["reported"] = _nest({k: own[k] for k in flatten(evaluated) if k in own})
    return merged


def agrees(reported: float, evaluated: float, *, rtol: float, atol: float) -> bool:
    if not (math.isfinite(reported) and math.isfinite(evaluated)):
        return reported == evaluated or (math.isnan(reported) and math.isnan(evaluated))
    return abs(reported - evaluated) <= atol + rtol * abs(evaluated)


def misreports(info: dict[str, Any], evaluated: dict[str, Any], spec: Evaluate) -> list[str]:
    """Reasons, one per key the run reported differently from its evaluation (catalogue: misreported)."""
    own, ev = flatten(info), flatten(evaluated)
    keys = spec.compare_reported if spec.compare_reported is not None else [k for k in ev if k in own]
    out = []
    for k in keys:
        r, e = own.get(k), ev.get(k)
        if r is None or e is None or agrees(float(r), float(e), rtol=spec.rtol, atol=spec.atol):
            continue
        out.append(f"{k}: the run reported {r:.6g}, but the evaluator computes {e:.6g} from the artifacts it saved "
                   f"(tolerance {spec.atol:g} + {spec.rtol:g}·|evaluated|): every metric is recomputed in a sealed "
                   f"process, so report what the trained model really does (and save it where the evaluator reads it)")
    return out


def code_files(manifest: Manifest) -> list[str]:
    """The editable files that are the experiment's code: not notes or docs, not the plot script."""
    plot = next((p for p in shlex.split(manifest.plot_command or "") if p.endswith(".py")), None)
    return [f for f in manifest.editable if f != plot and not f.endswith((".txt", ".md", ".rst", ".tex"))]


def code_unchanged(files: list[str], previous_run: int) -> str:
    """The reason for a run whose code is identical to an earlier run's (catalogue: code-unchanged)."""
    return (f"the code ({', '.join(files)}) is identical to run {previous_run}'s: no edit was applied, so this run "
            f"only repeats run {previous_run} — change the code before the next run")


def validate(
    info: dict[str, Any] | None,
    manifest: Manifest,
    *,
    baseline: dict[str, Any] | None = None,
    previous: dict[str, Any] | None = None,
    smoke: bool = False,
    load_error: str | None = None,
) -> Verdict:
    """The verdict on one run's results. Failed: no usable results. Degenerate: results that show the
    run did not do its work (no steps, NaN, out of range, identical to the baseline or the previous run)."""
    if info is None:
        return Verdict(status="failed", reasons=[load_error or "no results"], kinds=[_kind_of_load_error(load_error)])
    reasons: list[str] = []
    kinds: list[str] = []

    def add(kind: str, reason: str) -> None:
        if reason not in reasons:
            reasons.append(reason)
            kinds.append(kind)

    for key in manifest.required_keys:
        if get_path(info, key) is _MISSING:
            add("key-missing", f"required key {key} is missing from {manifest.results_file}: "
                               f"keep the harness's results writing, and every key it writes")
    if reasons:
        return Verdict(status="failed", reasons=reasons, metrics=flatten(info), kinds=kinds)
    metrics = flatten(info)
    for key, value in metrics.items():
        if isinstance(value, float) and not math.isfinite(value):
            add("not-finite", f"{key} is {value}: a metric must be finite — the training diverged or the value was "
                              f"never computed (check the learning rate, the loss, the data)")
    for check in manifest.checks:
        if smoke and not check.smoke:
            continue
        problem = _check(check, info)
        if problem:
            add("check", problem)
    if not smoke:
        keys = manifest.compare.keys
        hint = ("make sure the code you changed is on the path the experiment runs (the new value is used, the new "
                "branch is taken)")
        if _same(info, baseline, keys):
            add("same-as-baseline", f"metrics {', '.join(keys)} are identical to the baseline's: the change did nothing — {hint}")
        if _same(info, previous, keys):
            add("same-as-previous",
                f"metrics {', '.join(keys)} are identical to the previous run's: the change did nothing — {hint}")
    return Verdict(status="degenerate" if reasons else "ok", reasons=reasons, metrics=metrics, kinds=kinds)
