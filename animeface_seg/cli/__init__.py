"""The command line: ``app`` (the Typer application) and ``main`` (the console-script entry point)."""

from animeface_seg.cli.app import Environment, app, main

__all__ = ["Environment", "app", "main"]
