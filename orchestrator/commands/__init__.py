"""Subcommands that read a workspace (show, report, review, import) live here, one module each,
with `add_arguments(parser)` and `main(args) -> int`. `cli.py` finds them by name."""
