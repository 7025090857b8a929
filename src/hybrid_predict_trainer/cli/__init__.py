"""The ``hpt`` command line (typer + rich)."""
