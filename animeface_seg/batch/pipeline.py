"""The streaming batch run: decode, segment and write overlap, with bounded memory.

A feeder thread pulls jobs from the source (a finite list or an endless live source) and
hands them to decoding threads (a clip's frames come from one thread, one at a time, as the
slots for decoded images allow); the calling thread groups decoded images into device batches
(``ShapeBatcher``: full, idle time-out, end of input), runs the networks, and hands results to
writing threads. Every stage reports to one event queue, so finished writes are reported as
soon as they land and a partial batch never waits for inputs that may never come. Every
queue is bounded, so memory stays flat however many inputs a run has. Each job ends as
exactly one ``Outcome``; a bad file fails alone. The work of each step is
``stages.py``'s, shared with the Ray actors; this module only moves inputs between threads.
"""

from __future__ import annotations

import queue
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from animeface_seg.batch.clips import ClipTally, selected_frames
from animeface_seg.batch.discovery import Job
from animeface_seg.batch.outcome import Outcome
from animeface_seg.batch.settings import RunSettings
from animeface_seg.batch.stages import Decoded, Stages, Work
from animeface_seg.engine.batcher import ShapeBatcher
from animeface_seg.engine.segmentor import Segmentation, Segmentor

#: Longest single wait of the calling thread, so Ctrl-C is seen promptly on every platform.
_POLL = 0.25
#: The end of a clip's frames.
_END = object()


@dataclass(frozen=True)
class _Settled:
    """An input's outcome (``None``: a frame written that was not its clip's last); ``arrived`` when it also ends
    the input's decoding (settled before decoding, or a clip's decoding ended), not when a write settles it."""

    outcome: Outcome | None
    arrived: bool


@dataclass(frozen=True)
class _Decoded:
    """A still or a frame, decoded and ready for a batch."""

    item: Decoded


@dataclass(frozen=True)
class _Opened:
    """A clip was opened; the frame numbers it will give, when its header says."""

    job: Job
    frames: range | None


@dataclass(frozen=True)
class _Frame:
    """A frame of a clip is written, or (not ``written``) was found complete with ``--skip-existing``."""

    job: Job
    written: bool


@dataclass(frozen=True)
class _Fed:
    """The source is exhausted after ``count`` jobs."""

    count: int


@dataclass(frozen=True)
class _Raised:
    """The source, or a thread meant never to fail, raised ``error``: the caller's error, raised there."""

    error: BaseException


_Event = _Settled | _Decoded | _Opened | _Frame | _Fed | _Raised


class FrameProgress(Protocol):
    """What a front-end may learn of clips while they run (called from the thread consuming the outcomes)."""

    def clip_opened(self, job: Job, frames: int | None) -> None:
        """A clip was opened; ``frames`` it will give, when its header says."""

    def frame_done(self, job: Job, written: bool) -> None:
        """One frame of a clip is written, or (not ``written``) found complete with ``--skip-existing``."""

    def clip_cut(self, job: Job, frames: int) -> None:
        """A stop cut a clip short (it gets no outcome); ``frames`` of its frames have all their files in place."""


