"""Is a run a result? `validate` answers ok, failed or degenerate, with reasons the agent can act on."""

from __future__ import annotations

import ast
import json
import math
import operator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from .template import Check, Manifest

Status = Literal["ok", "failed", "degenerate"]
_MISSING = object()


class Verdict(BaseModel):
    status: Status
    reasons: list[str] = Field(default_factory=list)
    metrics: dict[str, Any] = Field(default_factory=dict)  # flattened numeric metrics

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


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts to `a.b` keys, numbers (and bools) only."""
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for k, v in data.items():
            out.update(flatten(v, f"{prefix}{k}."))
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


def _check(check: Check, info: dict[str, Any]) -> str | None:
    value = get_path(info, check.path)
    why = f" ({check.reason})" if check.reason else ""
    if value is _MISSING or value is None:
        return f"{check.path} is missing{why}"
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
        return None, f"the results file {path.name} was not written"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return None, f"{path.name} is not valid JSON: {exc}"
    if not isinstance(data, dict):
        return None, f"{path.name} must hold a JSON object"
    return data, None


def _same(a: dict[str, Any], b: dict[str, Any] | None, keys: list[str]) -> bool:
    if not b or not keys:
        return False
    pairs = [(get_path(a, k), get_path(b, k)) for k in keys]
    return all(x is not _MISSING and x == y for x, y in pairs)


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
        return Verdict(status="failed", reasons=[load_error or "no results"])
    reasons: list[str] = []
    for key in manifest.required_keys:
        if get_path(info, key) is _MISSING:
            reasons.append(f"required key {key} is missing from {manifest.results_file}")
    if reasons:
        return Verdict(status="failed", reasons=reasons, metrics=flatten(info))
    metrics = flatten(info)
    for key, value in metrics.items():
        if isinstance(value, float) and not math.isfinite(value):
            reasons.append(f"{key} is {value}: a metric must be finite")
    for check in manifest.checks:
        if smoke and not check.smoke:
            continue
        problem = _check(check, info)
        if problem and problem not in reasons:
            reasons.append(problem)
    if not smoke:
        keys = manifest.compare.keys
        if _same(info, baseline, keys):
            reasons.append(f"metrics {', '.join(keys)} are identical to the baseline's: the change did nothing")
        if _same(info, previous, keys):
            reasons.append(f"metrics {', '.join(keys)} are identical to the previous run's: the change did nothing")
    return Verdict(status="degenerate" if reasons else "ok", reasons=reasons, metrics=metrics)
