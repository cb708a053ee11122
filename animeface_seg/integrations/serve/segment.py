"""A request's image through the engine: its segmentor variant, the decoded body, and the answer's content.

Variants: one segmentor per background setting, built by the factory (the default, background removed,
at start; the other on first use), and ``size=processed`` as a shallow copy sharing its networks (only the
size results are finished at differs). Decoding and rendering are the command's own (``decode.load_rgb``
within the pixel limit and memory budget, ``batch/writers.render``), so an answer has the command's pixels.
"""

from __future__ import annotations

import copy
import functools
import io
import threading
from collections.abc import Callable
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from animeface_seg.batch.discovery import Job
from animeface_seg.batch.kinds import kind_named, memory_terms
from animeface_seg.batch.outcome import Outcome, record
from animeface_seg.batch.writers import encode_png, render
from animeface_seg.engine import memory
from animeface_seg.engine.decode import load_rgb
from animeface_seg.engine.errors import ImageDecodeError

if TYPE_CHECKING:
    import numpy as np

    from animeface_seg.engine.results import Segmentation
    from animeface_seg.engine.segmentor import Segmentor

SIZES = ("original", "processed")


class Variants:
    """The segmentors a service answers with, by ``(remove_background, size)``, each built once."""

    def __init__(self, factory: Callable[..., Segmentor], model: dict[str, Any]) -> None:
        self._factory = factory
        self._model = model
        self._built: dict[tuple[bool, str], Segmentor] = {}
        self._lock = threading.Lock()

    def get(self, remove_background: bool, size: str) -> Segmentor:
        """The segmentor of one variant (built now when it is the first use of its background setting)."""
        with self._lock:
            base = self._built.get((remove_background, "original"))
            if base is None:
                base = self._factory(**self._model, remove_background=remove_background, output_size="original")
                self._built[(remove_background, "original")] = base
            if (remove_background, size) not in self._built:
                variant = copy.copy(base)  # the same networks, results finished at the other size
                variant.output_size = size
                self._built[(remove_background, size)] = variant
            return self._built[(remove_background, size)]


def decode(body: bytes, kind: str, segmentor: Segmentor, max_pixels: int | None,
           memory_budget: int | None) -> np.ndarray:
    """The body's picture as H x W x 3 uint8 RGB, refused (``ImageDecodeError``) over the pixel limit or the
    memory one image may take with this kind and variant, as the command reads a file."""
    if not body:
        raise ImageDecodeError("the body is empty: send the image's bytes")
    device_type, _, index = segmentor.device_name.partition(":")
    budget = (memory.fixed_budget(memory_budget) if memory_budget is not None
              else memory.machine_budget(device_type, int(index) if index else None))
    estimate = functools.partial(memory.estimate, device_type=device_type,
                                 remove_background=segmentor.remove_background, output_size=segmentor.output_size,
                                 **memory_terms([kind]))
    return load_rgb(io.BytesIO(body), max_pixels=max_pixels,
                    before_load=functools.partial(memory.check_image, budget=budget, estimate=estimate))


def png_bytes(result: Segmentation, kind: str, source: np.ndarray | None) -> bytes:
    """The PNG of ``kind`` for one result, as the command writes it (its text chunks aside)."""
    stream = io.BytesIO()
    encode_png(render(result, kind, source if kind_named(kind).needs_source else None), stream)
    return stream.getvalue()


def result_record(result: Segmentation) -> dict[str, Any]:
    """The input's record as ``--json`` prints it, without the paths (no input file, no outputs)."""
    job = Job(Path("-"), PurePath("-"))
    outcome = Outcome(job, "ok", original_size=result.original_size, processed_size=result.processed_size,
                      class_fractions=result.class_fractions, mask_coverage=result.mask_coverage)
    return {key: value for key, value in record(outcome).items() if key not in ("input", "outputs")}
