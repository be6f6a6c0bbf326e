"""Agent backends: live aider and transcript replay share one aider edit path (`aider.py`)."""
