"""Concurrent requests' images as shared network batches: one worker thread, the engine's ``ShapeBatcher``.

Images of one segmentor variant and padded shape wait at most ``max_wait`` seconds for company, up to
``max_batch`` a batch. At most ``capacity`` images wait at once (``QueueFull`` beyond); an image whose
future was cancelled (its client left, or gave up) before its batch runs is dropped from the batch.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from animeface_seg.engine.batcher import ShapeBatcher

if TYPE_CHECKING:
    from animeface_seg.engine.results import Prepared, Segmentation
    from animeface_seg.engine.segmentor import Segmentor


class QueueFull(Exception):
    """As many images wait as the queue holds."""


@dataclass
class Item:
    """One image waiting for the networks, and the future its request awaits."""

    segmentor: Segmentor
    prepared: Prepared
    key: Hashable
    """Images of equal keys (variant and padded shape) may share a batch."""
    future: Future = field(default_factory=Future)


class BatchQueue:
    """The worker thread and its bounded queue; ``batch_sizes`` counts the batches run by size."""

    def __init__(self, max_batch: int, max_wait: float, capacity: int) -> None:
        self.max_batch = max(1, max_batch)
        self.max_wait = max(0.0, max_wait)
        self.capacity = max(1, capacity)
        self.batch_sizes: Counter[int] = Counter()
        self._inbox: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
        self._waiting = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name="animeface-seg-serve-batches", daemon=True)

    @property
    def depth(self) -> int:
        """Images waiting for (or in) a batch now."""
        return self._waiting

    def counts(self) -> tuple[Counter[int], int]:
        """A consistent copy of ``batch_sizes`` and ``depth``, safe to read from any thread."""
        with self._lock:
            return self.batch_sizes.copy(), self._waiting

    def start(self) -> None:
        self._thread.start()

    def submit(self, segmentor: Segmentor, prepared: Prepared, variant: Hashable) -> Future[Segmentation]:
        """Queue one prepared image for ``segmentor``; its result's future. Raises ``QueueFull``."""
        with self._lock:
            if self._waiting >= self.capacity:
                raise QueueFull(f"{self._waiting} images are waiting already")
            self._waiting += 1
        item = Item(segmentor, prepared, (variant, prepared.padded_shape))
        self._inbox.put(item)
        return item.future

    def close(self) -> None:
        """Run what is queued, then stop the worker."""
        if self._thread.is_alive():
            self._inbox.put(None)
            self._thread.join()

    def _work(self) -> None:
        batcher: ShapeBatcher[Item] = ShapeBatcher(self.max_batch, key=lambda item: item.key,
                                                   max_held=self.capacity, timeout=self.max_wait)
        while True:
            deadline = batcher.next_deadline()
            try:
                item = self._inbox.get(timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                item = False
            if item is None:
                for batch in batcher.drain():
                    self._run(batch)
                return
            for batch in (batcher.add(item) if item else []) + batcher.due():
                self._run(batch)

    def _run(self, batch: list[Item]) -> None:
        """One network batch of the items still wanted; each future gets its result or the batch's error."""
        live = [item for item in batch if item.future.set_running_or_notify_cancel()]
        with self._lock:
            self._waiting -= len(batch)
            if live:
                self.batch_sizes[len(live)] += 1
        if not live:
            return
        try:
            results = live[0].segmentor.run([item.prepared for item in live])
        except Exception as exc:  # noqa: BLE001 - the batch's requests fail, the service goes on
            for item in live:
                item.future.set_exception(exc)
            return
        for item, result in zip(live, results):
            item.future.set_result(result)
