"""The ``animeface-seg`` command: parse paths and flags, then hand over to the batch layer.

Nothing heavy is imported at module level: ``--help`` and ``--version`` answer without
loading torch. The app is a module-level object so tests can invoke it in-process with an
``Environment`` (streams, how the segmentor is built) passed as the Click context object.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional, TextIO

import typer

from animeface_seg import __version__
from animeface_seg.batch.display import shown
from animeface_seg.batch.naming import Layout
from animeface_seg.engine.palette import CLASS_NAMES, select_classes
from animeface_seg.cli.exit_codes import ExitCode
from animeface_seg.cli.hints import with_hint

if TYPE_CHECKING:
    from animeface_seg.engine.segmentor import Segmentor

#: Same value as ``engine.decode.DEFAULT_MAX_PIXELS`` (checked by a test), kept here so --help needs no engine.
DEFAULT_MAX_PIXELS = 268_435_456

HELP = """Segment anime characters in images: a colour-coded face-part map and a character mask.

For every input image, writes OUT/<name>.png (the map: background yellow, hair blue, eye red,
mouth white, face green, skin cyan, clothes magenta) and OUT/<name>_mask.png (the character
mask), removing the background first unless --keep-background is given. Videos (.mp4 .mov
.mkv .webm .avi) and animated GIF/PNG/WebP (and multi-page TIFF) give a folder of frames,
OUT/<name>/000001.png, OUT/<name>/000001_mask.png, ... (--first-frame: one picture). Folders are searched
recursively and mirrored under OUT. INPUT may be files, folders, or - to read paths from
standard input, one per line (NUL-separated with -0). Every output path is planned and checked
before the networks load: outputs that would meet, or inputs inside OUT, stop the run (exit 2).
Every input's record (as --json prints it) is kept in OUT/animeface-seg-manifest.jsonl, which
later runs into OUT extend.

\b
Examples:
  animeface-seg photos/ -o out/
  animeface-seg photos/ -o out/ --skip-existing --json > results.jsonl
  find . -name '*.png' | animeface-seg - -o out/ --device cpu
  find data/ -type f -newer stamp -print0 | animeface-seg - -0 --root data/ -o out/
  animeface-seg data/ -o train/ --layout by-kind   # train/maps/..., train/masks/...
  animeface-seg data/ -o out/ --class-masks hair,eye  # also out/<name>_hair.png, out/<name>_eye.png
  animeface-seg clip.mp4 -o out/ --frame-step 5  # out/clip/000001.png, out/clip/000006.png, ...
  animeface-seg --fetch-weights            # download the two weight files ahead of time
  animeface-seg inbox/ -o out/ --watch     # then keep processing images dropped into inbox/
  animeface-seg photos/ -o out/ --overlay --review   # then open out/index.html to check them all

