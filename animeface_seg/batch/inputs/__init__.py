"""Input kinds: what one input is (a still, a clip), decided in one place from the one header read.

``KINDS`` is the registry by name, asked in order: the first kind whose ``recognises`` takes a file's
``Header`` is its kind, which the job then carries (``Job.kind``). Every layer asks that record rather than
testing a flag: what its outputs are (``streams_frames``: frame folders and videos, or one set of files),
how ``--skip-existing`` decides it is done (``resume``), how its pixels are read (``read`` for stills,
``open`` for clips), and whether an engine takes it (the Ray engine takes no clips). A new kind is one
module with its record and one line below.
"""

from __future__ import annotations

from pathlib import Path

from animeface_seg.batch.inputs.clip import ANIMATION, VIDEO, ClipKind
from animeface_seg.batch.inputs.kind import Header, InputKind
from animeface_seg.batch.inputs.still import FIRST_FRAME, STILL, StillKind
from animeface_seg.engine.errors import UnrecognisedImageError
from animeface_seg.engine.frames import is_video_name

__all__ = ["ANIMATION", "FIRST_FRAME", "KINDS", "STILL", "VIDEO", "ClipKind", "Header", "InputKind", "StillKind",
           "by_name", "extensions", "recognise"]

#: Every input kind by name, in the order they are asked.
KINDS: dict[str, InputKind] = {kind.name: kind for kind in (VIDEO, ANIMATION, FIRST_FRAME, STILL)}


def recognise(source: Path, clips: bool = True) -> InputKind:
    """The kind of the file at ``source``, from its header read once (``clips``: inputs of many frames are
    clips; without, each is one picture); raises ``ImageDecodeError`` with why no kind takes it."""
    header = Header(source, clips)
    kind = next((kind for kind in KINDS.values() if kind.recognises(header)), None)
    if kind is None:
        raise header.error or UnrecognisedImageError("not a recognised image or video file")
    return kind


def extensions() -> frozenset[str]:
    """Every extension (lower-cased) a folder walk takes: those of every kind."""
    return frozenset().union(*(kind.extensions for kind in KINDS.values()))


def by_name(name: str, clips: bool = True) -> InputKind:
    """The kind of a file known by its name alone (object storage, where no header is read before the cluster
    starts): a video by its extension, else a still."""
    if not is_video_name(name):
        return STILL
    return VIDEO if clips else FIRST_FRAME