class _Run:
    """The state of one ``process`` call; its threads talk to the caller only through ``events``."""

    def __init__(self, jobs: Iterable[Job], segmentor: Segmentor, settings: RunSettings,
                 progress: FrameProgress | None) -> None:
        self.stages = Stages(segmentor, settings)
        self.progress = progress
        workers, batch = settings.workers, settings.batch_size
        self.events: queue.SimpleQueue[_Event] = queue.SimpleQueue()
        # Jobs handed to the decoding threads and not yet decoded to their end (a clip holds its place
        # until its last frame): one per thread, so no job waits in a queue holding nothing but a place.
        self.job_slots = threading.Semaphore(workers)
        # Images (stills, frames) decoding or waiting for a batch: more than the batcher may hold, so
        # groups can fill; taken by the decoding threads, given back when the batch runs.
        self.decode_slots = threading.Semaphore(max(2 * workers, 2 * batch) + 1)
        self.write_slots = threading.Semaphore(2 * workers + batch)
        self.stop = threading.Event()
        self.decoders = ThreadPoolExecutor(workers, thread_name_prefix="decode")
        self.writers = ThreadPoolExecutor(workers, thread_name_prefix="write")
        self.batcher: ShapeBatcher[Decoded] = ShapeBatcher(
            batch, key=lambda item: item.shape, timeout=settings.flush_after, limit=self.stages.batch_limit)
        self.feeder = threading.Thread(target=self._feed, args=(jobs,), name="feed", daemon=True)
        self.clips: weakref.WeakSet[ClipTally] = weakref.WeakSet()
        """Clips opened and not yet forgotten: those a stop leaves unfinished drop their videos."""

    def _acquire(self, slots: threading.Semaphore) -> bool:
        """Take a slot, waiting as long as needed; False once the run is stopping."""
        while not slots.acquire(timeout=_POLL):
            if self.stop.is_set():
                return False
        if self.stop.is_set():
            slots.release()
            return False
        return True

    # -- feeder thread --------------------------------------------------------------------------
    def _feed(self, jobs: Iterable[Job]) -> None:
        count = 0
        try:
            for job in jobs:
                count += 1
                work = self.stages.begin(job)
                if isinstance(work, Outcome):
                    self.events.put(_Settled(work, arrived=True))
                else:
                    if not self._acquire(self.job_slots):
                        return
                    decode = self._decode_clip if job.kind.streams_frames else self._decode
                    future = self.decoders.submit(decode, work)
                    future.add_done_callback(self._decoded)
                if self.stop.is_set():
                    return
        except BaseException as exc:  # a failing source is the caller's error, raised there
            self.events.put(_Raised(exc))
        else:
            self.events.put(_Fed(count))

    # -- decoding threads -----------------------------------------------------------------------
    def _decoded(self, future: Future) -> None:
        self.job_slots.release()
        if not future.cancelled() and future.exception() is not None:  # never lose an input
            self.events.put(_Raised(future.exception()))

    def _decode(self, work: Work) -> None:
        """A still: decoded within a slot, or its error outcome."""
        if not self._acquire(self.decode_slots):
            return
        try:
            self.events.put(_Decoded(self.stages.decode(work)))
        except Exception as exc:  # noqa: BLE001 - any failure of one file is that file's error
            self.decode_slots.release()
            self.events.put(_Settled(self.stages.failed(work, exc, "read"), arrived=True))

    def _decode_clip(self, work: Work) -> None:
        """A clip: each frame decoded within a slot and sent on as it comes, so memory stays flat however
        long the clip; then the end of its decoding (with its outcome when nothing of it is in flight)."""
        try:
            clip, tally = self.stages.open_clip(work)
        except Exception as exc:  # noqa: BLE001
            self.events.put(_Settled(self.stages.failed(work, exc, "read"), arrived=True))
            return
        self.clips.add(tally)
        self.events.put(_Opened(work.job, selected_frames(tally.info, self.stages.spec.frame_step)))
        failure = None
        with clip:
            items = self.stages.clip_items(clip, tally)
            while not tally.cancelled:
                if not self._acquire(self.decode_slots):
                    return  # stopping: the clip is left unfinished, its complete frames stay
                try:
                    item = next(items, _END)
                except Exception as exc:  # noqa: BLE001 - a frame that cannot be decoded ends its clip
                    item, failure = _END, exc
                if not isinstance(item, Decoded):
                    self.decode_slots.release()
                if item is _END:
                    break
                self.events.put(_Frame(work.job, False) if item is None else _Decoded(item))
        self.events.put(_Settled(tally.ended(failure), arrived=True))

    # -- calling thread -------------------------------------------------------------------------
    def _run_batch(self, items: list[Decoded]) -> Iterator[Outcome]:
        for _ in items:
            self.decode_slots.release()
        for done in self.stages.segment(items):
            if done is None or isinstance(done, Outcome):
                if done is not None:
                    yield done
                continue
            self.write_slots.acquire()
            future = self.writers.submit(self._write, *done)
            future.add_done_callback(lambda f, item=done[0]: self._written(f, item))

    def _write(self, item: Decoded, result: Segmentation) -> Outcome | None:
        try:
            return self.stages.write(item, result)
        finally:
            self.write_slots.release()

    def _written(self, future: Future[Outcome | None], item: Decoded) -> None:
        try:
            outcome = future.result()
        except BaseException as exc:  # noqa: BLE001 - never lose an input: it fails, the run goes on
            self.events.put(_Raised(exc))
            return
        if item.clip is not None:
            self.events.put(_Frame(item.work.job, True))
        if outcome is not None:
            self.events.put(_Settled(outcome, arrived=False))

    def outcomes(self) -> Iterator[Outcome]:
        self.feeder.start()
        total: int | None = None
        arrived = finished = 0
        try:
            while total is None or finished < total:
                deadline = self.batcher.next_deadline()
                wait = _POLL if deadline is None else min(_POLL, max(0.0, deadline - time.monotonic()))
                try:
                    event = self.events.get(timeout=wait)
                except queue.Empty:
                    event = None
                batches: list[list[Decoded]] = []
                match event:
                    case _Settled(outcome, arrived=ended):
                        arrived += ended
                        if outcome is not None:
                            finished += 1
                            yield outcome
                    case _Decoded(item):
                        arrived += item.clip is None
                        batches += self.batcher.add(item)
                    case _Fed(count):
                        total = count
                    case _Raised(error):
                        raise error
                    case _Opened() | _Frame():
                        self._tell(event)
                batches += self.batcher.due()
                if arrived == total:  # nothing is decoding any more: what the batcher holds is all there is
                    batches += self.batcher.drain()
                for batch in batches:
                    for outcome in self._run_batch(batch):
                        finished += 1
                        yield outcome
        except KeyboardInterrupt:
            self.stop.set()
            self.decoders.shutdown(wait=False, cancel_futures=True)
            self.writers.shutdown(wait=True)
            yield from self._drain()
            raise
        finally:
            self.stop.set()
            self.decoders.shutdown(wait=False, cancel_futures=True)
            self.writers.shutdown(wait=True)
            for tally in list(self.clips):
                tally.abandon()

    def _drain(self) -> Iterator[Outcome]:
        """Once stopped and every write has landed: the outcomes and frames still queued, then the clips cut short."""
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                break
            if isinstance(event, _Settled) and event.outcome is not None:
                yield event.outcome
            elif isinstance(event, _Frame):
                self._tell(event)
        self._cut_clips()

    def _tell(self, event: _Opened | _Frame) -> None:
        """Pass news of a clip on to ``progress``, if anyone listens."""
        if self.progress is None:
            return
        if isinstance(event, _Opened):
            self.progress.clip_opened(event.job, None if event.frames is None else len(event.frames))
        else:
            self.progress.frame_done(event.job, event.written)

    def _cut_clips(self) -> None:
        """Drop the videos of clips a stop left unfinished, telling ``progress`` how many frames of each stay."""
        for tally in list(self.clips):
            frames = tally.abandon()
            if frames is not None and self.progress is not None:
                self.progress.clip_cut(tally.job, frames)


def process(jobs: Iterable[Job], segmentor: Segmentor, settings: RunSettings,
            progress: FrameProgress | None = None) -> Iterator[Outcome]:
    """Run every job and yield one ``Outcome`` per job as it finishes (a clip's once its last frame is written).

    ``jobs`` may be endless (a live source): a partial batch runs once it has waited
    ``settings.flush_after`` seconds. Ctrl-C in the calling thread stops taking new inputs: the
    batch in flight is discarded, outputs already being written are finished and reported, then
    ``KeyboardInterrupt`` is re-raised. Nothing partial is left on disk: a clip cut short keeps the
    frames whose files were all written, and gets no outcome. ``progress`` hears of clips' frames, and of
    clips a stop cut short (``FrameProgress.clip_cut``).
    """
    return _Run(jobs, segmentor, settings, progress).outcomes()
