"""Claims in the paper held to the statistics of the runs' seeds and to the manifest's metric goals."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from conftest import TINY, blk, exp, make_idea, run_cli

from orchestrator.paper import tex as texmod
from orchestrator.paper.integrity import ClaimInputs, PaperInputs, check, seeds_of
from orchestrator.paper.results_tex import RunData
from orchestrator.template import load_template

ROOT = Path(__file__).resolve().parents[1]


def test_the_tiny_manifest_declares_goals():
    goals = load_template(TINY).manifest.goals
    assert goals == {"eval.error": "min", "training.final_loss": "min"}  # eval.score: no goal


@pytest.mark.parametrize("table, problem", [
    ('"eval.error" = "lower"', "goals.eval.error: Input should be 'max' or 'min'"),
    ('"eval.nothing" = "min"', "'eval.nothing' is not one of key_metrics"),
])
def test_a_bad_goal_is_one_line_naming_template_toml(tmp_path, capsys, tiny_copy, table, problem):
    idea = make_idea(tmp_path, [exp(1, 1, blk("LR = 0.05", "LR = 0.1"))], template=tiny_copy)
    manifest = tiny_copy / "template.toml"
    manifest.write_text(manifest.read_text().split("[goals]")[0] + "[goals]\n" + table + "\n")
    assert run_cli("run", idea, "--sandbox", tmp_path / "sb") == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert str(manifest) in lines[0] and problem in lines[0], lines[0]
    assert not (tmp_path / "sb").exists() or not any((tmp_path / "sb").iterdir())


def _benchmark():
    spec = importlib.util.spec_from_file_location("integrity_benchmark", ROOT / "benchmarks" / "integrity.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


BENCH = _benchmark()


def _claims(rep) -> list[tuple[int, str]]:
    return [(int(f.where.rsplit(" ", 1)[-1].rsplit(":", 1)[-1]), f.kind) for f in rep.findings if f.kind.startswith("claim-")]


def _check(tex: str | None = None, text: str | None = None, goals: dict | None = None, seeds: dict | None = None):
    claims = ClaimInputs(seeds=seeds or BENCH.SEEDS, goals=BENCH.GOALS if goals is None else goals,
                         key_metrics=BENCH.KEY_METRICS)
    return check(PaperInputs(tex=tex, text=text, claims=claims))


def test_the_planted_paper_all_unsupported_claims_and_no_supported_one():
    out = BENCH.measure()
    assert (out["unsupported"], out["supported"]) == (5, 5)
    assert out["unsupported_flagged"] == 5 and out["supported_flagged"] == 0 and out["false_flags_elsewhere"] == 0
    results = "\n".join(texmod.stat_macros(BENCH.SEEDS, keys=BENCH.KEY_METRICS))
    rep = check(PaperInputs(tex=BENCH.PAPER, results_tex=results, claims=ClaimInputs(
        seeds=BENCH.SEEDS, goals=BENCH.GOALS, key_metrics=BENCH.KEY_METRICS)))
    lines = BENCH.PAPER.splitlines()
    kinds = {lines[n - 1].split("% unsupported: ")[1]: kind for n, kind in _claims(rep)}
    assert kinds == {"not significant": "claim-not-significant", "single seed": "claim-single-seed",
                     "against the goal (min)": "claim-against-goal", "the data say higher": "claim-wrong-direction",
                     "not significant, claimed in the next sentence": "claim-not-significant"}


def test_todays_single_seed_runs_make_every_comparative_claim_single_seed():
    runs = [RunData(run=0, status="ok", values={"eval.error": 1.0}, baseline=True),
            RunData(run=1, status="ok", values={"eval.error": 0.5}), RunData(run=2, status="ok", values={"eval.error": 0.2})]
    seeds = seeds_of(runs)
    assert seeds == {"run0": {"eval.error": [1.0]}, "run1": {"eval.error": [0.5]}, "run2": {"eval.error": [0.2]}}
    tex = ("\\begin{document}\nEach change lowers the error.\n"
           "Run 2 improves on run 1 (\\result{run2}{eval.error} against \\result{run1}{eval.error}).\n"
           "The error of run 1 is \\result{run1}{eval.error}.\n\\end{document}\n")
    rep = check(PaperInputs(tex=tex, claims=ClaimInputs(seeds=seeds, goals={"eval.error": "min"}, key_metrics=["eval.error"])))
    assert _claims(rep) == [(2, "claim-single-seed"), (3, "claim-single-seed")]  # the plain statement is no claim
    assert "run2" in rep.findings[1].message and "run1" in rep.findings[1].message and "run0" not in rep.findings[1].message
    assert "single seed" in rep.findings[0].message
    # without per-seed values the check does not run (the review wires them in with the seeds)
    assert not _claims(check(PaperInputs(tex=tex)))


@pytest.mark.parametrize("sentence, kind", [
    # a name instead of a macro: $L_0$, "CE"-style hyphenation, the dotted key in \texttt
    ("Run 2 has a higher $L_0$ than the baseline.", None),
    ("Run 2 has a lower $L_0$ than the baseline.", "claim-wrong-direction"),
    ("Run 1 reaches a higher \\texttt{core.explained\\_variance} than the baseline.", "claim-not-significant"),
    ("Run 1 has a better KL-div score.", "claim-not-significant"),
    # negated, or no metric: not a claim
    ("Run 1 does not significantly improve the explained variance.", None),
    ("We found no significant difference in explained variance for run 1.", None),
    ("Our variant is better in every respect.", None),
    # the goal is the manifest's, not the prose's
    ("For $L_0$, higher is better.", "claim-against-goal"),
    ("For \\texttt{core.l0}, lower is better.", None),
    ("Run 2 improves L0 (\\diff{run2}{core.l0}).", "claim-against-goal"),
    ("Run 1 improves L0 (\\diff{run1}{core.l0}).", None),
    # a superlative compares against every other run, the single-seed one included
    ("Run 1 has the lowest absorption rate of all runs.", "claim-single-seed"),
    # each metric takes the comparative nearest to it; a method sentence is no claim
    ("Run 2 reaches a higher explained variance (\\result{run2}{core.explained_variance}) at a lower L0 "
     "(\\result{run2}{core.l0}).", "claim-wrong-direction"),
    ("A higher learning rate lowers L0 in run 1.", None),
    ("Each true feature is matched to the latent with the highest decoder cosine, which gives the fraction "
     "recovered and the absorption rate.", None),
    ("The difference in explained variance for run 1 is non-significant.", None),
    ("Absorption rate and $L_0$ (lower is better), explained variance (higher is better).", None),
    ("Explained variance and $L_0$ (higher is better).", "claim-against-goal"),
    # the pronoun dodge: the metric is in the sentence before
    ("Run 1 reaches an explained variance of \\result{run1}{core.explained_variance}. That is an improvement.",
     "claim-not-significant"),
])
def test_claims_bind_by_sentence(sentence, kind):
    rep = _check(tex=f"\\begin{{document}}\n{sentence}\n\\end{{document}}\n")
    assert [k for _, k in _claims(rep)] == ([kind] if kind else []), rep.findings


def test_a_better_claim_needs_a_declared_goal():
    goals = {k: v for k, v in BENCH.GOALS.items() if k != "core.kl_div_score"}
    rep = _check(tex="\\begin{document}\nRun 2 has a better KL-div score than the baseline.\n\\end{document}\n", goals=goals)
    assert [k for _, k in _claims(rep)] == ["claim-no-goal"] and "template.toml" in rep.findings[0].message
    # "higher" is checked against the data only: true, and significant
    rep = _check(tex="\\begin{document}\nRun 2 has a higher KL-div score than the baseline.\n\\end{document}\n", goals=goals)
    assert not _claims(rep)


def test_the_text_of_a_pdf_binds_runs_by_their_printed_means():
    text = ("Run 1 reaches an L0 of 30.17 against 40.13 for the baseline, a clear reduction.\n"
            "The explained variance rises from 0.900 to 0.902.\n"
            "L0 improved from 40.1 to 45.13.\n")
    rep = _check(text=text)
    assert _claims(rep) == [(2, "claim-not-significant"), (3, "claim-against-goal")]
    assert "run1" in rep.findings[0].message and "run0" in rep.findings[0].message


def test_a_claim_in_a_figure_caption_is_checked():
    tex = ("\\begin{document}\n\\setcaption{l0}{L0 per run.}\n"
           "\\setcaption{ev}{Run 1 improves the explained variance.}\n\\end{document}\n")
    assert _claims(_check(tex=tex)) == [(3, "claim-not-significant")]
