"""The paper as data: results.tex generated from validated runs (`results`), the LaTeX source read
as structure (`tex`), and the deterministic integrity checks that hold the prose to the runs
(`integrity`)."""
