"""The frozen output spec of a run: OUT, what to write there and how, decided once from the command line.

Plan, settings, stages, the watch mode and the Ray engine all take this one object, and ask it where
a job's output of each kind goes, so naming and the ``--encode``/``--frame-step`` choices live here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from animeface_seg.batch.naming import (Layout, OutputKind, clip_folders, clip_video_paths, frame_output_paths,
                                       output_paths)

if TYPE_CHECKING:
    from animeface_seg.batch.discovery import Job


@dataclass(frozen=True)
class OutputSpec:
    """Where a run's outputs go (OUT, layout), which kinds, and what a clip gives (frames, videos, which frames)."""

    out_dir: Path
    """OUT: a local folder, or (``--engine ray``) an object-storage location (a ``StoragePath``)."""
    kinds: tuple[OutputKind, ...]
    layout: Layout = Layout.MIRROR
    encode: str = "frames"
    """What a clip gives: ``frames`` (a folder of PNGs per kind), ``video`` (one encoded video per kind,
    ``batch/encode.py``) or ``both``."""
    frame_step: int = 1
    """Take every ``frame_step``-th frame of a clip (frames keep their numbers in the source). Not part of an
    output's settings record: it decides which frames are written, never their pixels."""
    first_frame: bool = False
    """Take videos and animated images as one picture (their first frame) instead of clips."""
    review: bool = False
    """Whether the run writes OUT/index.html and its thumbnails (``batch/review.py``), planned like outputs."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", tuple(map(OutputKind, self.kinds)))
        object.__setattr__(self, "layout", Layout(self.layout))
        object.__setattr__(self, "frame_step", max(1, self.frame_step))

    @property
    def frame_files(self) -> bool:
        """Whether a clip's frames are written as PNG files (every ``encode`` but ``video``)."""
        return self.encode != "video"

    @property
    def encodes_videos(self) -> bool:
        """Whether clips are encoded as videos (``--encode video|both``)."""
        return self.encode != "frames"

    def outputs(self, job: Job) -> dict[OutputKind | str, Path]:
        """Where ``job``'s outputs go: what every stage uses. A clip's are its frame folders (``frame_outputs``
        names each frame's files) and, when encoded, its videos under ``<kind>_video`` (``map_video``, ...)."""
        if not job.kind.streams_frames:
            return output_paths(self.out_dir, job.relative, self.kinds, self.layout)
        outputs: dict[OutputKind | str, Path] = {}
        if self.frame_files:
            outputs.update(self.frame_folders(job))
        outputs.update({f"{kind}_video": path for kind, path in self.videos(job).items()})
        return outputs

    def frame_folders(self, job: Job) -> dict[OutputKind, Path]:
        """The folder of each kind's frames when ``job`` is a clip, e.g. ``OUT/a/clip`` (see ``naming.py``)."""
        return clip_folders(self.out_dir, job.relative, self.kinds, self.layout)

    def frame_outputs(self, job: Job, number: int) -> dict[OutputKind, Path]:
        """The files of frame ``number`` of the clip ``job`` (none when only videos are written)."""
        if not self.frame_files:
            return {}
        return frame_output_paths(self.out_dir, job.relative, self.kinds, self.layout, number)

    def videos(self, job: Job) -> dict[OutputKind, Path]:
        """The encoded video of each kind for the clip ``job`` (none unless ``encode`` asks for them)."""
        if not self.encodes_videos:
            return {}
        return clip_video_paths(self.out_dir, job.relative, self.kinds, self.layout)
