"""From runs to a reviewed paper: wall time of the plots, writeup, compile and review stages, and the
pages and figures of the PDF they make.

By default it runs the offline hsae idea (ideas/hsae.json with its scripted transcript) from the
start in a temporary sandbox, then reads the stage times from the journal: the experiments are not
timed, the four paper stages are, with and without the agent's latency (replayed replies still go
through aider's edit path; a live model's latency would come on top). Target on 2 CPU cores: under
2 minutes for the four stages, excluding model latency.

    .venv/bin/python benchmarks/paper.py [IDEA.json] [--workspace WS] [--isolation auto|none|bwrap]

--workspace reads an existing workspace's journal instead of running anything.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PAPER_STAGES = ("plots", "writeup", "compile", "review")


def measure(ws: Path) -> dict:
    from orchestrator.events import Artifact, Exchange, RunFinished, StageFinished, StageStarted
    from orchestrator.journal import Journal
    from orchestrator.runner import tool

    j = Journal(ws / ".orchestrate" / "journal.jsonl")
    out: dict = {"workspace": str(ws), "stages": {}}
    for stage in ("experiments", *PAPER_STAGES):
        started, finished = j.last(StageStarted, stage=stage), j.last(StageFinished, stage=stage)
        if not started or not finished:
            continue
        latency = sum(e.latency_s for e in j.of(Exchange, stage=stage))
        procs = sum(e.wall_s for e in j.events if isinstance(e, RunFinished) and e.phase in _phases(stage)
                    and started.seq < e.seq < finished.seq)
        out["stages"][stage] = {"wall_s": round(finished.ts - started.ts, 2), "agent_latency_s": round(latency, 2),
                                "processes_s": round(procs, 2), "exchanges": len(j.of(Exchange, stage=stage)),
                                "summary": finished.summary}
    paper = [s for s in PAPER_STAGES if s in out["stages"]]
    out["paper_wall_s"] = round(sum(out["stages"][s]["wall_s"] for s in paper), 2)
    out["paper_wall_excl_agent_s"] = round(out["paper_wall_s"] - sum(out["stages"][s]["agent_latency_s"] for s in paper), 2)
    pdf = ws / "paper.pdf"
    if pdf.is_file():
        info = tool(["pdfinfo", str(pdf)]).stdout
        out["pages"] = next((int(ln.split()[1]) for ln in info.splitlines() if ln.startswith("Pages:")), None)
        images = tool(["pdfimages", "-list", str(pdf)]).stdout.splitlines()[2:]
        out["images_in_pdf"] = len([ln for ln in images if len(ln.split()) > 2 and ln.split()[2] == "image"])
    figs = [a for a in j.of(Artifact, stage="plots") if a.kind == "figure" and a.ok]
    out["figures_made"] = sorted({a.path for a in figs})
    review = ws / "review.json"
    if review.is_file():
        data = json.loads(review.read_text())
        rep = data["integrity"]
        out["review"] = {"overall": (data.get("review") or {}).get("overall"),
                         "integrity_findings": len(rep["findings"]),
                         "numbers_matched": f"{rep['numbers_matched']}/{rep['numbers_checked']}"}
    return out


def _phases(stage: str) -> tuple[str, ...]:
    return {"experiments": ("smoke", "full"), "plots": ("plot",), "compile": ("latex", "chktex")}.get(stage, ())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("idea", nargs="?", type=Path, default=ROOT / "ideas" / "hsae.json")
    ap.add_argument("--workspace", type=Path)
    ap.add_argument("--isolation", default="auto")
    ap.add_argument("--python", help="the experiment interpreter (e.g. /tmp/dpenv/bin/python)")
    ap.add_argument("--json", action="store_true", help="print the measurements as JSON")
    args = ap.parse_args()
    if args.workspace:
        ws = args.workspace
    else:
        sandbox = Path(tempfile.mkdtemp(prefix="bench-paper-"))
        cmd = [sys.executable, "-m", "orchestrator.cli", "run", str(args.idea), "--sandbox", str(sandbox),
               "--isolation", args.isolation] + (["--python", args.python] if args.python else [])
        env = {k: v for k, v in os.environ.items() if k != "ORCHESTRATE_MODEL"}
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stdout[-4000:], proc.stderr[-4000:], sep="\n")
            return proc.returncode
        ws = next(p for p in sandbox.iterdir() if p.is_dir() and not p.name.startswith("."))
    m = measure(ws)
    if args.json:
        print(json.dumps(m, indent=2))
        return 0
    print(f"workspace: {m['workspace']}  ({os.cpu_count()} CPU cores)")
    print(f"{'stage':<12}{'wall s':>9}{'agent s':>9}{'procs s':>9}{'asks':>6}  summary")
    for stage, s in m["stages"].items():
        print(f"{stage:<12}{s['wall_s']:>9.2f}{s['agent_latency_s']:>9.2f}{s['processes_s']:>9.2f}{s['exchanges']:>6}  "
              f"{s['summary'][:70]}")
    print(f"plots+writeup+compile+review: {m['paper_wall_s']:.2f} s wall, {m['paper_wall_excl_agent_s']:.2f} s without "
          "the agent's latency (target < 120 s)")
    print(f"PDF: {m.get('pages', 'no')} page(s), {m.get('images_in_pdf', 0)} embedded image(s); "
          f"figures made: {', '.join(m['figures_made']) or 'none'}")
    if "review" in m:
        r = m["review"]
        print(f"review: overall {r['overall']}, {r['integrity_findings']} integrity finding(s), "
              f"numbers matched {r['numbers_matched']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
