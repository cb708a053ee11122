"""The settings of one ``animeface-seg serve``: where it listens, how it batches, what it refuses."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from animeface_seg.engine.decode import DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class ServeOptions:
    """Everything the service needs besides the segmentor factory, decided once from the command line."""

    host: str = "127.0.0.1"
    port: int = 7860
    model: dict[str, Any] = field(default_factory=dict)
    """``Segmentor.from_pretrained`` arguments shared by every variant (weights, device, precision, runtime)."""
    max_batch: int = 4
    """Most images one network batch holds."""
    max_wait_ms: float = 10.0
    """Longest an image waits for others of its padded shape before its batch runs."""
    queue: int = 64
    """Most images waiting for the networks at once; one more is answered 503."""
    timeout: float = 60.0
    """Seconds a request may wait for its result before it is answered 504."""
    max_body: int = 50 * 1024 * 1024
    """Largest request body in bytes (413 beyond)."""
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    memory_budget: int | None = None
    """Bytes one image may need (0: no limit; None: a share of the machine's memory)."""
    token: str | None = None
    """The bearer token every ``/v1/`` request must carry (None: no token asked)."""
    cors_origins: tuple[str, ...] = ()
    """The browser origins sent CORS headers (none: no CORS headers)."""

    @property
    def loopback(self) -> bool:
        """Whether ``host`` only listens on this machine."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False
