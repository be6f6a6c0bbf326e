"""Bad input, as a careful user meets it: each case answers with exit code 2, exactly one line on stderr
naming the problem, no traceback, and leaves no workspace behind (the sandbox stays empty)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import DONE, TINY, cli_subprocess, exp, make_idea


class Inputs:
    """Files the cases point at, made on first use in the test's folder."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.sb = tmp / "sb"

    @property
    def idea(self) -> Path:
        if not (self.tmp / "tiny.json").exists():
            make_idea(self.tmp, [exp(1, 1, DONE)], max_runs=1)
        return self.tmp / "tiny.json"

    def file(self, name: str, data: bytes | str) -> Path:
        p = self.tmp / name
        p.write_bytes(data if isinstance(data, bytes) else data.encode())
        return p

    def idea_with(self, **fields) -> Path:
        idea = json.loads(self.idea.read_text())
        idea.update(fields)
        return self.file(f"idea_{len(list(self.tmp.iterdir()))}.json", json.dumps(idea))

    def template_with(self, *, toml_extra: str = "", baseline: bytes | None = None, edit=None) -> Path:
        dst = self.tmp / f"tpl{len(list(self.tmp.iterdir()))}"
        shutil.copytree(TINY, dst)
        if edit is not None:
            (dst / "template.toml").write_text(edit((dst / "template.toml").read_text()))
        if toml_extra:
            with open(dst / "template.toml", "a") as fh:
                fh.write(toml_extra)
        if baseline is not None:
            (dst / "run_0" / "final_info.json").write_bytes(baseline)
        return dst

    def binary_transcript_idea(self) -> Path:
        self.file("bin.transcript.jsonl", b"\xff\xfe\x00garbage\x80\n")
        return self.idea_with(transcript="bin.transcript.jsonl")

    def not_workspace(self) -> Path:
        d = self.tmp / "plain"
        d.mkdir(exist_ok=True)
        return d

    def empty_journal_ws(self) -> Path:
        """A workspace whose orchestrator was killed right after making it: a journal of one event."""
        proc = cli_subprocess("run", self.idea, "--sandbox", self.tmp / "made",
                              env={"ORCHESTRATE_FAULT": "after:workspace_created:1"})
        assert proc.returncode == -9, proc.stderr
        return next(p for p in (self.tmp / "made").iterdir() if p.is_dir())


def _ai_scientist_list(i: Inputs) -> Path:
    tdir = i.tmp / "templates" / "tiny"
    if not tdir.exists():
        shutil.copytree(TINY, tdir)
    p = tdir / "ideas.json"
    p.write_text(json.dumps([{"Title": "No name here", "Experiment": "x"}]))
    return p


def _bound(i: Inputs, expr: str) -> Path:
    return i.template_with(toml_extra=f'\n[[checks]]\npath = "eval.error"\nmax = "{expr}"\n')


def _verifies_nothing(text: str) -> str:
    text = text.replace('required_keys = ["training.steps_executed", "training.final_loss", "eval.error"]', "")
    text = text.split("[[checks]]")[0] + "[goals]" + text.split("[goals]")[1]
    return text


