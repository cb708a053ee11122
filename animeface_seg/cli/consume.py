"""Taking a run's outcomes to the reporter so that every stop is orderly and every count right.

A stop (Ctrl-C, SIGTERM, or standard output failing) may land while an outcome is being
recorded or while the pipeline waits; either way the pipeline is told once, finishes or
discards what is in flight, and every outcome it still yields is recorded.
"""

from __future__ import annotations

from collections.abc import Iterator

from animeface_seg.batch.outcome import Outcome
from animeface_seg.cli.process_setup import signals_deferred
from animeface_seg.cli.report import Reporter, StreamClosed


def consume(outcomes: Iterator[Outcome], reporter: Reporter) -> KeyboardInterrupt | None:
    """Record every outcome; return the stop that ended the run early (``None`` when it ran to the end)."""
    stop: KeyboardInterrupt | None = None
    forward: KeyboardInterrupt | None = None
    while True:
        try:
            outcome = next(outcomes) if forward is None else outcomes.throw(forward)
            forward = None
        except StopIteration:
            return stop
        except KeyboardInterrupt as exc:  # raised by the pipeline once it has finished its writes
            return stop or exc
        try:
            with signals_deferred():
                reporter.add(outcome)
        except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM or a closed stdout while recording: the record is whole
            if stop is None:
                stop = forward = exc
            elif isinstance(exc, StreamClosed) and not isinstance(stop, StreamClosed):
                stop = exc  # output failing during the drain: its exit code and message win
