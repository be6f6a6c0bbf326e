"""AI Scientist's plot.py draws exactly the runs named in its `labels` dict
(`labels = {"run_0": "Baselines", ...}`): a run left out of it is in no figure. This reads that dict
from the script's source with `ast` (the script is never imported or run here), so the plots stage can
tell the agent to add each run that is a result, and check after each edit that it did.

What counts as naming a run: a top-level `labels = {...}` (or `labels: dict = {...}`) dict literal with
string keys, later `labels["run_3"] = ...` assignments and `labels.update({...})` calls at the top level
(also inside a top-level `if`, such as `if __name__ == "__main__":`). A `labels` the script computes
(a comprehension, a call) cannot be read without running it: that is reported as a problem, not guessed."""

from __future__ import annotations

import ast
from collections.abc import Iterator

from pydantic import BaseModel, Field

NAME = "labels"
MAX_SOURCE = 1_000_000  # characters of plot.py parsed; a larger file is not a plot script


class Labels(BaseModel):
    """What a plot script's `labels` dict names."""

    found: bool = False  # the script assigns `labels` at the top level
    runs: list[str] = Field(default_factory=list)  # the keys, in order
    problem: str | None = None  # why the keys cannot be read (the script does not parse, labels is computed)

    def missing(self, result_runs: list[str]) -> list[str]:
        """The runs that are results and are not named (all of them when the dict cannot be read)."""
        return [r for r in result_runs if r not in self.runs]


def _top_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    for node in body:
        yield node
        if isinstance(node, ast.If):  # `if __name__ == "__main__":` and the like
            yield from _top_level(node.body)
            yield from _top_level(node.orelse)


def _is_labels(target: ast.expr) -> bool:
    return isinstance(target, ast.Name) and target.id == NAME


def _keys(d: ast.Dict) -> tuple[list[str], str | None]:
    keys = []
    for k in d.keys:
        if k is None:  # {**other}
            return keys, f"`{NAME}` unpacks another dict (**...): its runs cannot be read without running the script"
        if not (isinstance(k, ast.Constant) and isinstance(k.value, str)):
            return keys, f"`{NAME}` has a key that is not a string literal (line {k.lineno}): write each run as \"run_N\""
        keys.append(k.value)
    return keys, None


def read_labels(source: str) -> Labels:
    """The runs a plot script's `labels` dict names, read from its source."""
    if len(source) > MAX_SOURCE:
        return Labels(found=True, problem=f"the script is over {MAX_SOURCE} characters")
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError) as exc:
        return Labels(found=True, problem=f"the script does not parse ({exc.__class__.__name__}: {exc})")
    runs: list[str] = []
    found = False
    problem: str | None = None
    for node in _top_level(tree.body):
        assigned = ((isinstance(node, ast.Assign) and any(_is_labels(t) for t in node.targets))
                    or (isinstance(node, ast.AnnAssign) and _is_labels(node.target)))
        value = getattr(node, "value", None) if assigned else None
        if value is not None:
            found = True
            if not isinstance(value, ast.Dict):
                problem = (f"`{NAME}` is computed (line {value.lineno}), not a dict literal: which runs it draws "
                           f"cannot be checked; write it as {NAME} = {{\"run_0\": \"Baseline\", \"run_1\": \"...\"}}")
                runs = []
                continue
            runs, problem = _keys(value)
            continue
        if isinstance(node, ast.Assign):
            for t in node.targets:
                if (isinstance(t, ast.Subscript) and _is_labels(t.value) and isinstance(t.slice, ast.Constant)
                        and isinstance(t.slice.value, str)):
                    runs.append(t.slice.value)
        elif (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
              and isinstance(node.value.func, ast.Attribute) and node.value.func.attr == "update"
              and _is_labels(node.value.func.value) and len(node.value.args) == 1
              and isinstance(node.value.args[0], ast.Dict)):
            more, why = _keys(node.value.args[0])
            runs += more
            problem = problem or why
    return Labels(found=found, runs=list(dict.fromkeys(runs)), problem=problem)
