"""orchestrator: an experiment-agent orchestrator that only reports runs that did their work."""

__version__ = "0.1.0"