S = "--sandbox"
CASES = [  # (id, argv from the inputs, a phrase the one line must contain)
    ("max-runs 0", lambda i: ["run", i.idea, S, i.sb, "--max-runs", "0"], "--max-runs: must be 1 or more"),
    ("max-runs abc", lambda i: ["run", i.idea, S, i.sb, "--max-runs", "abc"], "not a whole number"),
    ("max-attempts 0", lambda i: ["run", i.idea, S, i.sb, "--max-attempts", "0"], "--max-attempts: must be 1 or more"),
    ("timeout -5", lambda i: ["run", i.idea, S, i.sb, "--timeout", "-5"], "--timeout: must be more than 0"),
    ("timeout nan", lambda i: ["run", i.idea, S, i.sb, "--timeout", "nan"], "must be a finite number"),
    ("timeout inf", lambda i: ["run", i.idea, S, i.sb, "--timeout", "inf"], "must be a finite number"),
    ("ideas -n 0", lambda i: ["ideas", "sae", "-n", "0", S, i.sb], "-n: must be 1 or more"),
    ("ideas --top -1", lambda i: ["ideas", "sae", "--top", "-1", S, i.sb], "--top: must be 1 or more"),
    ("ideas budget nan", lambda i: ["ideas", "sae", "--budget-usd", "nan", S, i.sb],
     "must be a finite number"),
    ("smoke-timeout 0", lambda i: ["run", i.idea, S, i.sb, "--smoke-timeout", "0"], "--smoke-timeout: must be more than 0"),
    ("budget -1", lambda i: ["run", i.idea, S, i.sb, "--budget-usd", "-1"], "--budget-usd: must be more than 0"),
    ("budget text", lambda i: ["run", i.idea, S, i.sb, "--budget-usd", "ten"], "not a number"),
    ("gpus abc", lambda i: ["run", i.idea, S, i.sb, "--gpus", "abc"], "--gpus: 'abc' is not a comma-separated list"),
    ("gpus empty item", lambda i: ["run", i.idea, S, i.sb, "--gpus", "0,,1"], "--gpus"),
    ("parallel 0", lambda i: ["run", i.idea, S, i.sb, "--parallel", "0"], "--parallel: must be 1 or more"),
    ("parallel -3", lambda i: ["run", i.idea, S, i.sb, "--parallel", "-3"], "--parallel: must be 1 or more"),
    ("stages comma", lambda i: ["run", i.idea, S, i.sb, "--stages", ","], "names nothing"),
    ("stages empty item", lambda i: ["run", i.idea, S, i.sb, "--stages", "experiments,,plots"], "empty name"),
    ("stages unknown", lambda i: ["run", i.idea, S, i.sb, "--stages", "experimnts"], "unknown or unavailable stage"),
    ("executor bogus", lambda i: ["run", i.idea, S, i.sb, "--executor", "k8s"], "invalid choice"),
    ("isolation bogus", lambda i: ["run", i.idea, S, i.sb, "--isolation", "docker"], "invalid choice"),
    ("sandbox is a file", lambda i: ["run", i.idea, S, i.file("afile", "x")], "is a file, not a folder"),
    ("run no idea", lambda i: ["run"], "the following arguments are required: IDEA"),
    ("unknown command", lambda i: ["frobnicate"], "invalid choice: 'frobnicate'"),
    ("idea missing", lambda i: ["run", i.tmp / "nope.json", S, i.sb], "no such file"),
    ("idea is a folder", lambda i: ["run", i.not_workspace(), S, i.sb], "a folder, not an idea file"),
    ("idea not UTF-8", lambda i: ["run", i.file("bin.json", b"\xff\xfe{}"), S, i.sb], "not UTF-8"),
    ("idea bad name", lambda i: ["run", i.idea_with(name="bad name!"), S, i.sb],
     "use 1 to 80 letters, digits, '_', '.' or '-'"),
    ("transcript not UTF-8 (run)", lambda i: ["run", i.binary_transcript_idea(), S, i.sb], "not UTF-8"),
    ("transcript not UTF-8 (check)", lambda i: ["check", i.binary_transcript_idea()], "not UTF-8"),
    ("replay /bin/ls", lambda i: ["replay", "/bin/ls", S, i.sb], "not UTF-8"),
    ("replay rtol -1", lambda i: ["replay", i.idea, S, i.sb, "--rtol", "-1"], "--rtol: must be 0 or more"),
    ("replay rtol nan", lambda i: ["replay", i.idea, S, i.sb, "--rtol", "nan"], "must be a finite number"),
    ("AI Scientist entry without Name", lambda i: ["check", _ai_scientist_list(i)],
     'entry 1 (Title \'No name here\') has no "Name"'),
    ("template is a file", lambda i: ["check", i.idea, "--template", i.file("t.toml", "x")], "a file, not a template"),
    ("template folder without toml", lambda i: ["check", i.idea, "--template", i.not_workspace()],
     "a folder without template.toml"),
    ("template unknown", lambda i: ["check", i.idea, "--template", "nosuch"], "no template.toml in any of"),
    ("baseline not JSON", lambda i: ["check", i.idea, "--template", i.template_with(baseline=b"{not json")],
     "the baseline's results are not valid JSON"),
    ("baseline not an object", lambda i: ["run", i.idea, S, i.sb, "--template", i.template_with(baseline=b"[1, 2]")],
     "must be a JSON object"),
    ("check bound '1 +'", lambda i: ["check", i.idea, "--template",
                                     i.template_with(toml_extra='\n[[checks]]\npath = "eval.error"\nmax = "1 +"\n')],
     "is not an expression"),
    ("check bound 1/0", lambda i: ["check", i.idea, "--template", _bound(i, "1/0")],
     "template.toml: checks[4] (eval.error): max = '1/0' against the baseline's results: divides by zero"),
    ("run bound 1/0", lambda i: ["run", i.idea, S, i.sb, "--template", _bound(i, "1/0")], "divides by zero"),
    ("check bound unknown path", lambda i: ["check", i.idea, "--template", _bound(i, "2 * eval.nosuch")],
     "eval.nosuch is not a number in the results"),
    ("check bound unsupported", lambda i: ["check", i.idea, "--template", _bound(i, "max(1, 2)")],
     "unsupported expression"),
    ("manifest verifies nothing", lambda i: ["run", i.idea, S, i.sb, "--template", i.template_with(edit=_verifies_nothing)],
     "template.toml: verifies nothing"),
    ("editable names a protected file", lambda i: ["check", i.idea, "--template", i.template_with(
        edit=lambda t: t.replace('editable = ["experiment.py"', 'editable = ["*.py"'))],
     "editable: '*.py' names the protected file 'harness.py'"),
    ("export empty journal", lambda i: ["export", i.empty_journal_ws()], "nothing to export"),
    ("export -o missing folder", lambda i: ["export", i.empty_journal_ws(), "-o", i.tmp / "no" / "such" / "t.jsonl"],
     "does not exist"),
    ("export not a workspace", lambda i: ["export", i.not_workspace()], "not a workspace"),
    ("show not a workspace", lambda i: ["show", i.not_workspace()], "not a workspace"),
    ("show width 0", lambda i: ["show", i.not_workspace(), "--width", "0"], "--width: must be 1 or more"),
    ("show tail -1", lambda i: ["show", i.not_workspace(), "--tail", "-1"], "--tail: must be 0 or more"),
    ("show run -1", lambda i: ["show", i.not_workspace(), "--run", "-1"], "--run: must be 0 or more"),
    ("report dpi 0", lambda i: ["report", i.not_workspace(), "--pdf-dpi", "0"], "--pdf-dpi: must be 1 or more"),
    ("resume not a workspace", lambda i: ["resume", i.not_workspace()], "not a workspace"),
    ("list missing sandbox", lambda i: ["list", i.tmp / "nosuch"], "no such folder"),
    ("clean missing sandbox", lambda i: ["clean", i.tmp / "nosuch", "--yes"], "no such folder"),
    ("clean older-than xx", lambda i: ["clean", i.sb, "--older-than", "xx"], "not an age"),
    ("clean state bogus", lambda i: ["clean", i.sb, "--state", "bogus"], "invalid choice"),
    ("init into a non-empty folder", lambda i: ["init", i.tmp], "not an empty folder"),
    ("init bad name", lambda i: ["init", i.tmp / "new", "--name", "a b"], "not a usable template name"),
    ("completion fish", lambda i: ["completion", "fish"], "invalid choice: 'fish'"),
    ("import sandbox is a file", lambda i: ["import", i.file("log.md", "x"), S, i.file("afile2", "x")], "is a file"),
]


