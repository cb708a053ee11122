"""The settings of one batch run (its output spec and how hard to work), decided once and passed down to every
stage and front-end."""

from __future__ import annotations

import os
from dataclasses import dataclass

from animeface_seg.batch.spec import OutputSpec
from animeface_seg.engine.decode import DEFAULT_MAX_PIXELS
from animeface_seg.engine.memory import Budget

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
    """What to write (the output ``spec``) and how hard to work; build it with ``decide``."""

    spec: OutputSpec
    batch_size: int
    workers: int
    skip_existing: bool = False
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    flush_after: float = DEFAULT_FLUSH_AFTER
    memory_budget: Budget | None = None
    """Most memory one image (or one network batch) may take; larger images are refused before decoding
    (``engine/memory.py``). ``None``: the machine's default, measured where the work runs (``stages.py``)."""

    @classmethod
    def decide(cls, spec: OutputSpec, device_type: str, *, batch_size: int | None = None, workers: int | None = None,
               skip_existing: bool = False, max_pixels: int | None = DEFAULT_MAX_PIXELS,
               flush_after: float = DEFAULT_FLUSH_AFTER, memory_budget: int | None = None) -> RunSettings:
        """Fill every default from the device (``"cpu"`` or ``"cuda"``) and the user's choices.

        ``kinds`` is what the run writes, selected once by the caller (``batch.kinds.select``); ``None``: the
        default selection (map and mask).

        ``memory_budget`` is bytes per image, 0 for no limit, ``None`` for the default of the machine
        the work runs on (a share of its memory available when the stages start).
        """
        from animeface_seg.engine.device import default_batch_size
        from animeface_seg.engine.memory import fixed_budget

        return cls(
            spec=spec,
            batch_size=max(1, batch_size or default_batch_size(device_type)),
            workers=max(1, workers or default_workers(device_type)),
            skip_existing=skip_existing,
            max_pixels=max_pixels,
            flush_after=flush_after,
            memory_budget=None if memory_budget is None else fixed_budget(memory_budget),
        )
