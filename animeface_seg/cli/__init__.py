"""The command line: ``app`` (the Typer application) and ``main`` (the console-script entry point)."""

from __future__ import annotations

import sys

from animeface_seg.cli.app import Environment, app
from animeface_seg.cli.process_setup import Terminated, ignore_stop_signals_while_exiting, install_signal_handlers

__all__ = ["Environment", "app", "main"]


def main() -> None:
    """Console-script entry point: stop signals are handled first, so Ctrl-C or SIGTERM while
    torch and the weights load ends with a line and its exit code, never a traceback."""
    install_signal_handlers()
    try:
        from animeface_seg.cli.app import main as run

        run()
    except KeyboardInterrupt as exc:
        sys.stderr.write("animeface-seg: interrupted during start-up\n")
        sys.exit(143 if isinstance(exc, Terminated) else 130)
    finally:
        ignore_stop_signals_while_exiting()
