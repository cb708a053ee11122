"""The stages every engine takes an input through, so each rule lives in one place.

``begin`` settles a job without decoding it (failed or skipped by discovery, or already done
with ``--skip-existing``) or turns it into ``Work``; ``decode`` reads it within the memory
budget and prepares the network input; ``batch_limit`` caps a batch of one padded shape;
``segment`` runs such a batch; ``write`` renders every output kind and writes the set all or
nothing. What differs between kinds of input is the job's kind's (``Job.kind``, ``batch/inputs``): how
a run resumes it, how a still is read; a clip (a kind that ``streams_frames``: a video, an animated
image) is opened with ``open_clip`` and its frames come one at a time from ``clip_items``, each an
item of the same batches, networks and writes with its own files; the clip's ``ClipTally``
(``clips.py``) gives its one outcome. Every
failure of one input, of any kind, becomes that input's ``error`` outcome, never an exception
that stops the others. The local pipeline and the watch mode call these from their threads
(``pipeline.py``), the Ray actors in line (``integrations/ray/actor.py``; they take no clips).
Outputs are always ``OutputSpec.outputs(job)`` (a clip's frames ``OutputSpec.frame_outputs``),
and the default memory budget is measured where the stages run.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from pathlib import PurePath

import numpy as np

from animeface_seg.batch.clips import ClipTally
from animeface_seg.batch.discovery import Job
from animeface_seg.batch.encode import ClipEncoder, video_record, video_stale_reason
from animeface_seg.batch.kinds import memory_terms, needs_source
from animeface_seg.batch.naming import OutputKind
from animeface_seg.batch.outcome import ALREADY_DONE, Outcome, early_outcome, failed_outcome
from animeface_seg.batch.settings import RunSettings
from animeface_seg.batch.signature import Signature, stale_reason
from animeface_seg.batch.store import LOCAL, OutputStore
from animeface_seg.batch.writers import write_outputs
from animeface_seg.engine import memory
from animeface_seg.engine.errors import ImageDecodeError
from animeface_seg.engine.frames import Clip
from animeface_seg.engine.segmentor import Prepared, Segmentation, Segmentor


@dataclass
class Work:
    """A job to process, where its outputs go, and why existing outputs are made again (if they are)."""

    job: Job
    outputs: dict[OutputKind, PurePath]
    reason: str | None = None


@dataclass
class Decoded:
    """A job's image, ready for the networks, and its source pixels when an output kind needs them."""

    work: Work
    prepared: Prepared
    source: np.ndarray | None
    clip: ClipTally | None = None
    """The clip this is a frame of, or None for a still; then ``frame`` is its number in the source, ``index``
    its place among the frames segmented (the order of encoded videos), ``time`` its time in seconds."""
    frame: int | None = None
    index: int = 0
    time: float | None = None

    @property
    def shape(self) -> Hashable:
        """Inputs of one padded shape can share a batch."""
        return self.prepared.padded_shape


