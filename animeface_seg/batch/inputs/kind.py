"""What every input kind record offers, and the one header read that recognising an input starts from."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from animeface_seg.engine.errors import ImageDecodeError
from animeface_seg.engine.frames import read_head
from animeface_seg.engine.sniff import Content, sniff

if TYPE_CHECKING:
    from animeface_seg.batch.outcome import Outcome
    from animeface_seg.batch.stages import Stages, Work


class Header:
    """One input's header, read once for every kind asked about it: its first bytes, what ``sniff`` makes of
    them (worked out when first asked), and whether the run takes clips (not with ``--first-frame``)."""

    def __init__(self, path: Path, clips: bool = True) -> None:
        self.path = path
        self.clips = clips
        self.error: ImageDecodeError | None = None
        """Why the file is no picture or video ``sniff`` knows; set once ``content`` was asked."""
        try:
            self.head = read_head(path)
        except ImageDecodeError as exc:
            self.head, self.error = b"", exc

    @functools.cached_property
    def content(self) -> Content | None:
        """``still``, ``animation`` or ``video`` by ``sniff``; ``None`` when it refuses the file (see ``error``)."""
        if self.error is not None:
            return None
        try:
            return sniff(self.path, self.head)
        except ImageDecodeError as exc:
            self.error = exc
            return None


class InputKind(Protocol):
    """An input kind: how it is recognised, what it plans and how a run resumes it. How its pixels are read
    is its base's: ``StillKind.read`` (one picture) or ``ClipKind.open`` (frames streamed, ``streams_frames``)."""

    name: str
    """Its name in the registry (``inputs.KINDS``), also how a Ray row carries it."""
    streams_frames: bool
    """Whether its outputs are folders of frames (and encoded videos), its frames streamed one at a time."""
    extensions: frozenset[str]
    """The names (extensions, lower-cased) a folder walk takes for it; a file named directly is taken whatever
    its name, as its header decides its kind."""

    def recognises(self, header: Header) -> bool:
        """Whether the file whose header this is is of this kind."""

    def resume(self, stages: Stages, work: Work) -> Outcome | Work:
        """With ``--skip-existing``: the ``skipped`` outcome when its outputs are complete, else its ``work``."""
