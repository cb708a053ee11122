"""``animeface-seg serve``: the HTTP service's command, its options checked, the networks loaded, then served.

The command's own first argument ``serve`` leads here (``app.RootCommand``); the model options are the
command's declarations (``options.py``). The service itself is ``integrations/serve``.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import typer

from animeface_seg.cli import options
from animeface_seg.cli.exit_codes import ExitCode
from animeface_seg.cli.hints import with_hint
from animeface_seg.cli.options import DEFAULT_MAX_PIXELS
from animeface_seg.cli.panels import PanelledCommand

HELP = """Serve the segmentor over HTTP: POST an image to /v1/segment, get its map (or ?kind=mask, cutout,
overlay, a class name) as PNG, or with Accept: application/json its record. Concurrent requests share
network batches. Needs the serve extra: pip install 'animeface-seg[serve]'. OpenAPI docs at /docs.

\b
Examples:
  animeface-seg serve --port 7860
  curl --data-binary @a.png 'http://127.0.0.1:7860/v1/segment?kind=mask' -o a_mask.png

SIGTERM or Ctrl-C stops accepting, answers the requests in flight and exits 0.
"""

#: The environment variable holding the token when --token-file is not given.
TOKEN_VARIABLE = "ANIMEFACE_SEG_TOKEN"


def command(
    ctx: typer.Context,
    host: options.Host = "127.0.0.1",
    port: options.Port = 7860,
    max_batch: options.MaxBatch = 4,
    max_wait_ms: options.MaxWaitMs = 10.0,
    queue: options.Queue = 64,
    timeout: options.Timeout = 60.0,
    max_body: options.MaxBody = 50 * 1024 * 1024,
    token_file: options.TokenFile = None,
    cors_origin: options.CorsOrigin = None,
    device: options.Device = "auto",
    precision: options.Precision = "auto",
    runtime: options.Runtime = "auto",
    unet: options.Unet = None,
    abg: options.Abg = None,
    weights_dir: options.WeightsDir = None,
    max_pixels: options.MaxPixels = DEFAULT_MAX_PIXELS,
    memory_budget: options.MemoryBudget = None,
) -> None:
    """Check the options, load the networks (every refusal one error line, exit 2), then serve until stopped."""
    from animeface_seg.cli.app import Environment
    from animeface_seg.engine.errors import EngineError

    env: Environment = ctx.obj if isinstance(ctx.obj, Environment) else Environment()
    if importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("uvicorn") is None:
        raise _fail("serve needs FastAPI and uvicorn: pip install 'animeface-seg[serve]'")
    from animeface_seg.cli.flags import FlagError
    from animeface_seg.cli.flags import memory_budget as budget_bytes
    from animeface_seg.integrations.serve.options import ServeOptions
    from animeface_seg.integrations.serve.segment import Variants
    from animeface_seg.integrations.serve.server import open_warning, serve

    try:
        budget = budget_bytes(memory_budget)
    except FlagError as exc:
        raise _fail(str(exc)) from None
    model = dict(unet=unet, abg=abg, weights_dir=weights_dir, precision=precision, runtime=runtime, device=device)
    settings = ServeOptions(host=host, port=port, model=model, max_batch=max_batch, max_wait_ms=max_wait_ms,
                            queue=queue, timeout=timeout, max_body=max_body, max_pixels=max_pixels,
                            memory_budget=budget, token=_token(token_file),
                            cors_origins=tuple(cors_origin or ()))
    if warning := open_warning(settings):
        typer.echo(f"animeface-seg: WARNING: {warning}", err=True)
    variants = Variants(env.segmentor_factory, model)
    try:
        segmentor = variants.get(True, "original")
    except EngineError as exc:
        raise _fail(with_hint(str(exc), exc.setting) or "") from None
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM while the networks load
        from animeface_seg.cli.run import stop_code

        typer.echo("animeface-seg serve: interrupted before serving", err=True)
        raise typer.Exit(stop_code(exc)) from None
    typer.echo(f"animeface-seg: networks loaded ({segmentor.description}); serving on http://{host}:{port}, "
               "POST images to /v1/segment", err=True)
    if not serve(settings, variants):
        raise _fail(f"could not serve on {host}:{port} (see above)")
    raise typer.Exit(ExitCode.OK)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"animeface-seg serve: error: {message}", err=True)
    return typer.Exit(ExitCode.USAGE)


def _token(token_file: Path | None) -> str | None:
    """The token from ``--token-file`` (its first line), else ``$ANIMEFACE_SEG_TOKEN``, else None."""
    if token_file is None:
        return os.environ.get(TOKEN_VARIABLE) or None
    try:
        lines = token_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(f"--token-file {token_file}: {getattr(exc, 'strerror', None) or exc}") from None
    if not lines or not lines[0].strip():
        raise _fail(f"--token-file {token_file} is empty: put the token on its first line")
    return lines[0].strip()


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
app.command(cls=PanelledCommand, help=HELP)(command)
