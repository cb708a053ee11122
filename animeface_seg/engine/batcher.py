"""Grouping images into device batches: one padded shape per batch, flushed when full,
when the oldest waiting item has waited long enough, or at the end of the input.

The one batching rule, shared by the streaming pipeline, the Python API and the benchmark.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class ShapeBatcher(Generic[T]):
    """Holds items by shape key and hands out batches of at most ``batch_size`` of one key.

    ``max_held`` bounds how many items wait in partial groups (the fullest group runs when it is
    exceeded); ``timeout`` is how long a partial group may wait for company (None: until the end);
    ``limit`` may lower the batch size for a key (what a batch of that shape may hold in memory).
    """

    def __init__(self, batch_size: int, key: Callable[[T], Hashable], *, max_held: int | None = None,
                 timeout: float | None = None, clock: Callable[[], float] = time.monotonic,
                 limit: Callable[[Hashable], int] | None = None) -> None:
        self.batch_size = max(1, batch_size)
        self.key = key
        self.limit = limit
        self.max_held = max_held if max_held is not None else 2 * self.batch_size
        self.timeout = timeout
        self.clock = clock
        self._groups: dict[Hashable, list[T]] = {}
        self._since: dict[Hashable, float] = {}
        self._held = 0

    def __len__(self) -> int:
        return self._held

    def _pop(self, key: Hashable) -> list[T]:
        items = self._groups.pop(key)
        self._since.pop(key)
        self._held -= len(items)
        return items

    def add(self, item: T) -> list[list[T]]:
        """Take one item; returns the batches that are ready because of it (often none)."""
        key = self.key(item)
        if key not in self._groups:
            self._groups[key] = []
            self._since[key] = self.clock()
        self._groups[key].append(item)
        self._held += 1
        if len(self._groups[key]) >= (self.batch_size if self.limit is None else max(1, self.limit(key))):
            return [self._pop(key)]
        if self._held > self.max_held:
            return [self._pop(max(self._groups, key=lambda k: len(self._groups[k])))]
        return []

    def next_deadline(self) -> float | None:
        """Clock time at which the oldest partial group is due, or None when nothing waits or no timeout."""
        if self.timeout is None or not self._since:
            return None
        return min(self._since.values()) + self.timeout

    def due(self) -> list[list[T]]:
        """Partial groups that have waited ``timeout`` or longer."""
        if self.timeout is None:
            return []
        now = self.clock()
        return [self._pop(key) for key, since in list(self._since.items()) if now - since >= self.timeout]

    def drain(self) -> list[list[T]]:
        """Every group still held, as batches (end of input)."""
        return [self._pop(key) for key in list(self._groups)]
