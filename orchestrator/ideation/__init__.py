"""`orchestrate ideas`: ideas for a template, generated and refined by the model (generate), checked
against the literature (novelty, literature), ranked in a pairwise tournament (ranking), recorded in a
journal of their own and written as an ideas file that `orchestrate run IDEAS --all` takes (run)."""
