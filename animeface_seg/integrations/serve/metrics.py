"""``GET /metrics``: the service's counts in the Prometheus text format (0.0.4), kept and written by hand.

Requests to ``/v1/`` by status and their latency, the network batches by size, and the images waiting now.
The request counts are guarded by one lock; the batch counts are the worker's (``BatchQueue.counts``).
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

#: The media type of the text exposition format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Upper bounds (seconds) of the latency histogram's buckets; ``+Inf`` is added.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: Where the requests counted are: the segmentation API, not the health check or the scrape.
COUNTED_PREFIX = "/v1/"


class Metrics:
    """Thread-safe counts of one service: ``request`` records, ``text`` writes the exposition."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._statuses: Counter[int] = Counter()
        self._latency_buckets = [0] * len(LATENCY_BUCKETS)
        self._latency_sum = 0.0
        self._latency_count = 0

    def request(self, status: int, seconds: float) -> None:
        """One request answered with ``status`` after ``seconds``."""
        with self._lock:
            self._statuses[status] += 1
            first = bisect_left(LATENCY_BUCKETS, seconds)
            for index in range(first, len(LATENCY_BUCKETS)):
                self._latency_buckets[index] += 1
            self._latency_sum += seconds
            self._latency_count += 1

    def text(self, batch_sizes: Mapping[int, int], queue_depth: int) -> str:
        """Every metric in the text exposition format, with the batch worker's counts of batches by size and
        ``queue_depth`` images waiting now."""
        with self._lock:
            lines = ["# HELP animeface_seg_requests_total Requests to /v1/ answered, by status code.",
                     "# TYPE animeface_seg_requests_total counter"]
            lines += [f'animeface_seg_requests_total{{status="{status}"}} {count}'
                      for status, count in sorted(self._statuses.items())]
            lines += ["# HELP animeface_seg_request_seconds Time from a /v1/ request's arrival to its answer.",
                      "# TYPE animeface_seg_request_seconds histogram"]
            lines += [f'animeface_seg_request_seconds_bucket{{le="{bound:g}"}} {count}'
                      for bound, count in zip(LATENCY_BUCKETS, self._latency_buckets)]
            lines += [f'animeface_seg_request_seconds_bucket{{le="+Inf"}} {self._latency_count}',
                      f"animeface_seg_request_seconds_sum {self._latency_sum!r}",
                      f"animeface_seg_request_seconds_count {self._latency_count}",
                      "# HELP animeface_seg_batches_total Network batches run, by their number of images.",
                      "# TYPE animeface_seg_batches_total counter"]
            lines += [f'animeface_seg_batches_total{{size="{size}"}} {count}'
                      for size, count in sorted(batch_sizes.items())]
        lines += ["# HELP animeface_seg_queue_depth Images waiting for (or in) a network batch now.",
                  "# TYPE animeface_seg_queue_depth gauge", f"animeface_seg_queue_depth {queue_depth}"]
        return "\n".join(lines) + "\n"


class CountRequests:
    """ASGI middleware recording each ``/v1/`` request's status and latency in ``metrics`` (500 when the
    application fails before answering)."""

    def __init__(self, app: Callable[..., Any], metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(COUNTED_PREFIX):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sent(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            self.metrics.request(status, time.perf_counter() - started)
