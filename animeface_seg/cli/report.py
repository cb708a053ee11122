"""Everything a run tells the user: progress, per-file errors, JSON records and the summary.

Standard output carries only ``--json`` records (one object per input, flushed at once) so
that ``| jq`` works; everything meant for people goes to standard error.
"""

from __future__ import annotations

import errno
import json
import os
import sys
import time
from collections import Counter
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from animeface_seg.batch.pipeline import Outcome
from animeface_seg.cli.hints import with_hint
from animeface_seg.engine.palette import CLASS_NAMES


def _size(size: tuple[int, int] | None) -> dict[str, int] | None:
    return None if size is None else {"width": size[1], "height": size[0]}


def outcome_record(outcome: Outcome) -> dict:
    """The ``--json`` record of one input."""
    fractions = outcome.class_fractions
    return {
        "input": str(outcome.job.source),
        "status": outcome.status,
        "outputs": {str(kind): str(path) for kind, path in outcome.outputs.items()},
        "error": with_hint(outcome.error, outcome.error_setting),
        "original_size": _size(outcome.original_size),
        "processed_size": _size(outcome.processed_size),
        "class_fractions": None if fractions is None else dict(zip(CLASS_NAMES, fractions)),
        "mask_coverage": outcome.mask_coverage,
        "reason": outcome.reason,
    }


def _is_tty(stream: TextIO) -> bool:
    """A real terminal, whatever FORCE_COLOR says: an animated bar in a log file is noise."""
    try:
        return os.isatty(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False


class _Rate(TextColumn):
    """Images per second so far."""

    def __init__(self) -> None:
        super().__init__("")

    def render(self, task):  # type: ignore[override]
        speed = task.finished_speed or task.speed
        return super().render(task) if speed is None else f"{speed:.2f} img/s"


class StreamClosed(KeyboardInterrupt):
    """Standard output failed (closed pipe, closed or full stream): an orderly stop, like Ctrl-C.

    A ``KeyboardInterrupt`` so the pipeline's stop path (finish the writes in flight, report
    them) handles it; its message and ``exit_code`` say what happened.
    """

    def __init__(self, error: OSError) -> None:
        from animeface_seg.cli.exit_codes import ExitCode

        broken = isinstance(error, BrokenPipeError)
        self.exit_code = ExitCode.STDOUT_CLOSED if broken else ExitCode.STDOUT_FAILED
        why = "the program reading it exited" if broken else (error.strerror or str(error))
        super().__init__(f"cannot write to standard output ({why}); stopped after the files in progress "
                         "were written")


def _silence(stream: TextIO) -> None:
    """Point a failed real stdout at /dev/null, so the interpreter's last flush raises nothing either."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError, AttributeError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


class Reporter:
    """Collects outcomes, shows progress on a terminal, and prints the closing summary."""

    def __init__(self, total: int, *, json_lines: bool = False, quiet: bool = False,
                 stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
        self.total = total
        self.json_lines = json_lines
        self.quiet = quiet
        self.stdout = stdout or sys.stdout
        self.console = Console(file=stderr or sys.stderr, highlight=False, soft_wrap=True)
        self.counts: Counter[str] = Counter()
        self.started = time.perf_counter()
        self._progress: Progress | None = None
        self._task = None

    def info(self, message: str) -> None:
        """A line for people (device in use, notices); silent with ``--quiet``."""
        if not self.quiet:
            self.console.print(message, markup=False)

    def __enter__(self) -> Reporter:
        self.started = time.perf_counter()
        if not self.quiet and _is_tty(self.console.file):
            self._progress = Progress(
                TextColumn("segmenting"), BarColumn(), MofNCompleteColumn(), _Rate(),
                TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
                console=self.console, transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task("segmenting", total=self.total)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def add(self, outcome: Outcome) -> None:
        """Record one finished input: error line, JSON record, progress step."""
        self.counts[outcome.status] += 1
        if outcome.status == "error":
            self.console.print(f"error: {outcome.job.source}: {with_hint(outcome.error, outcome.error_setting)}",
                               markup=False)
        if self._progress is not None:
            self._progress.advance(self._task)
        if self.json_lines:
            try:
                if self.stdout is None:
                    raise OSError(errno.EBADF, "standard output is closed")
                self.stdout.write(json.dumps(outcome_record(outcome), ensure_ascii=False) + "\n")
                self.stdout.flush()
            except OSError as exc:
                self.json_lines = False
                if self.stdout is sys.__stdout__:
                    _silence(self.stdout)
                raise StreamClosed(exc) from None

    def summary(self, interrupted: bool = False) -> str:
        """One line: processed, skipped, failed, time and images per second."""
        elapsed = time.perf_counter() - self.started
        done = self.counts["ok"]
        rate = done / elapsed if elapsed > 0 else 0.0
        line = (f"processed {done}, skipped {self.counts['skipped']}, failed {self.counts['error']} "
                f"in {elapsed:.1f} s ({rate:.2f} images/s)")
        if interrupted:
            line += f"; interrupted, {self.total - sum(self.counts.values())} not started"
        return line
