"""What happened to one input (``Outcome``), how a failure is put into words, and its JSON record.

Every engine (the local pipeline, the watch mode, the Ray actors) ends each job as exactly one
``Outcome``; front-ends only report them. An ``error`` outcome lists no outputs: nothing of its
set was left on disk (a clip's frames written before the failure stay, and ``frames`` counts them).
A ``skipped`` one lists its outputs only when they exist already. A clip's outputs are its frame
folders, one per kind (the same folder for every kind in the ``mirror`` layout).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from animeface_seg.batch.discovery import Job
from animeface_seg.batch.naming import OutputKind
from animeface_seg.engine.errors import EngineError
from animeface_seg.engine.palette import CLASS_NAMES

Status = Literal["ok", "skipped", "error"]

#: The ``reason`` of an input skipped by ``--skip-existing``.
ALREADY_DONE = "already done"


@dataclass
class Outcome:
    """What happened to one input."""

    job: Job
    status: Status
    outputs: dict[OutputKind | str, Path] = field(default_factory=dict)
    """Each kind's file; a clip's frame folder per kind, and its encoded videos under ``<kind>_video``."""
    error: str | None = None
    error_setting: str | None = None
    """The engine setting that governs the error, if any (a front-end names its own flag for it)."""
    reason: str | None = None
    """Why it was skipped, or why existing outputs were made again (``--skip-existing``)."""
    original_size: tuple[int, int] | None = None
    processed_size: tuple[int, int] | None = None
    class_fractions: tuple[float, ...] | None = None
    mask_coverage: float | None = None
    frames: int | None = None
    """A clip's frames whose outputs are in place (written by this run or, resumed, before); None for stills."""
    fps: float | None = None
    """A video's average frame rate (None for stills and animations)."""
    duration: float | None = None
    """A video's length in seconds (None for stills and animations)."""


def describe_error(exc: BaseException) -> tuple[str, str | None]:
    """A one-line reason for ``exc`` in the words of the problem, and the engine setting that governs it."""
    if isinstance(exc, EngineError):
        return str(exc), exc.setting
    if isinstance(exc, MemoryError):
        return "out of memory" + (f": {exc}" if str(exc) else ""), "memory_budget"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__, None
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__, None


def failed_outcome(job: Job, exc: BaseException, stage: str = "") -> Outcome:
    """The ``error`` outcome of a job whose ``stage`` (``read``, ``segment``, ``write``) raised ``exc``."""
    text, setting = describe_error(exc)
    if isinstance(exc, FileNotFoundError) and stage == "read":
        text = "file not found"
    elif isinstance(exc, OSError) and not isinstance(exc, EngineError) and stage == "write" and exc.filename:
        text = f"cannot write output {exc.filename}: {text}"
    elif isinstance(exc, OSError) and not isinstance(exc, EngineError):
        text = {"write": "cannot write output: ", "read": "cannot read file: "}.get(stage, "") + text
    elif stage == "segment":
        text = "segmentation failed: " + text
    elif stage == "write":
        text = "cannot write output: " + text
    return Outcome(job, "error", {}, text, setting)


def early_outcome(job: Job, outputs: dict[OutputKind, Path] | None = None) -> Outcome | None:
    """The outcome of a job settled by discovery (failed or skipped before it starts), else ``None``."""
    if job.error:
        return Outcome(job, "error", {}, job.error)
    if job.skip_reason:
        return Outcome(job, "skipped", {}, reason=job.skip_reason)
    return None


def _size(size: tuple[int, int] | None) -> dict[str, int] | None:
    return None if size is None else {"width": size[1], "height": size[0]}


def record(outcome: Outcome, hint: Callable[[str | None, str | None], str | None] | None = None) -> dict:
    """The JSON record of one input (``--json``, the manifest); ``hint`` adds a front-end's way to change
    the setting an error names (e.g. the command's flag)."""
    fractions = outcome.class_fractions
    error = outcome.error if hint is None else hint(outcome.error, outcome.error_setting)
    return {
        "input": str(outcome.job.source),
        "status": outcome.status,
        "outputs": {str(kind): str(path) for kind, path in outcome.outputs.items()},
        "error": error,
        "reason": outcome.reason,
        "original_size": _size(outcome.original_size),
        "processed_size": _size(outcome.processed_size),
        "class_fractions": None if fractions is None else dict(zip(CLASS_NAMES, fractions)),
        "mask_coverage": outcome.mask_coverage,
        "frames": outcome.frames,
        "fps": outcome.fps,
        "duration": outcome.duration,
    }
