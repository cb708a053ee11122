"""Clips: animations and videos, their frames streamed one at a time, each written to its own files in the clip's
frame folders (and, with ``--encode``, to one video per output kind); the tally is ``batch/clips.py``'s."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from animeface_seg.batch.inputs.kind import Header
from animeface_seg.engine.frames import VIDEO_EXTENSIONS, Clip, ClipInfo, open_frames, video_packets

if TYPE_CHECKING:
    from animeface_seg.batch.outcome import Outcome
    from animeface_seg.batch.stages import Stages, Work


@dataclass(frozen=True)
class ClipKind:
    """An animated image (GIF, APNG, WebP, TIFF of many frames): its frames as Pillow composes them."""

    name: str = "animation"
    streams_frames = True
    extensions = frozenset({".gif", ".png", ".webp", ".tif", ".tiff"})

    def recognises(self, header: Header) -> bool:
        return header.content == "animation" and header.clips

    def open(self, source: Path, stages: Stages) -> Clip:
        """The clip opened (its header only) for its frames, within the run's limits and frame step; raises."""
        return open_frames(source, max_pixels=stages.settings.max_pixels, before_load=stages.before_frame,
                           step=stages.spec.frame_step)

    def planned_frames(self, source: Path, step: int) -> tuple[ClipInfo, range] | None:
        """The clip's header and the frame numbers a run with ``step`` writes, without decoding; ``None`` when
        that cannot be known so (an unreadable file: decoding says what is wrong)."""
        try:
            with open_frames(source, max_pixels=None) as clip:
                info = clip.info
            count = info.frame_count if info.frame_count is not None else self._uncounted(source)
        except Exception:  # noqa: BLE001 - decoding reports what is wrong with the file
            return None
        return (info, range(1, count + 1, step)) if count else None

    def _uncounted(self, source: Path) -> int | None:
        """The frames of a clip whose header does not count them, where they can be counted without decoding."""
        return None

    def resume(self, stages: Stages, work: Work) -> Outcome | Work:
        """Done when every frame it has (``planned_frames``) and its videos (``--encode``: their record, and as
        many frames as this run writes) are complete with the run's settings; else its work, saying why its
        videos are made again (a clip whose frames cannot be counted so is opened: decoding checks each frame)."""
        spec = stages.spec
        planned = self.planned_frames(work.job.source, spec.frame_step)
        if planned is None:
            return work
        info, numbers = planned
        videos = spec.videos(work.job)
        reason = stages.videos_outdated(videos, len(numbers)) if videos else None
        if reason is not None:
            work.reason = reason if any(path.is_file() for path in videos.values()) else None
            return work
        if spec.frame_files and any(
                stages.outdated(spec.frame_outputs(work.job, number)) for number in numbers):
            return work
        return stages.done(work, frames=len(numbers), fps=info.fps, duration=info.duration)


@dataclass(frozen=True)
class VideoKind(ClipKind):
    """A video (through PyAV): frames in display order; a header without a frame count has its packets counted."""

    name: str = "video"
    extensions = VIDEO_EXTENSIONS

    def recognises(self, header: Header) -> bool:
        return header.content == "video" and header.clips

    def _uncounted(self, source: Path) -> int | None:
        return video_packets(source)


ANIMATION = ClipKind()
VIDEO = VideoKind()
