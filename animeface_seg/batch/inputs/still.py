"""Stills: one picture per input, decoded whole, written as one set of files; a video taken as one picture
(``--first-frame``) is its first frame."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from animeface_seg.batch.inputs.kind import Header
from animeface_seg.engine.decode import load_rgb
from animeface_seg.engine.errors import ImageDecodeError
from animeface_seg.engine.frames import VIDEO_EXTENSIONS, open_frames

if TYPE_CHECKING:
    from animeface_seg.batch.outcome import Outcome
    from animeface_seg.batch.stages import Stages, Work

#: Picture file extensions (compared lower-cased): a folder's files with these names are looked at.
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"})


@dataclass(frozen=True)
class StillKind:
    """An image file (or an animation taken as its first frame), read by ``decode.load_rgb``."""

    name: str = "still"
    streams_frames = False
    extensions = IMAGE_EXTENSIONS

    def recognises(self, header: Header) -> bool:
        return header.content == "still" or (header.content == "animation" and not header.clips)

    def resume(self, stages: Stages, work: Work) -> Outcome | Work:
        """Done when every output is there whole with the run's settings; else made again, saying why."""
        reason = stages.stale(work.outputs)
        if reason is None:
            return stages.done(work)
        work.reason = reason or None
        return work

    def read(self, source: Path | BinaryIO, stages: Stages) -> np.ndarray:
        """The picture as H x W x 3 uint8 RGB, within the run's pixel limit and memory budget; raises."""
        return load_rgb(source, max_pixels=stages.settings.max_pixels, before_load=stages.before_load)


@dataclass(frozen=True)
class FirstFrameKind(StillKind):
    """A video taken as one picture (``--first-frame``): its first frame."""

    name: str = "first-frame"
    extensions = VIDEO_EXTENSIONS

    def recognises(self, header: Header) -> bool:
        return header.content == "video" and not header.clips

    def read(self, source: Path | BinaryIO, stages: Stages) -> np.ndarray:
        with open_frames(source, max_pixels=stages.settings.max_pixels, before_load=stages.before_frame) as clip:
            frame = next(iter(clip), None)
        if frame is None:
            raise ImageDecodeError("the video holds no frame")
        return frame.image


STILL = StillKind()
FIRST_FRAME = FirstFrameKind()
