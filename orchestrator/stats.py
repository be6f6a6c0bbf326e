"""Statistics over a run's seeds, and how they are printed.

For one metric of one run, given its per-seed values: n, the mean, the sample standard deviation
(ddof=1), the standard error std/sqrt(n) and a 95% confidence interval from Student's t with n-1
degrees of freedom. For a run against the baseline or another run: the difference of the means with
Welch's interval (Welch-Satterthwaite degrees of freedom), its two-sided p-value and whether it is
significant at 0.05. scipy computes the distributions; nothing here is hand-rolled.

Edge cases, decided once:
- n = 0: status "empty", every statistic None.
- any NaN or infinite value: status "non-finite", every statistic None. A diverged seed is part of
  the result; dropping it would pick the seeds that worked.
- n = 1: status "single-seed": the mean is the value, no standard deviation, no interval.
- n > 1 seeds that all agree exactly (a setting, a count): the mean is that value and the spread is 0,
  not a float mean of 0.8, 0.8, 0.8 (0.8000000000000002) with a 1e-16 "interval" a paper would print.
- a difference where either side is not "ok" takes that side's status and has no interval and no
  p-value; it is never significant.
- both sides with zero spread (the seeds changed nothing): status "no-variance", no p-value, not
  significant: noise that was not measured cannot be beaten.

Printing: "mean ± h" where h is the half-width of the 95% confidence interval (not the standard
error): a reader can take it at face value, and with three seeds t(0.975, 2) = 4.30 makes the SE look
four times too sure. h is rounded to one significant figure (two when its first digit is 1) and the
mean to the same decimal place: 19.2 ± 0.3, 0.913 ± 0.012. A difference prints signed with its
interval: +0.006 [-0.002, 0.014]. A single seed prints the plain number (4 significant figures)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

CONFIDENCE = 0.95
ALPHA = 0.05
Status = Literal["ok", "single-seed", "empty", "non-finite", "no-variance"]
Seeds = Mapping[str, Mapping[str, Sequence[float]]]  # run label -> metric -> one value per seed


class Summary(BaseModel):
    """One metric of one run over its seeds."""

    model_config = ConfigDict(frozen=True)

    n: int
    status: Status
    mean: float | None = None
    std: float | None = None  # sample standard deviation, ddof=1
    se: float | None = None  # std / sqrt(n)
    df: int | None = None
    ci_low: float | None = None
    ci_high: float | None = None

    @property
    def half_width(self) -> float | None:
        return None if self.ci_low is None or self.ci_high is None else (self.ci_high - self.ci_low) / 2


class Difference(BaseModel):
    """run minus reference, for one metric."""

    model_config = ConfigDict(frozen=True)

    run: Summary
    reference: Summary
    status: Status
    diff: float | None = None  # mean(run) - mean(reference)
    se: float | None = None  # sqrt(s1^2/n1 + s2^2/n2)
    df: float | None = None  # Welch-Satterthwaite
    t: float | None = None
    p: float | None = None  # two-sided
    ci_low: float | None = None
    ci_high: float | None = None
    significant: bool = False  # p < ALPHA

    @property
    def half_width(self) -> float | None:
        return None if self.ci_low is None or self.ci_high is None else (self.ci_high - self.ci_low) / 2


def _clean(values: Sequence[float]) -> tuple[np.ndarray, bool]:
    arr = np.asarray([float(v) for v in values], dtype=float)
    return arr, bool(np.all(np.isfinite(arr)))


def summarize(values: Sequence[float], confidence: float = CONFIDENCE) -> Summary:
    arr, finite = _clean(values)
    n = int(arr.size)
    if n == 0:
        return Summary(n=0, status="empty")
    if not finite:
        return Summary(n=n, status="non-finite")
    mean = float(arr.mean())
    if n == 1:
        return Summary(n=1, status="single-seed", mean=mean)
    if bool(np.all(arr == arr[0])):  # seeds that agree exactly: that value, no spread (see the module's docstring)
        v = float(arr[0])
        return Summary(n=n, status="ok", mean=v, std=0.0, se=0.0, df=n - 1, ci_low=v, ci_high=v)
    from scipy import stats as sps  # here: scipy.stats takes most of a second to import

    std = float(arr.std(ddof=1))
    se = std / math.sqrt(n)
    h = float(sps.t.ppf(0.5 + confidence / 2, n - 1)) * se
    return Summary(n=n, status="ok", mean=mean, std=std, se=se, df=n - 1, ci_low=mean - h, ci_high=mean + h)


def compare(run: Sequence[float], reference: Sequence[float], confidence: float = CONFIDENCE) -> Difference:
    """Welch's two-sample comparison of run against reference (unequal variances)."""
    a, b = summarize(run, confidence), summarize(reference, confidence)
    diff = a.mean - b.mean if a.mean is not None and b.mean is not None else None
    for bad in ("empty", "non-finite", "single-seed"):
        if bad in (a.status, b.status):
            return Difference(run=a, reference=b, status=bad, diff=diff)
    if a.std == 0 and b.std == 0:
        return Difference(run=a, reference=b, status="no-variance", diff=diff, se=0.0)
    from scipy import stats as sps

    with warnings.catch_warnings():  # scipy warns on nearly identical seeds; the interval says it plainly
        warnings.simplefilter("ignore", RuntimeWarning)
        res = sps.ttest_ind(np.asarray(run, float), np.asarray(reference, float), equal_var=False)
    ci = res.confidence_interval(confidence)
    p = float(res.pvalue)
    return Difference(run=a, reference=b, status="ok", diff=diff, se=math.sqrt(a.se**2 + b.se**2), df=float(res.df),
                      t=float(res.statistic), p=p, ci_low=float(ci.low), ci_high=float(ci.high),
                      significant=p < 1 - confidence)


