"""The settings of one batch run, decided once and passed down to every stage and front-end."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from pathlib import Path

from animeface_seg.batch.kinds import select
from animeface_seg.batch.naming import Layout, OutputKind, clip_video_paths, frame_output_paths
from animeface_seg.engine.decode import DEFAULT_MAX_PIXELS
from animeface_seg.engine.memory import Budget

if TYPE_CHECKING:
    from animeface_seg.batch.discovery import Job

#: How long a partial batch waits for more images of its shape before it runs anyway (seconds),
#: so a live source (a watched folder) never leaves an image stuck in a half-full batch.
DEFAULT_FLUSH_AFTER = 0.5


def default_workers(device_type: str) -> int:
    """Threads for decoding and for encoding: enough to hide file work behind the networks.

    On CPU the networks already use every core; on 2 cores one worker measured faster end to end
    than two (1.12 against 0.97 img/s, docs/benchmarks.md), as file work then steals less from them.
    """
    cores = os.cpu_count() or 1
    return min(8, cores) if device_type == "cuda" else max(1, min(2, cores - 1))


@dataclass(frozen=True)
class RunSettings:
    """What to write, where, and how hard to work; build it with ``decide``."""

    out_dir: Path
    kinds: tuple[OutputKind, ...]
    batch_size: int
    workers: int
    skip_existing: bool = False
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    flush_after: float = DEFAULT_FLUSH_AFTER
    layout: Layout = Layout.MIRROR
    memory_budget: Budget | None = None
    """Most memory one image (or one network batch) may take; larger images are refused before decoding
    (``engine/memory.py``). ``None``: the machine's default, measured where the work runs (``stages.py``)."""
    frame_step: int = 1
    """Take every ``frame_step``-th frame of a clip (frames keep their numbers in the source). Not part of an
    output's settings record: it decides which frames are written, never their pixels."""
    encode: str = "frames"
    """What a clip gives: ``frames`` (a folder of PNGs per kind), ``video`` (one encoded video per kind,
    ``batch/encode.py``) or ``both``."""

    @classmethod
    def decide(cls, out_dir: Path, device_type: str, *, kinds: Iterable[OutputKind] | None = None,
               batch_size: int | None = None, workers: int | None = None, skip_existing: bool = False,
               max_pixels: int | None = DEFAULT_MAX_PIXELS,
               flush_after: float = DEFAULT_FLUSH_AFTER, layout: Layout = Layout.MIRROR,
               memory_budget: int | None = None, frame_step: int = 1, encode: str = "frames") -> RunSettings:
        """Fill every default from the device (``"cpu"`` or ``"cuda"``) and the user's choices.

        ``kinds`` is what the run writes, selected once by the caller (``batch.kinds.select``); ``None``: the
        default selection (map and mask).

        ``memory_budget`` is bytes per image, 0 for no limit, ``None`` for the default of the machine
        the work runs on (a share of its memory available when the stages start).
        """
        from animeface_seg.engine.device import default_batch_size
        from animeface_seg.engine.memory import fixed_budget

        return cls(
            out_dir=out_dir,
            kinds=select() if kinds is None else tuple(kinds),
            batch_size=max(1, batch_size or default_batch_size(device_type)),
            workers=max(1, workers or default_workers(device_type)),
            skip_existing=skip_existing,
            max_pixels=max_pixels,
            flush_after=flush_after,
            layout=Layout(layout),
            memory_budget=None if memory_budget is None else fixed_budget(memory_budget),
            frame_step=max(1, frame_step),
            encode=encode,
        )

    def outputs(self, job: Job) -> dict[OutputKind | str, Path]:
        """Where ``job``'s outputs go with these settings (kinds, OUT, layout): what every stage uses.
        A clip's are its frame folders (``frame_outputs`` names each frame's files) and, when encoded,
        its videos under ``<kind>_video`` (``map_video``, ``mask_video``, ...)."""
        if not job.clip:
            return job.outputs(self.out_dir, self.kinds, self.layout)
        outputs: dict[OutputKind | str, Path] = {}
        if self.encode != "video":
            outputs.update(job.frame_folders(self.out_dir, self.kinds, self.layout))
        outputs.update({f"{kind}_video": path for kind, path in self.videos(job).items()})
        return outputs

    def frame_outputs(self, job: Job, number: int) -> dict[OutputKind, Path]:
        """The files of frame ``number`` of the clip ``job`` (none when only videos are written)."""
        if self.encode == "video":
            return {}
        return frame_output_paths(self.out_dir, job.relative, self.kinds, self.layout, number)

    def videos(self, job: Job) -> dict[OutputKind, Path]:
        """The encoded video of each kind for the clip ``job`` (none unless ``encode`` asks for them)."""
        if self.encode == "frames":
            return {}
        return clip_video_paths(self.out_dir, job.relative, self.kinds, self.layout)
