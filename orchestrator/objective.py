"""The search objective: one metric and which way is better, with optional constraints, declared by the
template's `[objective]` (or the idea's `objective`), never chosen by the model. Every strategy and view
scores a run with it: `score` is the metric, `feasible` whether every constraint holds."""

from __future__ import annotations

import operator
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .values import finite

_OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][\w.\-]*)\s*(<=|>=|<|>)\s*(-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*$")


class Constraint(BaseModel):
    """`key op value`, e.g. `core.l0 <= 30`: a run that breaks it is infeasible, whatever its metric."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    op: Literal["<=", ">=", "<", ">"]
    value: float

    @classmethod
    def parse(cls, text: str) -> Constraint:
        m = _CONSTRAINT.match(text)
        if m is None:
            raise ValueError(f"constraint {text!r} is not 'metric <= number' (or >=, <, >)")
        return cls(key=m.group(1), op=m.group(2), value=float(m.group(3)))

    def holds(self, metrics: Mapping[str, Any]) -> bool:
        v = finite(metrics.get(self.key))
        return v is not None and _OPS[self.op](v, self.value)

    def __str__(self) -> str:
        return f"{self.key} {self.op} {self.value:g}"


class Objective(BaseModel):
    """`[objective]`: `metric` (a flattened results key), `goal` ("max" or "min"), `constraints`."""

    model_config = ConfigDict(extra="forbid")

    metric: str = Field(min_length=1)
    goal: Literal["max", "min"]
    constraints: list[Constraint] = Field(default_factory=list)

    @field_validator("constraints", mode="before")
    @classmethod
    def _parse(cls, v: object) -> object:
        if isinstance(v, list):
            return [Constraint.parse(c) if isinstance(c, str) else c for c in v]
        return v

    def read_keys(self) -> list[str]:
        """Every key the objective reads: the metric, then each constraint's."""
        return [self.metric, *(c.key for c in self.constraints if c.key != self.metric)]

    def score(self, metrics: Mapping[str, Any]) -> float | None:
        """The metric's value in flattened metrics, None when absent or not a finite number."""
        return finite(metrics.get(self.metric))

    def feasible(self, metrics: Mapping[str, Any]) -> bool:
        return all(c.holds(metrics) for c in self.constraints)

    def better(self, a: float, b: float) -> bool:
        """Whether score a is strictly better than score b."""
        return a > b if self.goal == "max" else a < b

    def rank_key(self, score: float | None, feasible: bool) -> tuple[int, float]:
        """A sort key, smallest first = best: feasible scored runs by their score, then infeasible, then unscored."""
        if score is None:
            return (2, 0.0)
        return (0 if feasible else 1, -score if self.goal == "max" else score)

    def describe(self) -> str:
        text = f"{self.goal} {self.metric}"
        return text + (f" subject to {', '.join(map(str, self.constraints))}" if self.constraints else "")
