"""The command's exit codes, one named set for every mode."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What the exit status of ``animeface-seg`` means."""

    OK = 0
    """Every input was processed or skipped."""
    FAILED = 1
    """Some inputs failed; the others were written."""
    USAGE = 2
    """Usage or set-up error: nothing was processed."""
    STDOUT_FAILED = 74
    """Standard output could not be written (closed, or the disk is full); the run stopped in order."""
    INTERRUPTED = 130
    """Stopped by Ctrl-C after finishing the files being written."""
    STDOUT_CLOSED = 141
    """The program reading standard output exited (``| head``); the run stopped in order."""
    TERMINATED = 143
    """Stopped by SIGTERM after finishing the files being written."""
