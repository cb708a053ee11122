"""The streaming batch run: decode, segment and write overlap, with bounded memory.

A feeder thread pulls jobs from the source (a finite list or an endless live source) and
hands them to decoding threads; the calling thread groups decoded images into device batches
(``ShapeBatcher``: full, idle time-out, end of input), runs the networks, and hands results to
writing threads. Every stage reports to one event queue, so finished writes are reported as
soon as they land and a partial batch never waits for inputs that may never come. Every
queue is bounded, so memory stays flat however many inputs a run has. Each job ends as
exactly one ``Outcome``; a bad file fails alone. An ``error`` outcome lists no outputs: its
set was not written (``skipped`` ones list theirs only when they exist already).
"""

from __future__ import annotations

import functools
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from animeface_seg.batch.discovery import Job
from animeface_seg.batch.naming import NEEDS_SOURCE, OutputKind
from animeface_seg.batch.settings import RunSettings
from animeface_seg.batch.signature import Signature, stale_reason
from animeface_seg.batch.writers import write_outputs
from animeface_seg.engine import memory
from animeface_seg.engine.batcher import ShapeBatcher
from animeface_seg.engine.decode import load_rgb
from animeface_seg.engine.errors import EngineError
from animeface_seg.engine.segmentor import Prepared, Segmentation, Segmentor

Status = Literal["ok", "skipped", "error"]

#: Longest single wait of the calling thread, so Ctrl-C is seen promptly on every platform.
_POLL = 0.25


@dataclass
class Outcome:
    """What happened to one input."""

    job: Job
    status: Status
    outputs: dict[OutputKind, Path] = field(default_factory=dict)
    error: str | None = None
    error_setting: str | None = None
    """The engine setting that governs the error, if any (a front-end names its own flag for it)."""
    reason: str | None = None
    """Why a ``skipped`` input was skipped (the same file as another input, outputs already there)."""
    original_size: tuple[int, int] | None = None
    processed_size: tuple[int, int] | None = None
    class_fractions: tuple[float, ...] | None = None
    mask_coverage: float | None = None
    reason: str | None = None
    """Why it was skipped, or why existing outputs were made again (``--skip-existing``)."""


@dataclass
class _Decoded:
    job: Job
    outputs: dict[OutputKind, Path]
    prepared: Prepared
    source: np.ndarray | None
    reason: str | None = None


def failed_outcome(job: Job, exc: BaseException, prefix: str = "") -> Outcome:
    """The error outcome of a job whose reading, decoding or segmentation raised ``exc`` (any engine)."""
    if isinstance(exc, EngineError):
        text, setting = str(exc), exc.setting
    elif isinstance(exc, OSError):
        text, setting = f"cannot read file: {exc.strerror or exc}", None
    else:
        text, setting = f"{type(exc).__name__}: {exc}", None
    return Outcome(job, "error", {}, prefix + text, setting)


def _decode(job: Job, outputs: dict[OutputKind, Path], segmentor: Segmentor, keep_source: bool,
            max_pixels: int | None, before_load: Callable[[Image.Image], None], reason: str | None) -> _Decoded:
    image = load_rgb(job.source, max_pixels=max_pixels, before_load=before_load)
    return _Decoded(job, outputs, segmentor.prepare(image), image if keep_source else None, reason)


def _write(item: _Decoded, result: Segmentation, info: PngInfo) -> Outcome:
    try:
        write_outputs(result, item.outputs, item.source, info)
    except OSError as exc:
        return Outcome(item.job, "error", {}, f"cannot write output: {exc.strerror or exc}", reason=item.reason)
    return Outcome(item.job, "ok", item.outputs, original_size=result.original_size,
                   processed_size=result.processed_size, class_fractions=result.class_fractions,
                   mask_coverage=result.mask_coverage, reason=item.reason)


def is_done(outputs: dict[OutputKind, Path], signature: Signature | None = None) -> bool:
    """Whether every output of a job is on disk and, given a ``signature``, was made with it
    (``--skip-existing``; see ``signature.stale_reason`` for why not)."""
    return stale_reason(outputs, signature) is None


#: The ``reason`` of an input skipped by ``--skip-existing``.
ALREADY_DONE = "already done"


