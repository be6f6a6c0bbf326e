"""orchestrator.stats against values computed by hand or printed by R, written here as numbers."""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import pytest

from orchestrator.stats import (
    compare,
    format_difference,
    format_number,
    format_pm,
    format_summary,
    summarize,
)

LATEX = Path(__file__).resolve().parents[1] / "latex"

# R's `sleep` data set, extra hours of sleep under two drugs (Student 1908).
SLEEP_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
SLEEP_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


def test_one_run_matches_rs_one_sample_t_test():
    # R: t.test(sleep$extra[1:10]) -> mean 0.75, 95 percent CI -0.5297804 2.0297804; sd() = 1.78901
    s = summarize(SLEEP_1)
    assert s.status == "ok" and s.n == 10 and s.df == 9
    assert s.mean == pytest.approx(0.75)
    assert s.std == pytest.approx(1.789010, abs=1e-6)  # ddof=1, not the population 1.697
    assert s.se == pytest.approx(1.789010 / math.sqrt(10), abs=1e-6)  # std/sqrt(n), not std/n
    assert (s.ci_low, s.ci_high) == (pytest.approx(-0.5297804, abs=1e-7), pytest.approx(2.0297804, abs=1e-7))


def test_three_seeds_by_hand():
    # mean 19.2, sd 0.2, se 0.2/sqrt(3) = 0.1154701; t(0.975, 2) = 4.302653 (any t table) -> h = 0.4968275
    s = summarize([19.0, 19.2, 19.4])
    assert s.mean == pytest.approx(19.2) and s.std == pytest.approx(0.2)
    assert s.se == pytest.approx(0.1154701, abs=1e-7)
    assert s.half_width == pytest.approx(0.4968275, abs=1e-6)
    assert format_summary(s) == "19.2 ± 0.5"


def test_welch_matches_rs_sleep_example():
    # R: t.test(extra ~ group, data = sleep) -> Welch Two Sample t-test
    #    t = -1.8608, df = 17.776, p-value = 0.07939, 95 percent CI -3.3654832 0.2054832
    d = compare(SLEEP_1, SLEEP_2)
    assert d.status == "ok"
    assert d.diff == pytest.approx(0.75 - 2.33)
    assert d.t == pytest.approx(-1.8608, abs=1e-4)
    assert d.df == pytest.approx(17.776, abs=1e-3)
    assert d.p == pytest.approx(0.07939, abs=1e-5)
    assert (d.ci_low, d.ci_high) == (pytest.approx(-3.3654832, abs=1e-7), pytest.approx(0.2054832, abs=1e-7))
    assert not d.significant


def test_welch_satterthwaite_df_by_hand():
    # s1^2 = 1 (n=3), s2^2 = 20/3 (n=4): df = (1/3 + 5/3)^2 / ((1/3)^2/2 + (5/3)^2/3) = 4 / (53/54) = 216/53
    d = compare([1, 2, 3], [2, 4, 6, 8])
    assert d.df == pytest.approx(216 / 53, rel=1e-12)
    assert d.se == pytest.approx(math.sqrt(2.0))


def test_a_clear_difference_is_significant():
    # sd 0.1 on both sides, n = 3: se = sqrt(2 * 0.01 / 3) = 0.0816497, t = -1 / se = -sqrt(150), df = 4 exactly;
    # h = t(0.975, 4) * se = 2.776445 * 0.0816497 = 0.2266958; the p-value from the closed form of the t CDF
    # at 4 degrees of freedom: F(x) = 1/2 + 3/8 * u * (1 - u^2 / 12) with u = x / sqrt(1 + x^2 / 4)
    d = compare([10.0, 10.1, 9.9], [11.0, 11.1, 10.9])
    x = -math.sqrt(150)
    u = x / math.sqrt(1 + x * x / 4)
    assert d.t == pytest.approx(x) and d.df == pytest.approx(4.0)
    assert d.ci_low == pytest.approx(-1.2266958, abs=1e-6) and d.ci_high == pytest.approx(-0.7733042, abs=1e-6)
    assert d.p == pytest.approx(2 * (0.5 + 3 / 8 * u * (1 - u * u / 12)), rel=1e-9)
    assert d.p < 0.001 and d.significant