def _main(argv: list) -> int:
    from orchestrator.cli import main

    try:
        return main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's refusals exit from inside the parser
        return int(exc.code)


@pytest.mark.parametrize("argv, phrase", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, argv, phrase):
    monkeypatch.chdir(tmp_path)
    inputs = Inputs(tmp_path)
    args = argv(inputs)
    capsys.readouterr()  # what making the inputs printed
    rc = _main(args)
    out = capsys.readouterr()
    lines = out.err.splitlines()
    assert rc == 2, (rc, out.err)
    assert len(lines) == 1, out.err
    assert "Traceback" not in out.err + out.out
    assert phrase in lines[0], lines[0]
    assert not inputs.sb.exists() or not any(inputs.sb.iterdir()), list(inputs.sb.iterdir())
    assert not (tmp_path / "sandbox").exists()  # nothing made in the default place either


def test_the_table_is_large_enough():
    assert len(CASES) >= 40


def test_a_read_only_sandbox_is_refused_in_one_line(tmp_path, capsys):
    sb = tmp_path / "ro"
    sb.mkdir()
    if subprocess.run(["chattr", "+i", str(sb)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here")
    try:
        idea = make_idea(tmp_path, [exp(1, 1, DONE)], max_runs=1)
        rc = _main(["run", idea, "--sandbox", sb, "--stages", "experiments"])
        err = capsys.readouterr().err.splitlines()
        assert rc == 2 and len(err) == 1 and "--sandbox: cannot make a workspace here" in err[0], err
        assert not any(sb.iterdir())
    finally:
        subprocess.run(["chattr", "-i", str(sb)])


def test_bad_input_through_the_real_entry_point(tmp_path):
    """The same answer from a separate process: no traceback, one line, exit 2."""
    proc = cli_subprocess("run", TINY / "nope.json", "--max-runs", "0", "--sandbox", tmp_path / "sb")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "sb").exists()
