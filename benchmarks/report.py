"""`orchestrate report` on a workspace of 10 runs: file size and seconds to generate.

The workspace is made by running the real pipeline (experiments stage) on the tiny template with the
scripted ten-run transcript (tests/fixtures/views_ten*), plus a plots stage's figure so an embedded image
is counted. Target: under 2 s and under 5 MB without the PDF's page images.

    .venv/bin/python benchmarks/report.py [--repeat 5] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_workspace(tmp: Path) -> Path:
    from orchestrator.cli import main as cli

    os.environ["HOME"] = str(tmp / "home")
    os.environ["ORCHESTRATE_HOME"] = str(tmp / "orch_home")
    os.environ.pop("ORCHESTRATE_MODEL", None)
    sandbox = tmp / "sandbox"
    rc = cli(["run", str(ROOT / "tests" / "fixtures" / "views_ten_idea.json"), "--sandbox", str(sandbox),
              "--stages", "experiments", "--isolation", "none"])
    if rc != 0:
        raise SystemExit(f"the pipeline failed (exit {rc})")
    (ws,) = [p for p in sandbox.iterdir() if not p.name.startswith(".")]
    _add_figure(ws)
    return ws


def _add_figure(ws: Path) -> None:
    """A plots-stage figure (error per run, 100 dpi), recorded as the stage records it."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from orchestrator.events import Artifact, StageFinished, StageStarted
    from orchestrator.journal import Journal

    errors = []
    for run in range(1, 11):
        path = ws / f"run_{run}" / "final_info.json"
        if path.is_file():
            errors.append(json.loads(path.read_text())["eval"]["error"])
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(range(1, len(errors) + 1), errors, marker="o")
    ax.set_xlabel("run")
    ax.set_ylabel("eval.error")
    fig.savefig(ws / "error_by_run.png", dpi=100)
    plt.close(fig)
    j = Journal(ws / ".orchestrate" / "journal.jsonl")
    j.append(StageStarted(stage="plots"))
    j.append(Artifact(stage="plots", kind="figure", path="error_by_run.png"))
    j.append(StageFinished(stage="plots", status="done", summary="1 figure"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the workspace and report (prints where)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="orchestrate-bench-report-"))
    try:
        t0 = time.perf_counter()
        ws = make_workspace(tmp)
        made = time.perf_counter() - t0

        from orchestrator.report import Options, write
        from orchestrator.timeline import build

        tl = build(ws)
        out = tmp / "report.html"
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            write(ws, out, Options(pdf_pages=0))
            times.append(time.perf_counter() - t)
        size = out.stat().st_size
        print(f"workspace: {len(tl.runs)} runs ({len(tl.results)} results), {tl.attempts} attempts, "
              f"{len(tl.stages)} stage(s); made in {made:.1f} s")
        print(f"report: {size / 1e6:.3f} MB ({size:,} bytes); generation: median {statistics.median(times):.3f} s, "
              f"min {min(times):.3f} s, max {max(times):.3f} s over {len(times)} (first includes imports: {times[0]:.3f} s)")
        ok = max(times) < 2.0 and size < 5e6
        print(f"target (< 2 s, < 5 MB without PDF page images): {'met' if ok else 'NOT met'}")
        if args.keep:
            print(f"kept: {ws} and {out}")
        return 0 if ok else 1
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
