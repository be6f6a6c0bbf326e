"""An adopted AI Scientist folder's environment (issue 15): packages inferred from its imports, an env built
from them offline (pip pointed at a find-links folder the test fills with a wheel it makes itself), a package
not on the index refused before any run in one line with pip's own words, and `check --all --python` importing
every module in the sandbox. No network: PIP_NO_INDEX keeps pip off the index."""

from __future__ import annotations

import json
import shutil
import sys
import zipfile

import pytest
from conftest import FIXTURES, run_cli

from orchestrator import imports
from orchestrator.adopt import provisional
from orchestrator.errors import InputError, PackageNotFound
from orchestrator.pyenv import check_environment, experiment_python, requirements_of

AIS = FIXTURES / "ais_template"


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _folder(tmp_path, name: str, experiment: str, **extra: str):
    """An AI Scientist-form folder under templates/ (so its ideas.json names it), with this experiment.py."""
    folder = tmp_path / "templates" / name
    shutil.copytree(AIS, folder)
    (folder / "experiment.py").write_text(experiment)
    for rel, text in extra.items():
        (folder / rel).write_text(text)
    return folder


def _scripted(folder, idea: str = "momentum") -> None:
    """The idea's entry names a scripted transcript (no model): the agent only says it is done."""
    from conftest import DONE

    header = {"transcript": 1, "idea": idea, "template": folder.name, "note": "scripted: test"}
    lines = [header, {"stage": "experiments", "run": 1, "attempt": 1, "response": DONE}]
    (folder / f"{idea}.transcript.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    ideas = json.loads((folder / "ideas.json").read_text())
    for e in ideas:
        if e["Name"] == idea:
            e["transcript"] = f"{idea}.transcript.jsonl"
    (folder / "ideas.json").write_text(json.dumps(ideas))


def _wheel(dist_dir, name: str) -> None:
    """A minimal pure-Python wheel for `name` (made here: no download)."""
    dist_dir.mkdir(parents=True, exist_ok=True)
    info = f"{name}-1.0.dist-info"
    files = {f"{name}/__init__.py": "VALUE = 42\n",
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    files[f"{info}/RECORD"] = "".join(f"{p},,\n" for p in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(dist_dir / f"{name}-1.0-py3-none-any.whl", "w") as z:
        for p, text in files.items():
            z.writestr(p, text)


@pytest.fixture
def offline_index(tmp_path, monkeypatch):
    """pip sees only a local folder of wheels (here: `aisfake`); the index is never asked."""
    dists = tmp_path / "dists"
    _wheel(dists, "aisfake")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(dists))
    monkeypatch.setenv("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    return dists


STDLIB_PLOT = {"plot.py": "import json\n"}  # the fixture's plot.py imports matplotlib, which no offline index has
IMPORTS = """\
from __future__ import annotations
import argparse, json, os.path as osp
import numpy as np
from sklearn.metrics import accuracy_score
import PIL.Image
import cv2
import npeet.entropy_estimators as ee
import datasets  # the template's own datasets.py, not the `datasets` package
from ema_pytorch import EMA  # the template's own file too
try:
    import wandb
except ImportError:
    wandb = None
"""


def test_packages_inferred_from_the_imports(tmp_path):
    folder = _folder(tmp_path, "imports", IMPORTS, **{"datasets.py": "import pandas as pd\n",
                                                      "ema_pytorch.py": "from torch import nn\n"})
    assert imports.requirements(folder) == ["matplotlib", "npeet", "numpy", "opencv-python", "pandas", "pillow",
                                            "scikit-learn", "torch"]  # matplotlib: plot.py
    found = {i.module: i for i in imports.third_party(folder)}
    assert found["npeet.entropy_estimators"].where() == "experiment.py:7"
    assert found["sklearn.metrics"].package == "scikit-learn"
    assert not {"datasets", "ema_pytorch", "wandb", "argparse", "os.path", "__future__"} & set(found)
    req = requirements_of(provisional(folder, cache=tmp_path / "cache"))
    assert req.inferred and req.text.split() == imports.requirements(folder)
    assert not (folder / "requirements.txt").exists(), "the user's folder is only read"


def test_a_folder_whose_packages_this_python_has_runs_on_it(tmp_path):
    assert imports.requirements(AIS) == ["matplotlib"]  # plot.py; this interpreter has it: nothing to build
    assert experiment_python(provisional(AIS, cache=tmp_path), tmp_path, log=lambda s: None) == sys.executable


def test_environment_built_offline_from_the_imports_and_checked(tmp_path, offline_index):
    folder = _folder(tmp_path, "fakeuse", "import json\nimport aisfake\nprint(aisfake.VALUE)\n", **STDLIB_PLOT)
    template = provisional(folder, cache=tmp_path / "cache")
    said = []
    py = experiment_python(template, tmp_path / "cache", log=said.append)
    assert py.startswith(str(tmp_path / "cache" / "envs")) and "aisfake" in said[0]
    assert experiment_python(template, tmp_path / "cache", log=said.append) == py and len(said) == 1  # cached
    line = check_environment(template, tmp_path / "cache")  # the built env: each module imported in the sandbox
    assert line == f"environment: {py} imports all 1 module(s) the template imports"
    with pytest.raises(InputError, match=r"do not import with .*aisfake \(experiment.py:2: ModuleNotFoundError"):
        check_environment(template, tmp_path / "cache", override=sys.executable)


def test_a_package_not_on_the_index_fails_before_any_run(tmp_path, offline_index, capsys):
    folder = _folder(tmp_path, "needs_npeet", "import aisfake\nimport npeet.entropy_estimators as ee\n", **STDLIB_PLOT)
    with pytest.raises(PackageNotFound) as err:
        experiment_python(provisional(folder, cache=tmp_path / "c"), tmp_path / "c", log=lambda s: None)
    msg = str(err.value)
    assert "npeet (imported as npeet.entropy_estimators at experiment.py:2) is not on the package index" in msg
    assert "No matching distribution found for npeet" in msg and "--python" in msg and "requirements.txt" in msg
    assert not list((tmp_path / "c" / "envs").glob("*/bin")), "a failed build leaves no half-made environment"
    _scripted(folder)
    sandbox = tmp_path / "sandbox"
    assert run_cli("run", folder / "ideas.json", "--idea", "momentum", "--sandbox", sandbox) == 2
    line = _one_error_line(capsys)
    assert "npeet" in line and "No matching distribution found for npeet" in line
    assert not (tmp_path / "orch_home" / "baselines").exists(), "refused before the baseline runs"
    assert not sandbox.exists() or not [p for p in sandbox.iterdir() if not p.name.startswith(".")]
    assert run_cli("check", folder / "ideas.json", "--all") == 2  # check resolves the packages, installs nothing
    assert "No matching distribution found for npeet" in _one_error_line(capsys)


def test_check_all_with_python_imports_every_module(tmp_path, capsys):
    ok = _folder(tmp_path, "ok", "import json\nimport pydantic\nfrom rich.console import Console\n")
    assert run_cli("check", ok / "ideas.json", "--all", "--python", sys.executable) == 0
    out = capsys.readouterr().out.splitlines()
    assert [ln.split("'")[1] for ln in out if ln.startswith("ok: idea")] == ["learning_rate", "momentum"]
    assert f"environment: {sys.executable} imports all 4 module(s) the template imports" in out  # and plot.py's two
    assert out[-1] == "ok: 2 idea(s) checked on 1 template(s)"
    bad = _folder(tmp_path, "bad", "import json\n\nimport npeet_is_not_here.entropy_estimators as ee\n")
    assert run_cli("check", bad / "ideas.json", "--idea", "momentum", "--python", sys.executable) == 2
    line = _one_error_line(capsys)
    assert ("1 module(s) the template imports do not import with" in line and "npeet_is_not_here.entropy_estimators "
            "(experiment.py:3: ModuleNotFoundError: No module named 'npeet_is_not_here')" in line)
    assert "--python" in line
    _scripted(bad)  # run says the same before its baseline runs
    assert run_cli("run", bad / "ideas.json", "--idea", "momentum", "--python", sys.executable,
                   "--sandbox", tmp_path / "sandbox") == 2
    assert _one_error_line(capsys) == line
    assert not (tmp_path / "orch_home" / "baselines").exists() and not list((tmp_path / "sandbox").iterdir())
    assert run_cli("check", bad / "ideas.json", "--all", "--python", str(tmp_path / "nopython")) == 2
    assert "not a working Python" in _one_error_line(capsys)


def test_repeated_idea_names_get_a_suffix_and_a_warning(tmp_path, capsys):
    from orchestrator.fleet import expand_ideas
    from orchestrator.spec import load_idea

    folder = tmp_path / "templates" / "gd"
    shutil.copytree(AIS, folder)
    ideas = json.loads((folder / "ideas.json").read_text())
    ideas.append({**ideas[1], "Title": "Momentum again, another way"})  # grokking's ideas.json repeats names so
    (folder / "ideas.json").write_text(json.dumps(ideas))
    names = [n for _, n in expand_ideas([folder / "ideas.json"], all_=True, idea_name=None, warn=lambda s: None)]
    assert names == ["learning_rate", "momentum", "momentum_2"]
    second = load_idea(folder / "ideas.json", idea_name="momentum_2")
    assert second.idea.name == "momentum_2" and second.idea.title == "Momentum again, another way"
    assert load_idea(folder / "ideas.json", idea_name="momentum").idea.title == ideas[1]["Title"]
    assert second.warnings == [f"{folder / 'ideas.json'}: warning: entry 3 repeats the idea name 'momentum' of "
                               "entry 2: it is named 'momentum_2' here"]
    assert run_cli("check", folder / "ideas.json", "--all") == 0
    cap = capsys.readouterr()
    assert "ok: idea 'momentum_2'" in cap.out and "ok: 3 idea(s) checked" in cap.out
    assert [ln for ln in cap.err.splitlines() if ln.strip()] == second.warnings
