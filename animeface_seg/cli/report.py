"""Everything a run tells the user: progress, per-file errors, JSON records and the summary.

Standard output carries only ``--json`` records (one object per input, flushed at once) so
that ``| jq`` works; everything meant for people goes to standard error, with file names escaped
so one input is one line (``batch/display.py``).

JSON rule for any file name: records are UTF-8 JSON; a name's undecodable bytes (kept by Python
as lone surrogates U+DC80-U+DCFF, see ``os.fsdecode``) are written as ``\\udcXX`` escapes, so every
line parses and ``os.fsencode(json.loads(line)["input"])`` gives the name's exact bytes back. Where
standard output's encoding is not UTF-8, every non-ASCII character is escaped.
"""

from __future__ import annotations

import codecs
import errno
import json
import os
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import TextIO

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

from animeface_seg.batch.discovery import Job
from animeface_seg.batch.display import shown
from animeface_seg.batch.outcome import Outcome, record
from animeface_seg.cli.hints import with_hint


#: Any surrogate code point: in a ``str`` from the file system these stand for undecodable bytes.
_SURROGATE = re.compile("[\ud800-\udfff]")


def json_line(record: dict, ascii_only: bool = False) -> str:
    """``record`` as one line of JSON that any UTF-8 (or, with ``ascii_only``, ASCII) stream accepts."""
    text = json.dumps(record, ensure_ascii=ascii_only)
    return _SURROGATE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def outcome_record(outcome: Outcome) -> dict:
    """The ``--json`` record of one input, errors with the command's flag hints."""
    return record(outcome, with_hint)


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
    """Collects outcomes, shows progress on a terminal, and prints the closing summary.

    With ``total=None`` (an endless source: watch mode) the terminal shows a status line with the
    counts and the input being processed instead of a bar. The bar counts pictures: a still is one,
    a clip its frames (as many as its header announces once it is opened, corrected as they come).
    """

    def __init__(self, total: int | None, *, json_lines: bool = False, quiet: bool = False,
                 stdout: TextIO | None = None, stderr: TextIO | None = None,
                 on_record: Callable[[dict], None] | None = None) -> None:
        self.total = total
        self.on_record = on_record
        """Also hears every input's record (the manifest in OUT keeps them)."""
        self.json_lines = json_lines
        self.quiet = quiet
        self.stdout = stdout or sys.stdout
        encoding = getattr(self.stdout, "encoding", None) or "utf-8"
        self.ascii_only = codecs.lookup(encoding).name != "utf-8"
        self.console = Console(file=stderr or sys.stderr, highlight=False, soft_wrap=True)
        self.counts: Counter[str] = Counter()
        self.started = time.perf_counter()
        self._progress: Progress | None = None
        self._task = None
        self._lock = threading.Lock()
        self._in_flight: list[Job] = []
        self.frames = 0
        """Frames of clips written (not those found complete with ``--skip-existing``)."""
        self._clip_units: dict[Job, int] = {}
        """Per clip in progress: what it counts for in the bar's total, and frames counted so far."""
        self._clip_frames: Counter[Job] = Counter()
        self._clips_ok = 0
        self._cut: dict[Job, int] = {}
        """Clips a stop cut short (no outcome): frames of each with all their files in place."""

    def info(self, message: str) -> None:
        """A line for people (device in use, notices); silent with ``--quiet``."""
        if not self.quiet:
            self.console.print(message, markup=False)

    def __enter__(self) -> Reporter:
        self.started = time.perf_counter()
        if not self.quiet and _is_tty(self.console.file) and self.total is None:
            self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}", markup=False),
                                      TimeElapsedColumn(), console=self.console, transient=True)
            self._progress.start()
            self._task = self._progress.add_task(self._status(), total=None)
        elif not self.quiet and _is_tty(self.console.file):
            self._progress = Progress(
                TextColumn("segmenting"), BarColumn(), MofNCompleteColumn(), _Rate(),
                TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
                console=self.console, transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task("segmenting", total=self.total,
                                                 completed=sum(self.counts.values()))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def _step(self, advance: int = 0, grow: int = 0) -> None:
        """Move the bar (a bar with a total only) forward by ``advance``, its total by ``grow``."""
        if self._progress is not None and self.total is not None:
            task = self._progress.tasks[0]
            self._progress.update(self._task, advance=advance, total=task.total + grow)

    def clip_opened(self, job: Job, frames: int | None) -> None:
        """A clip was opened: it counts for ``frames`` pictures (when its header says) instead of one."""
        units = frames or 1
        self._clip_units[job] = units
        self._step(grow=units - 1)

    def frame_done(self, job: Job, written: bool) -> None:
        """A frame of a clip is written, or (not ``written``) was complete already."""
        self.frames += written
        self._clip_frames[job] += 1
        grow = 0
        if self._clip_frames[job] > self._clip_units.get(job, 1):
            self._clip_units[job] = self._clip_frames[job]
            grow = 1
        self._step(advance=1, grow=grow)

    def clip_cut(self, job: Job, frames: int) -> None:
        """A stop cut a clip short: it gets no record, and ``frames`` of its frames are whole on disk."""
        self._cut[job] = frames

    def add(self, outcome: Outcome) -> None:
        """Record one finished input: error line, JSON record, progress step."""
        self.counts[outcome.status] += 1
        self._clips_ok += outcome.status == "ok" and outcome.frames is not None
        if outcome.status == "error":
            message = with_hint(outcome.error, outcome.error_setting) or ""
            self.console.print(f"error: {shown(outcome.job.source)}: {shown(message)}", markup=False)
        if self._progress is not None and self.total is None:
            with self._lock:
                if outcome.job in self._in_flight:
                    self._in_flight.remove(outcome.job)
                self._progress.update(self._task, description=self._status())
        elif outcome.job in self._clip_units:  # its frames moved the bar: the total now counts them exactly
            units, counted = self._clip_units.pop(outcome.job), self._clip_frames.pop(outcome.job, 0)
            self._step(advance=0 if counted else 1, grow=max(counted, 1) - units)
        else:
            self._step(advance=1)
        if self.on_record is not None:
            self.on_record(outcome_record(outcome))
        if self.json_lines:
            try:
                if self.stdout is None:
                    raise OSError(errno.EBADF, "standard output is closed")
                self.stdout.write(json_line(outcome_record(outcome), self.ascii_only) + "\n")
                self.stdout.flush()
            except OSError as exc:
                self.json_lines = False
                if self.stdout is sys.__stdout__:
                    _silence(self.stdout)
                raise StreamClosed(exc) from None

    def processing(self, job: Job) -> None:
        """An input was handed to the pipeline (any thread): shown as being processed until its outcome."""
        if self._progress is not None and self.total is None:
            with self._lock:
                self._in_flight.append(job)
                self._progress.update(self._task, description=self._status())

    def _status(self) -> str:
        counts = self.counts
        now = f"processing {shown(self._in_flight[0].source)}" if self._in_flight else "waiting for new images"
        return (f"watching: processed {counts['ok']}, skipped {counts['skipped']}, failed {counts['error']}"
                f" | {now}")

    def summary(self, interrupted: bool = False) -> str:
        """One line: processed (and frames of clips), skipped, failed, time and images (or frames) per second."""
        elapsed = time.perf_counter() - self.started
        done = self.counts["ok"]
        pictures = done - self._clips_ok + self.frames
        rate = pictures / elapsed if elapsed > 0 else 0.0
        frames = f" ({self.frames} frames of clips)" if self.frames else ""
        line = (f"processed {done}{frames}, skipped {self.counts['skipped']}, failed {self.counts['error']} "
                f"in {elapsed:.1f} s ({rate:.2f} {'pictures' if self.frames else 'images'}/s)")
        if self.total is None:
            return line + ("; stopped watching" if interrupted else "")
        if interrupted:
            cut, unstarted = len(self._cut), self.total - sum(self.counts.values()) - len(self._cut)
            kept = f"{cut} clip{'s' * (cut != 1)} cut short ({sum(self._cut.values())} frames in place), " if cut else ""
            line += f"; interrupted, {kept}{unstarted} not started"
        return line
