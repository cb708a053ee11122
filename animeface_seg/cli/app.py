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
from typing import TYPE_CHECKING, Any, Optional, TextIO

import typer

from animeface_seg.batch.display import shown
from animeface_seg.batch.naming import Layout
from animeface_seg.engine.palette import select_classes
from animeface_seg.cli import options
from animeface_seg.cli.exit_codes import ExitCode
from animeface_seg.cli.hints import with_hint
from animeface_seg.cli.options import DEFAULT_MAX_PIXELS, Encode, Engine, Size
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
    env: Environment = ctx.obj if isinstance(ctx.obj, Environment) else Environment()
    classes = _class_names(class_masks)
    from animeface_seg.engine.errors import EngineError
    from animeface_seg.batch.discovery import InputError

    try:
        if fetch_weights:
            _fetch_weights(unet, abg, weights_dir)
            raise typer.Exit(ExitCode.OK)
        if not inputs:
            raise _fail("no INPUT given. Try: animeface-seg input/ -o out/  (see --help)")
        if output_name is None:
            raise _fail("no output folder given: add -o OUT")
        if not output_name:
            raise _fail("-o is empty: name the output folder (use -o . for the current folder)")
        output = _output_location(output_name, inputs, engine)
        if isinstance(output, Path) and output.exists() and not output.is_dir():
            raise _fail(f"-o {shown(output)} exists and is not a folder")
        if keep_background and cutout:
            raise _fail("--cutout needs the character mask, which --keep-background does not compute "
                        "(the cutout would be the whole picture): drop one of the two")
        if null and "-" not in inputs:
            raise _fail("-0 (--null) describes the list read from standard input: add - to the INPUTs")
        if root is not None and not root.is_dir():
            raise _fail(f"--root {shown(root)} is not a folder")
        if settle is not None and not watch:
            raise _fail("--settle only applies with --watch")
        if watch and engine is Engine.ray:
            raise _fail("--watch runs in this process: it cannot be combined with --engine ray")
        if first_frame and Encode(encode) is not Encode.frames:
            raise _fail("--encode makes videos of clips, --first-frame takes one picture per file: drop one")
        if first_frame and frame_step != 1:
            raise _fail("--frame-step picks frames of a clip, --first-frame takes one picture per file: drop one")
        if json_lines and (env.stdout or sys.stdout) is None:
            raise _fail("--json: standard output is closed, so the records have nowhere to go")
        if review:  # the review page needs a local OUT and never replaces a page of the user's
            from animeface_seg.batch.review import review_problem

            if problem := review_problem(output):
                raise _fail(problem)
        from animeface_seg.batch.settings import output_kinds
        from animeface_seg.cli.request import RunRequest
        from animeface_seg.cli.run import SetupFailed, execute

        request = RunRequest(
            inputs=inputs, output=output, kinds=output_kinds(keep_background, cutout, overlay, classes),
            class_masks=classes, mode="watch" if watch else engine.value, keep_background=keep_background,
            size=size.value, cutout=cutout, overlay=overlay, skip_existing=skip_existing, recursive=recursive,
            device=device, precision=precision, runtime=runtime, batch_size=batch_size, workers=workers, unet=unet, abg=abg,
            weights_dir=weights_dir, max_pixels=max_pixels, quiet=quiet, json_lines=json_lines, layout=layout,
            root=root, null=null, settle=settle, memory_budget=_memory_budget(memory_budget),
            frame_step=frame_step, first_frame=first_frame, encode=Encode(encode).value, review=review,
            ray_options=_ray_options(engine, ray_address, replicas, gpus_per_replica, s3_endpoint))
        try:
            code = execute(request, env)
        except SetupFailed as exc:
            raise _fail(str(exc)) from None
        raise typer.Exit(code)
    except InputError as exc:
        raise _fail(str(exc)) from None
    except EngineError as exc:
        raise _fail(with_hint(str(exc), exc.setting) or "") from None
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM while torch or the weights load
        typer.echo("animeface-seg: interrupted before any input was processed", err=True)
        from animeface_seg.cli.run import stop_code

        raise typer.Exit(stop_code(exc)) from None


def _output_location(output: str, inputs: list[str], engine: Engine) -> Path:
    """OUT as a local ``Path``, or with ``--engine ray`` an object-storage location (see integrations/ray)."""
    from animeface_seg.integrations.ray.storage import is_uri, parse_location

    if engine is Engine.ray:
        try:
            return parse_location(output)  # type: ignore[return-value]  # a StoragePath is a pure path too
        except ValueError as exc:
            raise _fail(str(exc)) from None
    remote = [name for name in [*inputs, output] if is_uri(name)]
    if remote:
        raise _fail(f"{shown(remote[0])}: object storage needs --engine ray (see docs/scaling.md)")
    return Path(output)


def _ray_options(engine: Engine, address: str | None, replicas: int | None, gpus_per_replica: float | None,
                 s3_endpoint: str | None) -> dict[str, Any]:
    """The Ray engine's options (none for the local engine); a malformed cluster address is refused here."""
    if engine is Engine.local:
        return {}
    from animeface_seg.integrations.ray.address import AddressError, check_address

    try:
        check_address(address)
    except AddressError as exc:
        raise _fail(str(exc)) from None
    return dict(address=address, replicas=replicas, gpus_per_replica=gpus_per_replica, s3_endpoint=s3_endpoint)


def _class_names(text: str | None) -> tuple[str, ...]:
    """``--class-masks LIST`` as class names in palette order (none when not given); checked before anything loads."""
    if text is None:
        return ()
    try:
        return select_classes(text)
    except ValueError as exc:
        raise _fail(f"--class-masks: {exc}") from None


def _memory_budget(text: str | None) -> int | None:
    """``--memory-budget SIZE`` in bytes (0: no limit), ``None`` when not given."""
    if text is None:
        return None
    from animeface_seg.engine.memory import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise _fail(f"--memory-budget: {exc}") from None


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
app.command(cls=PanelledCommand, help=HELP, no_args_is_help=True)(command)


def main() -> None:
    """Console-script entry point: the process-wide settings a command may make, then the app."""
    from animeface_seg.cli.process_setup import configure_process

    configure_process()
    app(obj=Environment())