def test_edge_cases_are_explicit():
    assert summarize([]).status == "empty" and summarize([]).mean is None
    nan = summarize([1.0, float("nan"), 2.0])
    assert nan.status == "non-finite" and nan.n == 3 and nan.mean is None  # a diverged seed is not dropped
    assert summarize([1.0, float("inf")]).status == "non-finite"
    one = summarize([19.24])
    assert one.status == "single-seed" and one.mean == 19.24 and one.std is None and one.half_width is None
    assert format_summary(one) == "19.24"
    d = compare([19.24], [17.9, 18.0, 18.1])
    assert d.status == "single-seed" and d.p is None and not d.significant and d.diff == pytest.approx(1.24)
    assert format_difference(d) == "+1.24"
    flat = compare([1.0, 1.0, 1.0], [2.0, 2.0, 2.0])  # seeds that changed nothing measure no noise
    assert flat.status == "no-variance" and flat.p is None and not flat.significant
    assert compare([], [1.0, 2.0]).status == "empty"
    assert compare([1.0, float("nan")], [1.0, 2.0]).status == "non-finite"
    assert format_summary(summarize([])) == "n/a"


def test_printing_rounds_the_mean_to_the_intervals_precision():
    # the example: \result{run2}{core.l0} -> "19.2 ± 0.3"; h = 4.302653 * 0.1040833 / sqrt(3) = 0.2586
    assert format_summary(summarize([19.1, 19.25, 19.3])) == "19.2 ± 0.3"
    # h = 2.776445 * 0.0035 * sqrt(2/3) = 0.00793: one significant figure, the difference at the same place
    d = compare([0.9025, 0.906, 0.9095], [0.8965, 0.9, 0.9035])
    assert format_difference(d) == "+0.006 [-0.002, 0.014]"
    assert format_difference(compare(SLEEP_1, SLEEP_2)) == "-1.6 [-3.4, 0.2]"  # h = 1.785: two figures
    assert format_pm(0.91342, 0.0123) == "0.913 ± 0.012"
    assert format_pm(0.5, 0.096) == "0.50 ± 0.10"  # 0.096 rounds up to 0.10
    assert format_pm(12345.0, 123.0) == "12340 ± 120"
    assert format_pm(1.234e-5, 4.1e-7) == "(1.23 ± 0.04)×10^-5"
    assert format_pm(3.0, 0.0) == "3 ± 0"
    assert format_number(0.91342) == "0.9134" and format_number(41.0) == "41" and format_number(-0.00012) == "-1.2×10^-4"
    assert format_number(float("nan")) == "n/a" and format_number(0.25, sign=True) == "+0.25"


SEEDS = {
    "run0": {"core.l0": [18.1, 18.2, 18.0], "core.explained_variance": [0.8965, 0.9, 0.9035]},
    "run2": {"core.l0": [19.1, 19.25, 19.3], "core.explained_variance": [0.9025, 0.906, 0.9095]},
    "run3": {"core.l0": [17.5], "core.explained_variance": [0.5]},
}


def test_macros_carry_the_uncertainty_and_the_difference_against_the_baseline():
    from orchestrator.paper import tex

    lines = tex.stat_macros(SEEDS, keys=["core.l0", "core.explained_variance"])
    results = "\n".join(lines)
    values, diffs = tex.setresults(results), tex.setresults(results, "diff")
    assert values[("run2", "core.l0")] == "\\ensuremath{19.2 \\pm 0.3}"
    assert values[("run3", "core.l0")] == "17.5"  # one seed: the plain number
    assert diffs[("run2", "core.explained_variance")] == "\\ensuremath{+0.006\\ [-0.002, 0.014]}"
    assert diffs[("run3", "core.l0")] == "\\ensuremath{-0.6}" and ("run0", "core.l0") not in diffs
    text = tex.source_text("L0 is \\result{run2}{core.l0}, \\diff{run2}{core.explained_variance} in EV; "
                           "\\diff{run9}{core.l0}.", results)
    assert "L0 is 19.2 ± 0.3, +0.006 [-0.002, 0.014] in EV; ??." in text
    assert [u[3] for u in tex.result_uses("\\result{run2}{core.l0} \\diff{run2}{core.l0}")] == ["result", "diff"]


