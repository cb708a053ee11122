"""The streaming batch run: decode, segment and write overlap, with bounded memory.

A feeder thread pulls jobs from the source (a finite list or an endless live source) and
hands them to decoding threads; the calling thread groups decoded images into device batches
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
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from animeface_seg.batch.discovery import Job
from animeface_seg.batch.outcome import Outcome
from animeface_seg.batch.settings import RunSettings
from animeface_seg.batch.stages import Decoded, Stages, Work
from animeface_seg.engine.batcher import ShapeBatcher
from animeface_seg.engine.segmentor import Segmentation, Segmentor

#: Longest single wait of the calling thread, so Ctrl-C is seen promptly on every platform.
_POLL = 0.25


class _Run:
    """The state of one ``process`` call; its threads talk to the caller only through ``events``."""

    def __init__(self, jobs: Iterable[Job], segmentor: Segmentor, settings: RunSettings) -> None:
        self.stages = Stages(segmentor, settings)
        workers, batch = settings.workers, settings.batch_size
        self.events: queue.SimpleQueue[tuple] = queue.SimpleQueue()
        # Images decoding or waiting for a batch: more than the batcher may hold, so groups can fill.
        self.decode_slots = threading.Semaphore(max(2 * workers, 2 * batch) + 1)
        self.write_slots = threading.Semaphore(2 * workers + batch)
        self.stop = threading.Event()
        self.decoders = ThreadPoolExecutor(workers, thread_name_prefix="decode")
        self.writers = ThreadPoolExecutor(workers, thread_name_prefix="write")
        self.batcher: ShapeBatcher[Decoded] = ShapeBatcher(
            batch, key=lambda item: item.shape, timeout=settings.flush_after, limit=self.stages.batch_limit)
        self.feeder = threading.Thread(target=self._feed, args=(jobs,), name="feed", daemon=True)

    # -- feeder thread --------------------------------------------------------------------------
    def _feed(self, jobs: Iterable[Job]) -> None:
        count = 0
        try:
            for job in jobs:
                count += 1
                work = self.stages.begin(job)
                if isinstance(work, Outcome):
                    self.events.put(("early", work))
                else:
                    while not self.decode_slots.acquire(timeout=_POLL):
                        if self.stop.is_set():
                            return
                    if self.stop.is_set():
                        return
                    future = self.decoders.submit(self.stages.decode, work)
                    future.add_done_callback(lambda f, work=work: self.events.put(("decoded", work, f)))
                if self.stop.is_set():
                    return
        except BaseException as exc:  # a failing source is the caller's error, raised there
            self.events.put(("source_error", exc))
        else:
            self.events.put(("fed", count))

    # -- calling thread -------------------------------------------------------------------------
    def _run_batch(self, items: list[Decoded]) -> Iterator[Outcome]:
        for _ in items:
            self.decode_slots.release()
        for done in self.stages.segment(items):
            if isinstance(done, Outcome):
                yield done
                continue
            self.write_slots.acquire()
            future = self.writers.submit(self._write, *done)
            future.add_done_callback(self._written)

    def _write(self, item: Decoded, result: Segmentation) -> Outcome:
        try:
            return self.stages.write(item, result)
        finally:
            self.write_slots.release()

    def _written(self, future: Future[Outcome]) -> None:
        try:
            outcome = future.result()
        except BaseException as exc:  # noqa: BLE001 - never lose an input: it fails, the run goes on
            outcome = None
            self.events.put(("write_error", exc))
        if outcome is not None:
            self.events.put(("written", outcome))

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
                if event is not None:
                    kind = event[0]
                    if kind in ("early", "written"):
                        arrived += kind == "early"
                        finished += 1
                        yield event[1]
                    elif kind == "decoded":
                        _, work, future = event
                        arrived += 1
                        exc = future.exception()
                        if exc is not None:
                            self.decode_slots.release()
                            finished += 1
                            yield self.stages.failed(work, exc, "read")
                        else:
                            batches += self.batcher.add(future.result())
                    elif kind == "fed":
                        total = event[1]
                    elif kind in ("source_error", "write_error"):
                        raise event[1]
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
            while True:
                try:
                    event = self.events.get_nowait()
                except queue.Empty:
                    break
                if event[0] in ("early", "written"):
                    yield event[1]
            raise
        finally:
            self.stop.set()
            self.decoders.shutdown(wait=False, cancel_futures=True)
            self.writers.shutdown(wait=True)


def process(jobs: Iterable[Job], segmentor: Segmentor, settings: RunSettings) -> Iterator[Outcome]:
    """Run every job and yield one ``Outcome`` per job as it finishes.

    ``jobs`` may be endless (a live source): a partial batch runs once it has waited
    ``settings.flush_after`` seconds. Ctrl-C in the calling thread stops taking new inputs: the
    batch in flight is discarded, outputs already being written are finished and reported, then
    ``KeyboardInterrupt`` is re-raised. Nothing partial is left on disk.
    """
    return _Run(jobs, segmentor, settings).outcomes()
