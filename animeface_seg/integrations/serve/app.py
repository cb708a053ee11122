"""The FastAPI application: ``GET /healthz``, ``GET /metrics`` and ``POST /v1/segment``, every error a JSON
``{"error": ...}``.

A request's path: its body read within the limit (``limits.py``), decoded and prepared in a worker thread
(``segment.py``), queued for a shared network batch (``batching.py``), then rendered as the PNG of the kind
asked for, or as its JSON record. No endpoint reads a path or fetches a URL; CORS headers are sent only to the
origins ``--cors-origin`` names.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from concurrent.futures import Future
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from animeface_seg.batch.kinds import kind_named, needing_mask
from animeface_seg.engine.errors import EngineError, ImageDecodeError
from animeface_seg.integrations.serve.batching import BatchQueue, QueueFull
from animeface_seg.integrations.serve.limits import ServeError, check_token, read_body
from animeface_seg.integrations.serve.metrics import CONTENT_TYPE, CountRequests, Metrics
from animeface_seg.integrations.serve.options import ServeOptions
from animeface_seg.integrations.serve.segment import SIZES, Variants, decode, png_bytes, result_record

if TYPE_CHECKING:
    from animeface_seg.engine.segmentor import Segmentor

log = logging.getLogger("animeface_seg.serve")
#: How often a waiting request checks whether its client is still there.
POLL_SECONDS = 0.05


def create_app(options: ServeOptions, variants: Variants) -> FastAPI:
    """The service over ``variants``: the default one (background removed) is loaded at start-up, before
    ``/healthz`` answers 200; the batch worker runs from start-up to shutdown (what is queued is finished)."""
    batches = BatchQueue(options.max_batch, options.max_wait_ms / 1000, options.queue)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(variants.get, True, "original")
        batches.start()
        app.state.ready = True
        yield
        app.state.ready = False
        await run_in_threadpool(batches.close)

    app = FastAPI(title="animeface-seg", lifespan=lifespan)
    app.state.ready = False
    app.state.batches = batches
    _add_error_handlers(app)
    metrics = Metrics()
    app.add_middleware(CountRequests, metrics=metrics)
    if options.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(options.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type", "Accept"])

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        """200 once the networks are loaded, 503 before."""
        ready = bool(app.state.ready)
        return JSONResponse({"status": "ready" if ready else "loading"}, status_code=200 if ready else 503)

    @app.get("/metrics")
    async def scrape() -> Response:
        """Requests by status, their latency, the network batches by size and the queue depth (Prometheus)."""
        return Response(metrics.text(*batches.counts()), media_type=CONTENT_TYPE)

    @app.post("/v1/segment", responses={200: {"content": {"image/png": {}, "application/json": {}}}})
    async def segment(request: Request, kind: str = "map", keep_background: bool = False,
                      size: str = "original") -> Response:
        """The image in the body (raw, or multipart field ``image``) segmented: the PNG of ``kind``, or with
        ``Accept: application/json`` its record."""
        check_token(request.headers.get("authorization"), options.token)
        _check_query(kind, size, keep_background)
        body = await _image_bytes(request, options.max_body)
        segmentor = await run_in_threadpool(variants.get, not keep_background, size)
        source, prepared = await run_in_threadpool(_decoded, body, kind, segmentor, options)
        try:
            future = batches.submit(segmentor, prepared, (not keep_background, size))
        except QueueFull as exc:
            raise ServeError(503, f"the queue is full ({exc}): try again shortly", {"Retry-After": "1"}) from None
        result = await _wait(future, request, options.timeout)
        if "application/json" in request.headers.get("accept", ""):
            return JSONResponse(result_record(result))
        return Response(await run_in_threadpool(png_bytes, result, kind, source), media_type="image/png")

    return app


def _check_query(kind: str, size: str, keep_background: bool) -> None:
    """Refuse (400) an unknown output kind or size, or a kind needing the mask the variant does not compute,
    before the body is read."""
    try:
        kind_named(kind)
    except ValueError as exc:
        raise ServeError(400, str(exc)) from None
    if keep_background and needing_mask([kind]):
        raise ServeError(400, f"kind={kind} needs the character mask, which keep_background=true does not "
                         "compute: drop one of the two")
    if size not in SIZES:
        raise ServeError(400, f"size must be one of {', '.join(SIZES)}, not {size!r}")


async def _image_bytes(request: Request, max_body: int) -> bytes:
    """The image's bytes: the raw body, or the multipart form's ``image`` field."""
    body = await read_body(request, max_body)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return body

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async with Request(request.scope, replay).form(max_files=1) as form:
        field = form.get("image")
        if field is None or isinstance(field, str):
            raise ServeError(400, "the multipart form has no file field named image")
        return await field.read()


def _decoded(body: bytes, kind: str, segmentor: Segmentor, options: ServeOptions) -> tuple[Any, Any]:
    """The decoded source and its prepared network input; refusals as their answers (413 for the limits)."""
    try:
        source = decode(body, kind, segmentor, options.max_pixels, options.memory_budget)
    except ImageDecodeError as exc:
        raise ServeError(413 if exc.setting in ("max_pixels", "memory_budget") else 400, str(exc)) from None
    except EngineError as exc:
        raise ServeError(413 if exc.setting == "memory_budget" else 400, str(exc)) from None
    return source, segmentor.prepare(source)


async def _wait(future: Future, request: Request, timeout: float) -> Any:
    """The result of a queued image; its work is dropped when the client leaves (499) or waits too long (504)."""
    waiting = asyncio.wrap_future(future)
    deadline = asyncio.get_running_loop().time() + timeout
    while not waiting.done():
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0 or await request.is_disconnected():
            future.cancel()
            if left > 0:
                raise ServeError(499, "the client closed the connection")
            raise ServeError(504, f"no result within {timeout:g} s: the service is busy, try again")
        await asyncio.wait({waiting}, timeout=min(POLL_SECONDS, left))
    if waiting.exception() is not None:
        log.error("segmentation failed", exc_info=waiting.exception())
        raise ServeError(500, "segmentation failed: see the server's log")
    return waiting.result()


def _add_error_handlers(app: FastAPI) -> None:
    """Every refusal and failure as ``{"error": ...}``; a traceback only ever goes to the server's log."""

    @app.exception_handler(ServeError)
    async def refused(request: Request, exc: ServeError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"error": problems}, status_code=400)

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> JSONResponse:
        log.error("request failed", exc_info=exc)
        return JSONResponse({"error": "internal error: see the server's log"}, status_code=500)
