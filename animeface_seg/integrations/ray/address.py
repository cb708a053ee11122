"""Ray cluster addresses: checked for form before Ray is imported, and for reachability before joining,
so a typo or a cluster that is down ends the run within seconds instead of hanging in ``ray.init``."""

from __future__ import annotations

import re
import socket

from animeface_seg.engine.errors import EngineError

#: How long joining waits for a TCP answer from the cluster's address (seconds).
CONNECT_TIMEOUT = 5.0

_HOST_PORT = re.compile(r"^(?:(?P<scheme>ray)://)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})$")


class AddressError(EngineError):
    """A cluster address that is malformed or that nothing answers at."""

    def __init__(self, message: str) -> None:
        super().__init__(message, setting="ray_address")


def check_address(address: str | None, origin: str = "--ray-address") -> None:
    """Raise ``AddressError`` unless ``address`` is None, ``auto``, ``local``, ``host:port`` or ``ray://host:port``."""
    if address is None or address in ("auto", "local"):
        return
    match = _HOST_PORT.match(address.strip())
    if match is None or not 0 < int(match["port"]) < 65536:
        raise AddressError(f"{origin} {address!r} is not a Ray cluster address (use HOST:PORT, ray://HOST:PORT, "
                           "auto or local)")


def check_reachable(address: str, origin: str = "--ray-address", timeout: float = CONNECT_TIMEOUT) -> None:
    """Raise ``AddressError`` when nothing accepts a TCP connection at ``host:port`` within ``timeout``."""
    check_address(address, origin)
    match = _HOST_PORT.match(address.strip())
    if match is None:  # auto or local: Ray finds (or starts) the instance itself
        return
    host = match["host"].strip("[]")
    try:
        with socket.create_connection((host, int(match["port"])), timeout=timeout):
            return
    except OSError as exc:
        why = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise AddressError(f"cannot reach the Ray cluster at {address} ({origin}): {why}; start it with "
                           "`ray start --head` or check the address") from None