def early_outcome(job: Job, outputs: dict[OutputKind, Path], skip_existing: bool = False,
                  signature: Signature | None = None) -> Outcome | None:
    """The outcome of a job settled without decoding (failed or skipped before it starts), else ``None``."""
    if job.error:
        return Outcome(job, "error", {}, job.error)
    if job.skip_reason:
        return Outcome(job, "skipped", {}, reason=job.skip_reason)
    if skip_existing and is_done(outputs, signature):
        return Outcome(job, "skipped", outputs, reason=ALREADY_DONE)
    return None


class _Run:
    """The state of one ``process`` call; its threads talk to the caller only through ``events``."""

    def __init__(self, jobs: Iterable[Job], segmentor: Segmentor, settings: RunSettings) -> None:
        self.segmentor = segmentor
        self.settings = settings
        self.keep_source = any(kind in NEEDS_SOURCE for kind in settings.kinds)
        self.signature = Signature.of(segmentor, layout=settings.layout)
        self.png_info = self.signature.png_info()
        self.before_load = functools.partial(
            memory.check_image, budget=settings.memory_budget, device_type=segmentor.device.type,
            remove_background=segmentor.remove_background, output_size=segmentor.output_size,
            keep_source=self.keep_source)
        workers, batch = settings.workers, settings.batch_size
        self.events: queue.SimpleQueue[tuple] = queue.SimpleQueue()
        # Images decoding or waiting for a batch: more than the batcher may hold, so groups can fill.
        self.decode_slots = threading.Semaphore(max(2 * workers, 2 * batch) + 1)
        self.write_slots = threading.Semaphore(2 * workers + batch)
        self.stop = threading.Event()
        self.decoders = ThreadPoolExecutor(workers, thread_name_prefix="decode")
        self.writers = ThreadPoolExecutor(workers, thread_name_prefix="write")
        self.batcher: ShapeBatcher[_Decoded] = ShapeBatcher(
            batch, key=lambda item: item.prepared.padded_shape, timeout=settings.flush_after)
        self.feeder = threading.Thread(target=self._feed, args=(jobs,), name="feed", daemon=True)

    # -- feeder thread --------------------------------------------------------------------------
    def _feed(self, jobs: Iterable[Job]) -> None:
        count = 0
        try:
            for job in jobs:
                count += 1
                outputs = self.settings.outputs(job)
                early = early_outcome(job, outputs, self.settings.skip_existing, self.signature)
                if early is not None:
                    self.events.put(("early", early))
                else:
                    reason = stale_reason(outputs, self.signature) if self.settings.skip_existing else None
                    if reason is not None and not any(path.is_file() for path in outputs.values()):
                        reason = None  # nothing made yet: no news for the record
                    while not self.decode_slots.acquire(timeout=_POLL):
                        if self.stop.is_set():
                            return
                    if self.stop.is_set():
                        return
                    future = self.decoders.submit(_decode, job, outputs, self.segmentor, self.keep_source,
                                                  self.settings.max_pixels, self.before_load, reason)
                    future.add_done_callback(lambda f, job=job, outputs=outputs:
                                             self.events.put(("decoded", job, outputs, f)))
                if self.stop.is_set():
                    return
        except BaseException as exc:  # a failing source is the caller's error, raised there
            self.events.put(("source_error", exc))
        else:
            self.events.put(("fed", count))

    # -- calling thread -------------------------------------------------------------------------
    def _run_batch(self, items: list[_Decoded]) -> Iterator[Outcome]:
        for _ in items:
            self.decode_slots.release()
        try:
            results = self.segmentor.run([item.prepared for item in items])
        except (RuntimeError, ValueError) as exc:
            for item in items:
                yield failed_outcome(item.job, exc, "segmentation failed: ")
            return
        for item, result in zip(items, results):
            self.write_slots.acquire()
            future = self.writers.submit(_write, item, result, self.png_info)
            future.add_done_callback(self._written)

    def _written(self, future: Future[Outcome]) -> None:
        self.write_slots.release()
        self.events.put(("written", future.result()))

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
                batches: list[list[_Decoded]] = []
                if event is not None:
                    kind = event[0]
                    if kind in ("early", "written"):
                        arrived += kind == "early"
                        finished += 1
                        yield event[1]
                    elif kind == "decoded":
                        _, job, outputs, future = event
                        arrived += 1
                        exc = future.exception()
                        if exc is not None:
                            self.decode_slots.release()
                            finished += 1
                            yield failed_outcome(job, exc)
                        else:
                            batches += self.batcher.add(future.result())
                    elif kind == "fed":
                        total = event[1]
                    elif kind == "source_error":
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