def summaries(seeds: Seeds) -> dict[str, dict[str, Summary]]:
    return {run: {k: summarize(v) for k, v in metrics.items()} for run, metrics in seeds.items()}


def against(seeds: Seeds, run: str, reference: str, metric: str) -> Difference | None:
    """run vs reference on metric, or None when either run lacks the metric."""
    a, b = seeds.get(run, {}).get(metric), seeds.get(reference, {}).get(metric)
    return None if a is None or b is None else compare(a, b)


# ---- printing -------------------------------------------------------------------------------------

def _decimals(h: float) -> int:
    """Decimal places that show h to 1 significant figure (2 when its first digit is 1)."""
    e = math.floor(math.log10(h))
    d = (2 if h / 10**e < 2 else 1) - 1 - e
    r = round(h, d)
    if r >= 10 ** (e + 1):  # 0.096 rounds to 0.10: one figure fewer
        return _decimals(r)
    return d


def _fixed(v: float, d: int, sign: bool = False) -> str:
    r = round(v, d)
    r = 0.0 if r == 0 else r  # no "-0.0"
    return f"{r:{'+' if sign else ''}.{max(d, 0)}f}"


def format_number(v: float, sig: int = 4, *, sign: bool = False) -> str:
    """A single value: 4 significant figures, m×10^e when tiny or huge, "n/a" when missing."""
    if v is None or not math.isfinite(v):
        return "n/a"
    if v == 0:
        return "+0" if sign else "0"
    a = abs(v)
    if a >= 1e5 or a < 1e-3:
        mant, exp = f"{v:{'+' if sign else ''}.{sig - 1}e}".split("e")
        return f"{mant.rstrip('0').rstrip('.')}×10^{int(exp)}"
    d = max(sig - 1 - math.floor(math.log10(a)), 0)
    s = f"{v:{'+' if sign else ''}.{d}f}"
    return s.rstrip("0").rstrip(".") if "." in s else s


def _scale(*vs: float) -> int:
    """The power of ten to factor out, or 0 when fixed notation reads fine."""
    top = max(abs(v) for v in vs)
    if top == 0 or 1e-3 <= top < 1e5:
        return 0
    return math.floor(math.log10(top))


def format_pm(mean: float, h: float) -> str:
    """mean ± h, both at h's precision: "19.2 ± 0.3", "(1.23 ± 0.05)×10^-5"."""
    e = _scale(mean, h)
    m, w = mean / 10**e, h / 10**e
    if w == 0:
        body = f"{format_number(m)} ± 0"
    else:
        d = _decimals(w)
        body = f"{_fixed(m, d)} ± {_fixed(w, d)}"
    return f"({body})×10^{e}" if e else body


def format_interval(diff: float, low: float, high: float) -> str:
    """A signed difference and its interval: "+0.006 [-0.002, 0.014]"."""
    e = _scale(diff, low, high)
    x, lo, hi = diff / 10**e, low / 10**e, high / 10**e
    h = (hi - lo) / 2
    if h <= 0:
        body = format_number(x, sign=True)
    else:
        d = _decimals(h)
        body = f"{_fixed(x, d, sign=True)} [{_fixed(lo, d)}, {_fixed(hi, d)}]"
    return f"{body} ×10^{e}" if e else body


def format_summary(s: Summary) -> str:
    """What a reader sees for one run's metric: "19.2 ± 0.3", the plain number for one seed, "n/a"."""
    if s.mean is None:
        return "n/a"
    if s.status == "single-seed" or s.half_width is None:
        return format_number(s.mean)
    return format_pm(s.mean, s.half_width)


def format_difference(d: Difference) -> str:
    """"+0.006 [-0.002, 0.014]"; the signed difference alone when there is no interval."""
    if d.diff is None:
        return "n/a"
    if d.ci_low is None or d.ci_high is None:
        return format_number(d.diff, sign=True)
    return format_interval(d.diff, d.ci_low, d.ci_high)
