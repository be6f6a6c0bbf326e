"""The attacks of an adversarial experiment on the real sae template (benchmarks/faults/experiments_sae),
each run through the orchestrator as the benchmark runs them (prepare, the evaluated baseline, the
attack as the agent's edit, the smoke run, the sealed evaluator, the judge, the notes), under bwrap and
under isolation none where that can contain it. Smoke-sized: every attack shows at smoke time (the
evaluator runs after the smoke run too); one prepared data cache is shared by all of them.

Every attack writes outside its workspace only under a folder the catalogue made under /var/tmp (the
symlink target, the hook's marker, the fake home with the planted key), removed afterwards."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli_subprocess, make_idea

from orchestrator import sandbox

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks" / "faults"))
import sae_catalogue as sc  # noqa: E402

BWRAP = sandbox.bwrap_problem()
LEVELS = ["bwrap", "none"]


def _python() -> str:
    py = os.environ.get("ORCHESTRATE_SAE_PYTHON")
    if not py:
        pytest.skip("ORCHESTRATE_SAE_PYTHON is not set: no data-plane python (torch + transformer_lens) to run the template")
    probe = subprocess.run([py, "-c", "import torch, safetensors, transformer_lens"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"ORCHESTRATE_SAE_PYTHON={py} lacks torch/safetensors/transformer_lens")
    return py


@pytest.fixture(scope="session")
def sae_cache(tmp_path_factory):
    """One data cache for every attack: the first workspace's prepare builds it (~30 s), the rest reuse it;
    an attack that poisons it under none gets it discarded and rebuilt before the next one."""
    return tmp_path_factory.mktemp("sae-cache")


def _attack(file: str, level: str, tmp_path: Path, cache: Path) -> sc.Outcome:
    attack = sc.by_file(file)
    if level == "bwrap" and BWRAP is not None:
        pytest.skip(f"needs bwrap: {BWRAP}")
    if level in attack.not_containable:
        pytest.skip(f"{attack.name}: not containable under {level}: {attack.not_containable[level]}")
    # one seed: the attacks show at smoke time (the first seed's), but the honest run 1 before rewrite_earlier is a
    # full run and every workspace evaluates its baseline's seeds; the benchmark runs the template's three
    out = sc.run_attack(attack, tmp_path, isolation=level, cache_dir=cache, python=_python(), smoke_only=True, seeds=1)
    detail = f"{attack.name} under {level}: {out.phases}, reasons {out.reasons}, problems {out.problems}"
    assert out.contained, detail
    assert out.verdict == out.expected and not out.mismatches, f"{detail}, mismatches {out.mismatches}"
    assert not any("Traceback" in r for r in out.reasons), detail
    return out


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("file", [a.file for a in sc.ATTACKS_SAE])
def test_attack_on_the_sae_template_is_contained_with_its_verdict(file, level, tmp_path, sae_cache):
    out = _attack(file, level, tmp_path, sae_cache)
    if out.verdict == "ok":  # the attack got nowhere and the run trained honestly: its numbers are the evaluator's
        assert out.phases == ["smoke:ok"]
    if file in ("fabricated", "monkeypatch"):
        assert any("the evaluator computes" in r for r in out.reasons), out.reasons
    if file == "no_artifacts":
        assert out.reasons[0].startswith("the evaluator failed: ") and "saes/lm" in out.reasons[0], out.reasons


def test_a_malformed_evaluate_section_of_the_sae_template_is_one_line_naming_it(tmp_path):
    bad = tmp_path / "sae"
    shutil.copytree(sc.SAE, bad, ignore=shutil.ignore_patterns("__pycache__"))
    toml = bad / "template.toml"
    good = toml.read_text()
    for broken, says in [(good.replace("rtol = 0.05", "rtol = -0.05"), "rtol"),
                         (good.replace("--out={out}", "--out={result}"), "unknown placeholder {result}"),
                         (good.replace('command = "python harness.py evaluate', 'cmd = "python harness.py evaluate'),
                          "evaluate")]:
        toml.write_text(broken)
        cp = cli_subprocess("check", make_idea(tmp_path, [], template=bad))
        lines = cp.stderr.strip().splitlines()
        assert cp.returncode == 2 and len(lines) == 1, cp.stderr
        assert "template.toml" in lines[0] and says in lines[0] and "Traceback" not in cp.stderr, lines[0]
