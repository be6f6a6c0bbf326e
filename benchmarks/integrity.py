"""The integrity review's claim check on a planted paper: 5 unsupported and 5 supported claims about
planted per-seed results (3 seeds a run, one single-seed run). Target: all 5 unsupported flagged, no
supported one.

Each planted claim is one line of the LaTeX source ending in `% unsupported: <why>` or `% supported`;
a claim counts as flagged when a claim-* finding points at its line. A claim-* finding on any other
line counts as a false flag.

    .venv/bin/python benchmarks/integrity.py [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KEY_METRICS = ["core.explained_variance", "core.l0", "synthetic.absorption_rate", "core.kl_div_score"]
GOALS = {"core.explained_variance": "max", "core.l0": "min", "synthetic.absorption_rate": "min", "core.kl_div_score": "max"}
SEEDS = {
    "run0": {"core.l0": [40.1, 40.5, 39.8], "core.explained_variance": [0.900, 0.903, 0.897],
             "synthetic.absorption_rate": [0.30, 0.32, 0.31], "core.kl_div_score": [0.95, 0.96, 0.955]},
    "run1": {"core.l0": [30.2, 29.8, 30.5], "core.explained_variance": [0.902, 0.899, 0.905],
             "synthetic.absorption_rate": [0.20, 0.21, 0.19], "core.kl_div_score": [0.951, 0.958, 0.96]},
    "run2": {"core.l0": [45.0, 45.6, 44.8], "core.explained_variance": [0.950, 0.952, 0.948],
             "synthetic.absorption_rate": [0.33, 0.34, 0.335], "core.kl_div_score": [0.97, 0.972, 0.968]},
    "run3": {"core.l0": [20.0], "core.explained_variance": [0.91], "synthetic.absorption_rate": [0.25],
             "core.kl_div_score": [0.96]},
}

PAPER = r"""\documentclass{article}
\usepackage{orchestrate}
\input{results}
\begin{document}
\begin{abstract}
We compare three variants of a sparse autoencoder against the flat baseline over three seeds each.
\end{abstract}
\section{Results}
Table~\ref{tab:results} lists the key metrics of every run (mean and 95\% interval over three seeds).
Run 1 reduces L0 from \result{run0}{core.l0} to \result{run1}{core.l0}. % supported
Run 2 improves the explained variance over the baseline (\diff{run2}{core.explained_variance}). % supported
Run 1 achieves a lower absorption rate than the baseline (\result{run1}{synthetic.absorption_rate} against \result{run0}{synthetic.absorption_rate}). % supported
Run 1 outperforms run 2 on L0 (\result{run1}{core.l0} against \result{run2}{core.l0}), at the same dictionary size. % supported
The explained variance of run 1 does not differ significantly from the baseline's (\diff{run1}{core.explained_variance}). % supported
Run 1 also improves the explained variance (\result{run1}{core.explained_variance} against \result{run0}{core.explained_variance}). % unsupported: not significant
Run 3 reaches a much lower L0 than the baseline (\result{run3}{core.l0}). % unsupported: single seed
With its wider dictionary, run 2 improved L0 from \result{run0}{core.l0} to \result{run2}{core.l0}. % unsupported: against the goal (min)
Run 2 lowers the absorption rate relative to the baseline. % unsupported: the data say higher
Run 1 keeps its KL-div score at \result{run1}{core.kl_div_score}. This is a clear improvement over the baseline. % unsupported: not significant, claimed in the next sentence
We trained every variant for the same number of steps on the same activations.
\section{Conclusion}
The hierarchy of the planted features is recovered by every variant; we leave larger dictionaries to future work.
\end{document}
"""


def planted() -> dict[int, str]:
    """line -> "supported" | "unsupported" for each planted claim."""
    out = {}
    for n, line in enumerate(PAPER.splitlines(), 1):
        m = re.search(r"%\s*(supported|unsupported)", line)
        if m:
            out[n] = m.group(1)
    return out


def measure() -> dict:
    from orchestrator.paper import tex as texmod
    from orchestrator.paper.integrity import ClaimInputs, PaperInputs, check

    results = "\n".join(texmod.stat_macros(SEEDS, keys=KEY_METRICS)) + "\n"
    rep = check(PaperInputs(tex=PAPER, text=texmod.source_text(PAPER, results), results_tex=results,
                            claims=ClaimInputs(seeds=SEEDS, goals=GOALS, key_metrics=KEY_METRICS)))
    claims = [f for f in rep.findings if f.kind.startswith("claim-")]
    flagged_lines = {int(f.where.rsplit(":", 1)[1]) for f in claims}
    truth = planted()
    out = {
        "unsupported": sum(1 for v in truth.values() if v == "unsupported"),
        "supported": sum(1 for v in truth.values() if v == "supported"),
        "unsupported_flagged": sum(1 for n, v in truth.items() if v == "unsupported" and n in flagged_lines),
        "supported_flagged": sum(1 for n, v in truth.items() if v == "supported" and n in flagged_lines),
        "false_flags_elsewhere": sum(1 for n in flagged_lines if n not in truth),
        "findings": [f"{f.where} {f.kind}: {f.message}" for f in claims],
        "notes": rep.notes,
    }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out = measure()
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"unsupported claims flagged: {out['unsupported_flagged']} of {out['unsupported']} (target: all)")
    print(f"supported claims flagged:   {out['supported_flagged']} of {out['supported']} (target: none)")
    print(f"claim findings on other lines: {out['false_flags_elsewhere']}")
    for line in out["findings"]:
        print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
