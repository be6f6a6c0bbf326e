# The two quick-start commands. Both set up whatever is missing first (scripts/setup).
.PHONY: run test setup lint

run:
	scripts/setup
	.venv/bin/orchestrate run ideas/hsae.json

test:
	scripts/setup --test
	ORCHESTRATE_SAE_PYTHON=$$(.venv/bin/python -m orchestrator.pyenv templates/sae) .venv/bin/python -m pytest -q -ra --durations=30

lint:
	.venv/bin/ruff check orchestrator tests benchmarks
