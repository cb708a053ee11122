"""The ``animeface-seg`` command: parse paths and flags, then hand over to the batch layer.

Nothing heavy is imported at module level: ``--help`` and ``--version`` answer without
loading torch. The app is a module-level object so tests can invoke it in-process with an
``Environment`` (streams, how the segmentor is built) passed as the Click context object.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Optional, TextIO

import typer

from animeface_seg.batch.naming import Layout
from animeface_seg.cli import options
from animeface_seg.cli.exit_codes import ExitCode
from animeface_seg.cli.hints import with_hint
from animeface_seg.cli.options import DEFAULT_MAX_PIXELS, Engine, Size
from animeface_seg.cli.panels import PanelledCommand

if TYPE_CHECKING:
    from animeface_seg.engine.segmentor import Segmentor

HELP = """Segment anime characters in images: a colour-coded face-part map and a character mask.

For every input image, writes OUT/<name>.png (the map: background yellow, hair blue, eye red,
mouth white, face green, skin cyan, clothes magenta) and OUT/<name>_mask.png (the character
mask), removing the background first unless --keep-background is given. Videos (.mp4 .mov
.mkv .webm .avi) and animated GIF/PNG/WebP (and multi-page TIFF) give a folder of frames,
OUT/<name>/000001.png, OUT/<name>/000001_mask.png, ... Folders are searched recursively and
mirrored under OUT. Every output path is planned and checked before the networks load:
outputs that would meet, or inputs inside OUT, stop the run (exit 2). Every input's record
(as --json prints it) is kept in OUT/animeface-seg-manifest.jsonl, which later runs extend.

\b
Examples:
  animeface-seg photos/ -o out/
  animeface-seg photos/ -o out/ --skip-existing --json > results.jsonl
  find . -name '*.png' | animeface-seg - -o out/ --device cpu
  find in/ -type f -newer t -print0 | animeface-seg - -0 --root in/ -o out/
  animeface-seg data/ -o train/ --layout by-kind  # train/maps/, masks/
  animeface-seg data/ -o out/ --class-masks hair,eye  # out/<name>_hair.png
  animeface-seg clip.mp4 -o out/ --frame-step 5  # out/clip/000001.png, ...
  animeface-seg --fetch-weights  # download both weight files ahead of time
  animeface-seg inbox/ -o out/ --watch  # then images dropped into inbox/
  animeface-seg photos/ -o out/ --overlay --review  # then see out/index.html

The first argument serve starts the HTTP service instead (animeface-seg serve --help); a folder
named serve is given as ./serve.