def test_the_integrity_check_accepts_every_number_results_tex_prints():
    from orchestrator.paper import tex
    from orchestrator.paper.integrity import PaperInputs, check

    results = "\n".join(tex.stat_macros(SEEDS, keys=["core.explained_variance"]))
    paper = "Run 2 reaches \\result{run2}{core.l0} and \\diff{run2}{core.explained_variance}; \\diff{run2}{core.mse}.\n"
    rep = check(PaperInputs(text=tex.source_text(paper, results) + "It also reaches 0.0123.\n", tex=paper,
                            results_tex=results, runs=[]))
    assert rep.numbers_checked == 6 and rep.numbers_matched == 5  # 19.2, 0.3, 0.006, 0.002, 0.014 are results.tex's
    assert {f.kind for f in rep.findings} == {"unmatched-number", "undefined-result", "unresolved-reference"}
    assert any("\\diff{run2}{core.mse}" in f.message for f in rep.findings)


@pytest.mark.skipif(not shutil.which("pdflatex") or not shutil.which("pdftotext"), reason="needs pdflatex and pdftotext")
def test_the_macros_compile_and_print(tmp_path):
    from orchestrator.paper import tex

    for sty in ("orchestrate.sty", "orchestrate-results.sty"):
        shutil.copy(LATEX / sty, tmp_path)
    (tmp_path / "results.tex").write_text("\n".join(tex.stat_macros(SEEDS, keys=["core.explained_variance"])) + "\n")
    (tmp_path / "p.tex").write_text("\\documentclass{article}\\usepackage{orchestrate}\\input{results}\\begin{document}\n"
                                    "L0 \\result{run2}{core.l0}; EV \\diff{run2}{core.explained_variance}; "
                                    "one seed \\result{run3}{core.l0}.\n\\end{document}\n")
    subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "p.tex"], cwd=tmp_path,
                   capture_output=True, check=True, timeout=120)
    out = subprocess.run(["pdftotext", "-enc", "UTF-8", "p.pdf", "-"], cwd=tmp_path, capture_output=True, text=True,
                         check=True).stdout
    assert "L0 19.2 ± 0.3; EV +0.006 [−0.002, 0.014]; one seed 17.5." in " ".join(out.split())


def test_a_run_against_another_by_label():
    from orchestrator.stats import against, summaries

    d = against(SEEDS, "run2", "run0", "core.l0")
    assert d is not None and d.diff == pytest.approx(19.2167 - 18.1, abs=1e-4) and d.status == "ok"
    assert against(SEEDS, "run2", "run0", "core.mse") is None and against(SEEDS, "run9", "run0", "core.l0") is None
    table = summaries(SEEDS)
    assert table["run3"]["core.l0"].status == "single-seed" and table["run0"]["core.l0"].n == 3


def test_seeds_that_agree_give_the_value_itself_with_no_spread():
    # three seeds of a setting (config.syn_p_child = 0.8): a float mean is 0.8000000000000002 and its
    # rounding-noise interval printed as "0.8000000000000002 ± 0.0000000000000003" in the hsae paper
    s = summarize([0.8, 0.8, 0.8])
    assert s.status == "ok" and s.mean == 0.8 and s.std == 0.0 and s.half_width == 0.0
    assert format_summary(s) == "0.8 ± 0"
    assert format_summary(summarize([0.003] * 3)) == "0.003 ± 0"
    d = compare([0.8, 0.8, 0.8], [0.8, 0.8, 0.8])
    assert d.status == "no-variance" and d.diff == 0.0 and not d.significant
