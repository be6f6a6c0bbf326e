"""Exports of a workspace to other tools (the transcript export is agents.replay.export_transcript)."""