Exit codes: 0 all done, 1 some inputs failed (the others were written), 2 usage or set-up
error (nothing was processed), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM), 141 the
reader of standard output exited, 74 standard output could not be written. With --watch,
Ctrl-C or SIGTERM ends with 0 or 1.
"""


class Engine(str, Enum):
    local = "local"
    ray = "ray"


class Encode(str, Enum):
    frames = "frames"
    video = "video"
    both = "both"


class Size(str, Enum):
    original = "original"
    processed = "processed"


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


def _version(value: bool) -> None:
    if value:
        typer.echo(f"animeface-seg {__version__}")
        raise typer.Exit()


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
    inputs: Annotated[Optional[list[str]], typer.Argument(
        metavar="INPUT", help="Image files, folders, or - for a list of paths on standard input.",
        show_default=False)] = None,
    output_name: Annotated[Optional[str], typer.Option(
        "--output", "-o", metavar="OUT", help="Folder for the results (created if missing); "
        "with --engine ray also s3://bucket/prefix or gs://bucket/prefix.", show_default=False)] = None,
    keep_background: Annotated[bool, typer.Option(
        "--keep-background", help="Segment the image as it is: no background removal, no mask file.")] = False,
    size: Annotated[Size, typer.Option(
        "--size", help="Write results at the input's size (original) or at the 512-pixel size the "
        "networks saw (processed, what the ComfyUI node returns).", case_sensitive=False)] = Size.original,
    cutout: Annotated[bool, typer.Option(
        "--cutout", help="Also write <name>_cutout.png: the source with the mask as transparency.")] = False,
    overlay: Annotated[bool, typer.Option(
        "--overlay", help="Also write <name>_overlay.png: the map blended over the source, for checking.")] = False,
    class_masks: Annotated[Optional[str], typer.Option(
        "--class-masks", metavar="LIST", help="Also write a mask per face-part class, <name>_<class>.png "
        f"(by-kind: OUT/<class>/...), 255 where the map has that class: comma-separated from "
        f"{', '.join(CLASS_NAMES)}, or all. E.g. --class-masks hair,eye", show_default=False)] = None,
    skip_existing: Annotated[bool, typer.Option(
        "--skip-existing", help="Resume: skip inputs whose outputs all exist already "
        "(a clip cut short is finished from its missing frames).")] = False,
    recursive: Annotated[bool, typer.Option(
        "--recursive/--no-recursive", help="Search folders recursively.")] = True,
    device: Annotated[str, typer.Option(
        "--device", metavar="auto|cpu|cuda|cuda:N",
        help="Where to run; auto picks CUDA when available. An unavailable CUDA is an error, never a silent fall-back.")] = "auto",
    precision: Annotated[str, typer.Option(
        "--precision", metavar="auto|fp32|fp16|bf16",
        help="Compute precision; auto is fp16 on CUDA and fp32 (exact) on CPU.")] = "auto",
    runtime: Annotated[str, typer.Option(
        "--runtime", metavar="auto|torch|reference|onnxruntime|openvino",
        help="What runs the networks. auto: on CPU the fastest installed (onnxruntime, then openvino, then "
        "torch; for bf16 openvino where the CPU has native bf16), on CUDA torch. reference: the "
        "original's exact arithmetic (OpenCV's resize, the reference extra; torch, no folding, fp32), slower. "
        "onnxruntime/openvino are CPU-only and use an ONNX export cached in $ANIMEFACE_SEG_CACHE "
        "[default: ~/.cache/animeface-seg].")] = "auto",
    batch_size: Annotated[Optional[int], typer.Option(
        "--batch-size", min=1, metavar="N", help="Images per network batch [default: 8 on CUDA, 1 on CPU].",
        show_default=False)] = None,
    workers: Annotated[Optional[int], typer.Option(
        "--workers", min=1, metavar="N", help="Threads for decoding and for writing "
        "[default: 1 on a 2-core CPU, 2 on larger ones, up to 8 with CUDA].", show_default=False)] = None,
    unet: Annotated[Optional[Path], typer.Option(
        "--unet", metavar="PATH", help="UNet.pth to use instead of the Hugging Face download.",
        show_default=False)] = None,
    abg: Annotated[Optional[Path], typer.Option(
        "--abg", metavar="PATH", help="isnetis.ckpt (background removal) to use instead of the download.",
        show_default=False)] = None,
    weights_dir: Annotated[Optional[Path], typer.Option(
        "--weights-dir", metavar="DIR", help="Folder holding UNet.pth and isnetis.ckpt "
        "[default: $ANIMEFACE_SEG_WEIGHTS, else the Hugging Face cache].", show_default=False)] = None,
    max_pixels: Annotated[int, typer.Option(
        "--max-pixels", min=1, metavar="N", help="Refuse images with more pixels than this "
        "(protects against decompression bombs).")] = DEFAULT_MAX_PIXELS,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="No progress bar, device line or summary; errors are still printed.")] = False,
    json_lines: Annotated[bool, typer.Option(
        "--json", help="Print one JSON object per input on standard output (status, outputs, sizes, "
        "class fractions, mask coverage).")] = False,
    layout: Annotated[Layout, typer.Option(
        "--layout", help="mirror: OUT/a/b.png, OUT/a/b_mask.png; by-kind: each kind in its own tree, "
        "OUT/maps/a/b.png, OUT/masks/a/b.png (what ControlNet training expects).",
        case_sensitive=False)] = Layout.MIRROR,
    root: Annotated[Optional[Path], typer.Option(
        "--root", metavar="DIR", help="Place files and folders named directly (or on stdin) under OUT by "
        "their path below DIR, exactly where a run over DIR writes them.", show_default=False)] = None,
    null: Annotated[bool, typer.Option(
        "--null", "-0", help="Paths on standard input are separated by NUL bytes (find -print0).")] = False,
    watch: Annotated[bool, typer.Option(
        "--watch", help="After the first pass keep running: process images that appear or change below the "
        "INPUT folders once they have settled. Ctrl-C or SIGTERM stops it (exit 0, or 1 if any failed).")] = False,
    settle: Annotated[Optional[float], typer.Option(
        "--settle", min=0.0, metavar="SECONDS", help="With --watch: how long a file's size and time must stay "
        "unchanged before it is read [default: 1].", show_default=False)] = None,
    engine: Annotated[Engine, typer.Option(
        "--engine", help="local: this process; ray: a Ray cluster (INPUT and OUT may then be s3:// or gs:// "
        "URIs; see docs/scaling.md).", case_sensitive=False)] = Engine.local,
    ray_address: Annotated[Optional[str], typer.Option(
        "--ray-address", metavar="ADDR", help="Ray cluster to join [default: $RAY_ADDRESS, else start a "
        "local Ray instance].", show_default=False)] = None,
    replicas: Annotated[Optional[int], typer.Option(
        "--replicas", min=1, metavar="N", help="Model actors on the Ray cluster [default: one per GPU, "
        "or without GPUs one per CPU].", show_default=False)] = None,
    gpus_per_replica: Annotated[Optional[float], typer.Option(
        "--gpus-per-replica", min=0.0, metavar="F", help="GPUs each model actor holds [default: 1 when the "
        "cluster has GPUs, else 0].", show_default=False)] = None,
    s3_endpoint: Annotated[Optional[str], typer.Option(
        "--s3-endpoint", metavar="URL", help="S3-compatible endpoint for s3:// URIs [default: "
        "$AWS_ENDPOINT_URL_S3, else $AWS_ENDPOINT_URL, else AWS].", show_default=False)] = None,
    frame_step: Annotated[int, typer.Option(
        "--frame-step", min=1, metavar="N", help="Videos and animated images: take every Nth frame (1, 1+N, ...); "
        "each keeps its number in the source.")] = 1,
    first_frame: Annotated[bool, typer.Option(
        "--first-frame", help="One picture per file: only the first frame of a video or animated image, "
        "written like a still (OUT/<name>.png) instead of a folder of frames.")] = False,
    encode: Annotated[Encode, typer.Option(
        "--encode", help="What a video or animated image gives: frames (a folder of PNGs), video (OUT/<name>.mkv: "
        "the map in lossless FFV1, <name>_mask.mkv, <name>_cutout.webm with alpha, at the source's frame "
        "times), or both.", case_sensitive=False)] = "frames",
    memory_budget: Annotated[Optional[str], typer.Option(
        "--memory-budget", metavar="SIZE", help="Refuse, before decoding, any image estimated to need more "
        "memory than this (e.g. 4G, 512M; 0 = no limit) [default: half the available RAM; on CUDA also "
        "80% of the free GPU memory].", show_default=False)] = None,
    review: Annotated[bool, typer.Option(
        "--review", help="At the end, write OUT/index.html: a page (offline, no network) with thumbnails, class "
        "fractions, mask coverage and failures of every input in OUT, this run's and earlier ones', to sort "
        "and filter.")] = False,
    fetch_weights: Annotated[bool, typer.Option(
        "--fetch-weights", help="Download (or locate) and check both weight files, print their paths, exit.")] = False,
    version: Annotated[Optional[bool], typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")] = None,
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
        from animeface_seg.batch.kinds import select
        from animeface_seg.cli.request import RunRequest
        from animeface_seg.cli.run import SetupFailed, execute

        request = RunRequest(
            inputs=inputs, output=output, kinds=select(classes, keep_background=keep_background, cutout=cutout, overlay=overlay),
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
app.command(help=HELP, no_args_is_help=True)(command)


def main() -> None:
    """Console-script entry point: the process-wide settings a command may make, then the app."""
    from animeface_seg.cli.process_setup import configure_process

    configure_process()
    app(obj=Environment())