Exit codes: 0 all done, 1 some inputs failed (the others were written), 2 usage or set-up
error (nothing was processed), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM), 141 the
reader of standard output exited, 74 standard output could not be written. With --watch,
Ctrl-C or SIGTERM ends with 0 or 1.
"""


def _build_segmentor(**options: Any) -> Segmentor:
    from animeface_seg.engine.segmentor import Segmentor

    return Segmentor.from_pretrained(**options)


@dataclass
class Environment:
    """What the command reads and writes besides files: its streams and how it builds the segmentor.

    ``None`` streams mean the process's own, looked up when used (so test runners can swap them).
    """

    stdin: Optional[TextIO] = None
    stdout: Optional[TextIO] = None
    stderr: Optional[TextIO] = None
    segmentor_factory: Callable[..., "Segmentor"] = field(default=_build_segmentor)


def _fail(message: str, code: ExitCode = ExitCode.USAGE) -> typer.Exit:
    typer.echo(f"animeface-seg: error: {message}", err=True)
    return typer.Exit(code)


def _fetch_weights(unet: Path | None, abg: Path | None, weights_dir: Path | None) -> None:
    """Resolve (downloading if needed) and check both weight files, then print where they are."""
    from animeface_seg.engine.weights import ABG, UNET, load, resolve

    for spec, path in ((UNET, unet), (ABG, abg)):
        location = resolve(spec, path, weights_dir)
        load(spec, location)
        typer.echo(f"{spec.filename}: {location}")


def command(
    ctx: typer.Context,
    inputs: options.Inputs = None,
    output_name: options.Output = None,
    keep_background: options.KeepBackground = False,
    size: options.OutputSize = Size.original,
    cutout: options.Cutout = False,
    overlay: options.Overlay = False,
    class_masks: options.ClassMasks = None,
    skip_existing: options.SkipExisting = False,
    recursive: options.Recursive = True,
    device: options.Device = "auto",
    precision: options.Precision = "auto",
    runtime: options.Runtime = "auto",
    batch_size: options.BatchSize = None,
    workers: options.Workers = None,
    unet: options.Unet = None,
    abg: options.Abg = None,
    weights_dir: options.WeightsDir = None,
    max_pixels: options.MaxPixels = DEFAULT_MAX_PIXELS,
    quiet: options.Quiet = False,
    json_lines: options.JsonLines = False,
    layout: options.OutputLayout = Layout.MIRROR,
    root: options.Root = None,
    null: options.Null = False,
    watch: options.Watch = False,
    settle: options.Settle = None,
    engine: options.EngineChoice = Engine.local,
    ray_address: options.RayAddress = None,
    replicas: options.Replicas = None,
    gpus_per_replica: options.GpusPerReplica = None,
    s3_endpoint: options.S3Endpoint = None,
    frame_step: options.FrameStep = 1,
    first_frame: options.FirstFrame = False,
    encode: options.EncodeAs = "frames",
    memory_budget: options.MemoryBudget = None,
    review: options.Review = False,
    fetch_weights: options.FetchWeights = False,
    version: options.Version = None,
) -> None:
    """Check the flags (``flags.py``), then run the request they make; every refusal is one error line."""
    flags = SimpleNamespace(**{name: value for name, value in locals().items() if name != "ctx"})
    env: Environment = ctx.obj if isinstance(ctx.obj, Environment) else Environment()
    from animeface_seg.batch.discovery import InputError
    from animeface_seg.cli.flags import FlagError, class_names, run_request
    from animeface_seg.engine.errors import EngineError

    try:
        classes = class_names(class_masks)
        if fetch_weights:
            _fetch_weights(unet, abg, weights_dir)
            raise typer.Exit(ExitCode.OK)
        request = run_request(flags, classes, env.stdout or sys.stdout)
        from animeface_seg.cli.run import SetupFailed, execute

        try:
            code = execute(request, env)
        except SetupFailed as exc:
            raise _fail(str(exc)) from None
        raise typer.Exit(code)
    except (FlagError, InputError) as exc:
        raise _fail(str(exc)) from None
    except EngineError as exc:
        raise _fail(with_hint(str(exc), exc.setting) or "") from None
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM while torch or the weights load
        typer.echo("animeface-seg: interrupted before any input was processed", err=True)
        from animeface_seg.cli.run import stop_code

        raise typer.Exit(stop_code(exc)) from None


class RootCommand(PanelledCommand):
    """The command, whose first argument ``serve`` runs ``animeface-seg serve`` (``serve.py``) instead."""

    def main(self, args: list[str] | None = None, prog_name: str | None = None, **extra: Any) -> Any:
        arguments = list(sys.argv[1:] if args is None else args)
        if arguments[:1] == ["serve"]:
            import typer.main

            from animeface_seg.cli.serve import app as serve_app

            serve = typer.main.get_command(serve_app)
            return serve.main(arguments[1:], prog_name=f"{prog_name or 'animeface-seg'} serve", **extra)
        return super().main(args, prog_name, **extra)


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
app.command(cls=RootCommand, help=HELP, no_args_is_help=True)(command)


def main() -> None:
    """Console-script entry point: the process-wide settings a command may make, then the app."""
    from animeface_seg.cli.process_setup import configure_process

    configure_process()
    app(obj=Environment())