class Stages:
    """One run's stages: built where the work runs, with the segmentor, the run's settings and the store."""

    def __init__(self, segmentor: Segmentor, settings: RunSettings, store: OutputStore = LOCAL) -> None:
        self.segmentor = segmentor
        self.settings = settings
        self.spec = settings.spec
        self.store = store
        self.keep_source = needs_source(self.spec.kinds)
        self.signature = Signature.of(segmentor, layout=self.spec.layout)
        self.png_info = self.signature.png_info()
        self.video_record = video_record(self.signature, self.spec.frame_step)
        device_type, _, index = segmentor.device_name.partition(":")
        self.device_type = device_type
        self.budget = settings.memory_budget or memory.machine_budget(device_type, int(index) if index else None)
        self._estimate = functools.partial(
            memory.estimate, device_type=device_type, remove_background=segmentor.remove_background,
            output_size=segmentor.output_size, **memory_terms(self.spec.kinds))
        self.before_load = functools.partial(memory.check_image, budget=self.budget, estimate=self._estimate)
        self.before_frame = functools.partial(memory.check, budget=self.budget, estimate=self._estimate)

    def begin(self, job: Job) -> Outcome | Work:
        """The job's outcome when it needs no decoding (failed, skipped, already done), else its ``Work``."""
        outputs = self.spec.outputs(job)
        early = early_outcome(job)
        if early is not None:
            return early
        if not self.settings.skip_existing:
            return Work(job, outputs)
        try:
            return job.kind.resume(self, Work(job, outputs))
        except Exception as exc:  # noqa: BLE001 - an unreadable output fails this input alone
            return failed_outcome(job, exc, "read")

    def done(self, work: Work, **facts: object) -> Outcome:
        """The ``skipped`` outcome of work whose outputs are complete already (``facts``: a clip's frames, ...)."""
        return Outcome(work.job, "skipped", work.outputs, reason=ALREADY_DONE, **facts)

    def stale(self, outputs: dict[OutputKind, PurePath]) -> str | None:
        """Why ``outputs`` must be made again (``""`` when none of them is there yet), or None when done."""
        reason = self.outdated(outputs)
        if reason is not None and not any(self.store.is_file(path) for path in outputs.values()):
            return ""  # nothing made yet: no news for the record
        return reason

    def outdated(self, outputs: dict[OutputKind, PurePath]) -> str | None:
        """Why ``outputs`` are not all whole with this run's settings record, or None when they are."""
        return stale_reason(outputs, self.signature, self.store)

    def videos_outdated(self, videos: dict[OutputKind, PurePath], frames: int) -> str | None:
        """Why a clip's encoded ``videos`` are not all whole with this run's record and ``frames`` frames, or None."""
        return video_stale_reason(videos, self.video_record, frames)

    def decode(self, work: Work, content: bytes | None = None) -> Decoded:
        """Read the job's file (or ``content``, its bytes read elsewhere) within the memory budget; raises."""
        if content is not None and not content:
            raise ImageDecodeError("file is empty (0 bytes)")
        source = work.job.source if content is None else io.BytesIO(content)
        image = work.job.kind.read(source, self)
        return Decoded(work, self.segmentor.prepare(image), image if self.keep_source else None)

    def open_clip(self, work: Work) -> tuple[Clip, ClipTally]:
        """Open a clip's file (its header only) for ``clip_items``, with the tally of its frames; raises."""
        clip = work.job.kind.open(work.job.source, self)
        videos = self.spec.videos(work.job)
        encoder = ClipEncoder(videos, clip.info.fps, self.video_record) if videos else None
        return clip, ClipTally(work.job, work.outputs, clip.info, work.reason, encoder,
                               frame_files=self.spec.frame_files)

    def clip_items(self, clip: Clip, tally: ClipTally) -> Iterator[Decoded | None]:
        """Decode the clip's frames one at a time, each ready for the networks with its own files; ``None``
        for a frame whose files are complete already (``--skip-existing``: decoded through, never segmented).
        Raises ``ClipDecodeError`` where a frame cannot be decoded."""
        for frame in clip:
            outputs = self.spec.frame_outputs(tally.job, frame.number)
            if self.settings.skip_existing and tally.encoder is None:  # a video needs every frame segmented
                reason = self.stale(outputs)
                if reason is None:
                    tally.kept()
                    yield None
                    continue
                if reason:
                    tally.stale(reason)
            if tally.encoder is not None:
                tally.encoder.admit(frame.number, frame.image.shape[:2])
            prepared = self.segmentor.prepare(frame.image)
            yield Decoded(Work(tally.job, outputs, tally.reason), prepared, frame.image if self.keep_source else None,
                          tally, frame.number, tally.sent(), frame.time)

    def batch_limit(self, shape: Hashable) -> int:
        """Most images of this padded shape one network batch may hold within the budget (at least 1)."""
        capacity = memory.batch_capacity(shape, self.budget, self.device_type, self.segmentor.remove_background)
        return min(self.settings.batch_size, capacity)

    def segment(self, items: list[Decoded]) -> list[tuple[Decoded, Segmentation] | Outcome | None]:
        """Run one batch; every input of a batch that fails gets its error outcome (a frame: its clip's,
        once the clip has nothing else in flight, else None)."""
        try:
            results = self.segmentor.run([item.prepared for item in items])
        except Exception as exc:  # noqa: BLE001 - the batch fails alone, the run goes on
            return [self.failed_item(item, exc, "segment") for item in items]
        return list(zip(items, results))

    def write(self, item: Decoded, result: Segmentation) -> Outcome | None:
        """Render and write every output of one input (or frame), all or nothing; its outcome (a frame:
        its clip's outcome when it was the clip's last, else None)."""
        work = item.work
        try:
            write_outputs(result, work.outputs, item.source, self.png_info, self.store)
        except Exception as exc:  # noqa: BLE001 - nothing of the set is left; this input fails alone
            return self.failed_item(item, exc, "write")
        if item.clip is not None:
            return item.clip.written(result, self._encode(item, result))
        return Outcome(work.job, "ok", dict(work.outputs), original_size=result.original_size,
                       processed_size=result.processed_size, class_fractions=result.class_fractions,
                       mask_coverage=result.mask_coverage, reason=work.reason)

    def _encode(self, item: Decoded, result: Segmentation) -> Outcome | None:
        """Add a written frame to its clip's videos (``--encode``); the error outcome when that fails (its files
        stay in place, so the clip counts it, and fails)."""
        if item.clip.encoder is None:
            return None
        try:
            item.clip.encoder.add(item.index, result, item.source, item.time)
        except Exception as exc:  # noqa: BLE001 - the clip's videos cannot be made: the clip fails alone
            outcome = self.failed(item.work, exc, "write")
            outcome.error = f"frame {item.frame}: {outcome.error}"
            return outcome
        return None

    def failed_item(self, item: Decoded, exc: BaseException, stage: str) -> Outcome | None:
        """``failed`` for an item in a batch: a frame fails its clip (whose outcome waits for its other frames)."""
        outcome = self.failed(item.work, exc, stage)
        if item.clip is None:
            return outcome
        outcome.error = f"frame {item.frame}: {outcome.error}"
        return item.clip.failed(outcome)

    def failed(self, work: Work, exc: BaseException, stage: str) -> Outcome:
        """The error outcome of ``work`` whose ``stage`` (``read``, ``segment``, ``write``) raised ``exc``."""
        outcome = failed_outcome(work.job, exc, stage)
        outcome.reason = work.reason
        return outcome
