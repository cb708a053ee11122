"""Running the service under uvicorn: the warning of an open, tokenless listener, and a graceful stop.

On SIGTERM (or Ctrl-C) uvicorn stops accepting, finishes the requests in flight, then the application's
shutdown runs what is still queued; ``serve`` returns normally, within ``GRACE_SECONDS``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from animeface_seg.integrations.serve.options import ServeOptions

if TYPE_CHECKING:
    import uvicorn

    from animeface_seg.integrations.serve.segment import Variants

#: Longest the requests in flight may take to finish once a stop is asked for.
GRACE_SECONDS = 25


def open_warning(options: ServeOptions) -> str | None:
    """The warning for a listener other machines can reach with no token asked, else None."""
    if options.loopback or options.token is not None:
        return None
    return (f"serving on {options.host}, reachable from other machines, WITHOUT a token: anyone who can "
            "reach this port can use it. Give --token-file F (or $ANIMEFACE_SEG_TOKEN), or --host 127.0.0.1")


def server(options: ServeOptions, variants: Variants) -> uvicorn.Server:
    """The uvicorn server of the service (not started): HTTP/1.1, no proxy headers trusted."""
    import uvicorn

    from animeface_seg.integrations.serve.app import create_app

    config = uvicorn.Config(create_app(options, variants), host=options.host, port=options.port, lifespan="on",
                            proxy_headers=False, server_header=False, timeout_graceful_shutdown=GRACE_SECONDS,
                            log_level="warning")
    return uvicorn.Server(config)


def serve(options: ServeOptions, variants: Variants) -> bool:
    """Serve until stopped by a signal; whether it started (False: the networks or the port failed)."""
    instance = server(options, variants)
    try:
        instance.run()
    except KeyboardInterrupt:  # uvicorn raises the stop signal again once it has shut down gracefully
        pass
    except SystemExit:  # uvicorn's own exit when it cannot start (the port taken, say), its reason logged
        return False
    return instance.started
