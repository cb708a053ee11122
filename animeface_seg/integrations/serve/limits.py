"""What a request may send and who may send it: the body limit, the bearer token, and errors as JSON answers."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.requests import Request


class ServeError(Exception):
    """A request answered with ``status`` and the JSON body ``{"error": message}``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


async def read_body(request: Request, max_body: int) -> bytes:
    """The whole body, refused (413) from its declared length, or as soon as more than ``max_body`` bytes came."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_body:
        raise ServeError(413, f"the body is {int(declared):,} bytes, over the limit of {max_body:,}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_body:
            raise ServeError(413, f"the body is over the limit of {max_body:,} bytes")
    return bytes(body)


def check_token(authorization: str | None, token: str | None) -> None:
    """Refuse (401) a request whose ``Authorization: Bearer`` does not carry ``token``, compared in constant time."""
    if token is None:
        return
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise ServeError(401, "missing or wrong token: send Authorization: Bearer <token>",
                         {"WWW-Authenticate": "Bearer"})
