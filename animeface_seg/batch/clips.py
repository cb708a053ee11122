"""A clip in flight (a video, an animated image): its frames as items of the shared stages, and its one
outcome once decoding has ended and every frame sent to the networks is written or failed.

The decoding thread opens the clip and hands its frames over one at a time (``stages.Stages.clip_items``);
each frame is written all or nothing to its own files (``naming.frame_output_paths``) like a still. A
``ClipTally`` counts the frames of one clip from every thread (decoder, networks, writers) and gives
the clip's ``Outcome`` exactly once: ``ok`` with the frame folders as outputs and the frame count,
frame rate and duration; ``skipped`` when every frame was complete already (``--skip-existing``);
``error`` when a frame could not be decoded, segmented or written, saying how many frames are in
place (those stay: each is a complete set of files; with ``--encode video`` none is: a failed clip
keeps no video).
"""

from __future__ import annotations

import threading
from pathlib import Path

from animeface_seg.batch.discovery import Job
from animeface_seg.batch.encode import ClipEncoder
from animeface_seg.batch.naming import OutputKind
from animeface_seg.batch.outcome import ALREADY_DONE, Outcome, failed_outcome
from animeface_seg.batch.spec import OutputSpec
from animeface_seg.engine.frames import ClipInfo
from animeface_seg.engine.segmentor import Segmentation


def selected_frames(info: ClipInfo, step: int) -> range | None:
    """The frame numbers a run with ``step`` writes for a clip whose header gives ``info``; ``None`` when
    the header does not say how many frames the clip has."""
    if info.frame_count is None:
        return None
    return range(1, info.frame_count + 1, step)


def frame_sets(job: Job, spec: OutputSpec) -> list[dict[OutputKind, Path]] | None:
    """The files of every frame a run with ``spec`` writes for the clip ``job`` (its kind's ``planned_frames``)."""
    planned = job.kind.planned_frames(job.source, spec.frame_step)
    return None if planned is None else [spec.frame_outputs(job, number) for number in planned[1]]


def _frames(count: int) -> str:
    return f"{count} frame{'s' * (count != 1)}"


class ClipTally:
    """The frames of one clip: sent to the networks, settled (written or failed), written, kept from before.

    Thread-safe. ``cancelled`` tells the decoding thread to stop once the clip has failed. Each method
    that settles something returns the clip's ``Outcome`` when that was the last thing it waited for.
    """

    def __init__(self, job: Job, outputs: dict[OutputKind | str, Path], info: ClipInfo, reason: str | None = None,
                 encoder: ClipEncoder | None = None, frame_files: bool = True) -> None:
        self.job = job
        self.encoder = encoder
        """Where the frames are also encoded as videos (``--encode``), in order, finished with the clip."""
        self.frame_files = frame_files
        """Whether each frame is written as files of its own (not with ``--encode video``)."""
        self.outputs = outputs
        self.info = info
        self.reason = reason
        """Why frames that were there are made again (``--skip-existing``), as the first stale frame says."""
        self._lock = threading.Lock()
        self._sent = self._settled = self._written = self._kept = 0
        self._ended = self._finished = False
        self._error: Outcome | None = None
        self._sizes: tuple[tuple[int, int], tuple[int, int]] | None = None
        self._fractions: list[float] | None = None
        self._coverage = 0.0
        self._coverage_known = False

    @property
    def cancelled(self) -> bool:
        """Whether the clip failed, so no more of its frames need decoding."""
        return self._error is not None

    def sent(self) -> int:
        """A frame was handed to the networks; its place among those (0, 1, ...), the order of the videos."""
        with self._lock:
            self._sent += 1
            return self._sent - 1

    def kept(self) -> None:
        """A frame was found complete with the run's settings (``--skip-existing``)."""
        with self._lock:
            self._kept += 1

    def stale(self, reason: str) -> None:
        """A frame that was there must be made again, for ``reason`` (the clip's record keeps the first)."""
        with self._lock:
            if self.reason is None:
                self.reason = reason

    def written(self, result: Segmentation, error: Outcome | None = None) -> Outcome | None:
        """A frame's files are in place; with ``error``, its encoding failed (which fails the clip)."""
        with self._lock:
            self._settled += 1
            self._written += 1
            if error is not None and self._error is None:
                self._error = error
            if self._sizes is None:
                self._sizes = (result.original_size, result.processed_size)
                self._fractions = [0.0] * len(result.class_fractions)
            self._fractions = [total + value for total, value in zip(self._fractions, result.class_fractions)]
            self._coverage += result.mask_coverage or 0.0
            self._coverage_known = result.mask_coverage is not None
            return self._finish()

    def failed(self, outcome: Outcome | None = None) -> Outcome | None:
        """A frame sent to the networks failed (its ``error`` outcome), or (``None``) was dropped unwritten."""
        with self._lock:
            self._settled += 1
            if outcome is not None and self._error is None:
                self._error = outcome
            return self._finish()

    def ended(self, exc: BaseException | None = None) -> Outcome | None:
        """Decoding ended: at the end of the clip, or with ``exc`` (a frame that cannot be decoded)."""
        with self._lock:
            self._ended = True
            if exc is not None and self._error is None:
                self._error = failed_outcome(self.job, exc, "read")
            return self._finish()

    def abandon(self) -> int | None:
        """The run stops before the clip's end: drop its videos being written (its complete frames stay);
        how many frames have all their files in place, or None when the clip had finished."""
        with self._lock:
            if self._finished:
                return None
            self._finished = True
            if self.encoder is not None:
                self.encoder.abort()
            return self._written + self._kept if self.frame_files else 0

    def _finish(self) -> Outcome | None:
        if self._finished or not self._ended or self._settled < self._sent:
            return None
        self._finished = True
        frames = self._written + self._kept
        if self._error is None and frames == 0:
            self._error = Outcome(self.job, "error", {}, "the clip holds no frame that can be decoded")
        common = dict(frames=frames, fps=self.info.fps, duration=self.info.duration)
        if self.encoder is not None:
            try:
                if self._error is None:
                    self.encoder.finish()
                else:
                    self.encoder.abort()
            except Exception as exc:  # noqa: BLE001 - the videos could not be finished: the clip fails alone
                self._error = failed_outcome(self.job, exc, "write")
        if self._error is not None:
            return self._failed(common)
        if self._written == 0:
            return Outcome(self.job, "skipped", dict(self.outputs), reason=ALREADY_DONE, **common)
        reason = self.reason
        if self._kept:
            reason = f"resumed: {_frames(self._kept)} already done, {self._written} made"
        mean = [total / self._written for total in self._fractions]
        coverage = self._coverage / self._written if self._coverage_known else None
        return Outcome(self.job, "ok", dict(self.outputs), original_size=self._sizes[0],
                       processed_size=self._sizes[1], class_fractions=tuple(mean), mask_coverage=coverage,
                       reason=reason, **common)

    def _failed(self, common: dict) -> Outcome:
        """The clip's error outcome, counting only the frames whose files are in place (no video is kept)."""
        outcome = self._error
        if not self.frame_files:
            common["frames"] = 0
        kept = [_frames(common["frames"]) + " written"] if self.frame_files else []
        kept += ["no video written"] if self.encoder is not None else []
        outcome.error = f"{outcome.error}; {', '.join(kept)}"
        outcome.reason = self.reason
        outcome.frames, outcome.fps, outcome.duration = common.values()
        return outcome
