"""The command's arguments and options as ``Annotated`` types, grouped by their ``--help`` panel.

``cli/app.py::command`` declares its parameters with these types, so its signature stays a list of
names and defaults. Nothing heavy is imported: ``--help`` needs only this module and Typer.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from animeface_seg import __version__
from animeface_seg.batch.naming import Layout
from animeface_seg.cli.panels import (CLIPS, INPUTS, OUTPUTS, REPORTING, RESUME, SCALING, SERVE, SPEED, WATCH,
                                      WEIGHTS)
from animeface_seg.engine.palette import CLASS_NAMES
from animeface_seg.engine.runtimes import registry as runtimes

#: Same value as ``engine.decode.DEFAULT_MAX_PIXELS`` (checked by a test), kept here so --help needs no engine.
DEFAULT_MAX_PIXELS = 268_435_456


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


def _version(value: bool) -> None:
    if value:
        typer.echo(f"animeface-seg {__version__}")
        raise typer.Exit()


# Inputs
Inputs = Annotated[Optional[list[str]], typer.Argument(
    metavar="INPUT", help="Image files, folders, or - for a list of paths on standard input.",
    show_default=False, rich_help_panel=INPUTS)]
Recursive = Annotated[bool, typer.Option(
    "--recursive/--no-recursive", help="Search folders recursively.", rich_help_panel=INPUTS)]
Null = Annotated[bool, typer.Option(
    "--null", "-0", help="Paths on standard input are separated by NUL bytes (find -print0).",
    rich_help_panel=INPUTS)]
Root = Annotated[Optional[Path], typer.Option(
    "--root", metavar="DIR", help="Place files and folders named directly (or on stdin) under OUT by their path "
    "below DIR, exactly where a run over DIR writes them.", show_default=False, rich_help_panel=INPUTS)]

# Outputs
Output = Annotated[Optional[str], typer.Option(
    "--output", "-o", metavar="OUT", help="Folder for the results (created if missing); with --engine ray also "
    "s3://bucket/prefix or gs://bucket/prefix.", show_default=False, rich_help_panel=OUTPUTS)]
KeepBackground = Annotated[bool, typer.Option(
    "--keep-background", help="Segment the image as it is: no background removal, no mask file.",
    rich_help_panel=OUTPUTS)]
OutputSize = Annotated[Size, typer.Option(
    "--size", help="Results at the input's size (original) or at the 512-pixel size the networks saw "
    "(processed, as the ComfyUI node returns them).", case_sensitive=False, rich_help_panel=OUTPUTS)]
Cutout = Annotated[bool, typer.Option(
    "--cutout", help="Also write <name>_cutout.png: the source with the mask as transparency.",
    rich_help_panel=OUTPUTS)]
Overlay = Annotated[bool, typer.Option(
    "--overlay", help="Also write <name>_overlay.png: the map blended over the source, for checking.",
    rich_help_panel=OUTPUTS)]
ClassMasks = Annotated[Optional[str], typer.Option(
    "--class-masks", metavar="LIST", help="Also write <name>_<class>.png (by-kind: OUT/<class>/...), 255 where "
    f"the map has that class; comma-separated from {', '.join(CLASS_NAMES)}, or all. E.g. hair,eye",
    show_default=False, rich_help_panel=OUTPUTS)]
OutputLayout = Annotated[Layout, typer.Option(
    "--layout", help="mirror: OUT/a/b.png, OUT/a/b_mask.png; by-kind: each kind in its own tree, OUT/maps/a/b.png, "
    "OUT/masks/a/b.png (as ControlNet training expects).", case_sensitive=False, rich_help_panel=OUTPUTS)]
Review = Annotated[bool, typer.Option(
    "--review", help="At the end, write OUT/index.html: an offline page of every input in OUT (this run's and "
    "earlier ones') with thumbnails, class fractions, mask coverage and failures.", rich_help_panel=OUTPUTS)]

# Videos and animated images
FrameStep = Annotated[int, typer.Option(
    "--frame-step", min=1, metavar="N", help="Take every Nth frame (1, 1+N, ...); each keeps its number in the "
    "source.", rich_help_panel=CLIPS)]
FirstFrame = Annotated[bool, typer.Option(
    "--first-frame", help="One picture per file: only the first frame, written like a still (OUT/<name>.png) "
    "instead of a folder of frames.", rich_help_panel=CLIPS)]
EncodeAs = Annotated[Encode, typer.Option(
    "--encode", help="frames: a folder of PNGs; video: OUT/<name>.mkv (the map in lossless FFV1), "
    "<name>_mask.mkv, <name>_cutout.webm with alpha, at the source's frame times; both.",
    case_sensitive=False, rich_help_panel=CLIPS)]

# Resume and safety
SkipExisting = Annotated[bool, typer.Option(
    "--skip-existing", help="Resume: skip inputs whose outputs all exist already (a clip cut short is finished "
    "from its missing frames).", rich_help_panel=RESUME)]
MaxPixels = Annotated[int, typer.Option(
    "--max-pixels", min=1, metavar="N", help="Refuse images with more pixels than this (decompression bombs).",
    rich_help_panel=RESUME)]
MemoryBudget = Annotated[Optional[str], typer.Option(
    "--memory-budget", metavar="SIZE", help="Refuse, before decoding, any image estimated to need more memory "
    "than this (e.g. 4G, 512M; 0 = no limit) [default: half the available RAM; on CUDA also 80% of the free GPU "
    "memory].", show_default=False, rich_help_panel=RESUME)]

# Speed and devices
Device = Annotated[str, typer.Option(
    "--device", metavar="auto|cpu|cuda|cuda:N", help="Where to run; auto picks CUDA when available. CUDA asked "
    "for but unavailable is an error, never a silent fall-back.", rich_help_panel=SPEED)]
Precision = Annotated[str, typer.Option(
    "--precision", metavar="auto|fp32|fp16|bf16", help="Compute precision; auto is fp16 on CUDA and fp32 (exact) on CPU.",
    rich_help_panel=SPEED)]
Runtime = Annotated[str, typer.Option(
    "--runtime", metavar="|".join(runtimes.names()), help="What runs the networks. auto: the first that is "
    "installed and runs on the device at the precision, of " + ", ".join(r.name for r in runtimes.auto_order())
    + " (in this order). " + " ".join(r.summary for r in runtimes.runtimes()), rich_help_panel=SPEED)]
BatchSize = Annotated[Optional[int], typer.Option(
    "--batch-size", min=1, metavar="N", help="Images per network batch [default: 8 on CUDA, 1 on CPU].",
    show_default=False, rich_help_panel=SPEED)]
Workers = Annotated[Optional[int], typer.Option(
    "--workers", min=1, metavar="N", help="Threads for decoding and for writing [default: 1 on a 2-core CPU, "
    "2 on larger ones, up to 8 with CUDA].", show_default=False, rich_help_panel=SPEED)]

# Weights
Unet = Annotated[Optional[Path], typer.Option(
    "--unet", metavar="PATH", help="UNet.pth to use instead of the Hugging Face download.", show_default=False,
    rich_help_panel=WEIGHTS)]
Abg = Annotated[Optional[Path], typer.Option(
    "--abg", metavar="PATH", help="isnetis.ckpt (background removal) to use instead of the download.",
    show_default=False, rich_help_panel=WEIGHTS)]
WeightsDir = Annotated[Optional[Path], typer.Option(
    "--weights-dir", metavar="DIR", help="Folder holding UNet.pth and isnetis.ckpt [default: "
    "$ANIMEFACE_SEG_WEIGHTS, else the Hugging Face cache].", show_default=False, rich_help_panel=WEIGHTS)]
FetchWeights = Annotated[bool, typer.Option(
    "--fetch-weights", help="Download (or locate) and check both weight files, print their paths, exit.",
    rich_help_panel=WEIGHTS)]

# Watch a folder
Watch = Annotated[bool, typer.Option(
    "--watch", help="After the first pass keep running: process images that appear or change below the INPUT "
    "folders once settled. Ctrl-C or SIGTERM stops it (exit 0, or 1 if any failed).", rich_help_panel=WATCH)]
Settle = Annotated[Optional[float], typer.Option(
    "--settle", min=0.0, metavar="SECONDS", help="How long a file's size and time must stay unchanged before it "
    "is read [default: 1].", show_default=False, rich_help_panel=WATCH)]

# Scaling out (Ray)
EngineChoice = Annotated[Engine, typer.Option(
    "--engine", help="local: this process; ray: a Ray cluster (INPUT and OUT may then be s3:// or gs:// URIs; "
    "see docs/scaling.md).", case_sensitive=False, rich_help_panel=SCALING)]
RayAddress = Annotated[Optional[str], typer.Option(
    "--ray-address", metavar="ADDR", help="Ray cluster to join [default: $RAY_ADDRESS, else start a local Ray "
    "instance].", show_default=False, rich_help_panel=SCALING)]
Replicas = Annotated[Optional[int], typer.Option(
    "--replicas", min=1, metavar="N", help="Model actors [default: one per GPU, without GPUs one per CPU].",
    show_default=False, rich_help_panel=SCALING)]
GpusPerReplica = Annotated[Optional[float], typer.Option(
    "--gpus-per-replica", min=0.0, metavar="F", help="GPUs each model actor holds [default: 1 when the cluster "
    "has GPUs, else 0].", show_default=False, rich_help_panel=SCALING)]
S3Endpoint = Annotated[Optional[str], typer.Option(
    "--s3-endpoint", metavar="URL", help="S3-compatible endpoint for s3:// URIs [default: $AWS_ENDPOINT_URL_S3, "
    "else $AWS_ENDPOINT_URL, else AWS].", show_default=False, rich_help_panel=SCALING)]

# Reporting and help
Quiet = Annotated[bool, typer.Option(
    "--quiet", "-q", help="No progress bar, device line or summary; errors are still printed.",
    rich_help_panel=REPORTING)]
JsonLines = Annotated[bool, typer.Option(
    "--json", help="Print one JSON object per input on standard output (status, outputs, sizes, class "
    "fractions, mask coverage).", rich_help_panel=REPORTING)]
Version = Annotated[Optional[bool], typer.Option(
    "--version", callback=_version, is_eager=True, help="Print the version and exit.", rich_help_panel=REPORTING)]

# Serving over HTTP (animeface-seg serve)
Host = Annotated[str, typer.Option(
    "--host", metavar="ADDR", help="Address to listen on; anything but a loopback address is reachable from "
    "other machines (give a token then).", rich_help_panel=SERVE)]
Port = Annotated[int, typer.Option("--port", min=0, max=65535, metavar="N", help="Port to listen on.",
                                   rich_help_panel=SERVE)]
MaxBatch = Annotated[int, typer.Option(
    "--max-batch", min=1, metavar="N", help="Most images of concurrent requests run as one network batch.",
    rich_help_panel=SERVE)]
MaxWaitMs = Annotated[float, typer.Option(
    "--max-wait-ms", min=0.0, metavar="MS", help="Longest an image waits for others of its shape to share a batch.",
    rich_help_panel=SERVE)]
Queue = Annotated[int, typer.Option(
    "--queue", min=1, metavar="N", help="Most images waiting for the networks; beyond, requests get 503 with "
    "Retry-After.", rich_help_panel=SERVE)]
Timeout = Annotated[float, typer.Option(
    "--timeout", min=0.001, metavar="SECONDS", help="Longest a request waits for its result (504 beyond).",
    rich_help_panel=SERVE)]
MaxBody = Annotated[int, typer.Option(
    "--max-body", min=1, metavar="BYTES", help="Largest request body (413 beyond, refused before it is all read).",
    rich_help_panel=SERVE)]
TokenFile = Annotated[Optional[Path], typer.Option(
    "--token-file", metavar="F", help="Require Authorization: Bearer <the token in F> [default: "
    "$ANIMEFACE_SEG_TOKEN, else no token].", show_default=False, rich_help_panel=SERVE)]
CorsOrigin = Annotated[Optional[list[str]], typer.Option(
    "--cors-origin", metavar="ORIGIN", help="Send CORS headers to browsers on ORIGIN (https://app.example), "
    "repeatable [default: none, no CORS headers].", show_default=False, rich_help_panel=SERVE)]
