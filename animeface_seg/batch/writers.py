"""Turning segmentation results into PNG files, written atomically.

Every file is written under a hidden temporary name in its own folder and renamed into
place, so an interrupted run never leaves a partial file that ``--skip-existing`` would trust.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image

from animeface_seg.batch.folders import make_folders
from animeface_seg.batch.naming import OutputKind
from animeface_seg.engine.segmentor import Segmentation

#: zlib level for every PNG: 1 is several times faster than Pillow's default 6 and the
#: flat-coloured maps stay small; the outputs are intermediate data, not archives.
PNG_COMPRESS_LEVEL = 1
#: Weight of the colour map in ``--overlay`` images (the rest is the source image).
OVERLAY_ALPHA = 0.5


def write_png_atomic(image: Image.Image, path: Path) -> None:
    """Save ``image`` as PNG at ``path`` via a temporary file and an atomic rename."""
    make_folders(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        image.save(tmp, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _resized(array: np.ndarray, size: tuple[int, int], resample: Image.Resampling) -> Image.Image:
    image = Image.fromarray(array)
    return image if image.size == (size[1], size[0]) else image.resize((size[1], size[0]), resample)


def render(result: Segmentation, kind: OutputKind, source: np.ndarray | None = None) -> Image.Image:
    """The image for one output kind: ``map``, ``mask``, ``cutout`` or ``overlay``.

    ``cutout`` is the source at its original size with the mask as alpha; ``overlay`` blends
    the map over the source at the map's size. Both need the decoded ``source``.
    """
    if kind == OutputKind.MAP:
        return Image.fromarray(result.colors, "RGB")
    if kind == OutputKind.MASK:
        return Image.fromarray(result.mask, "L")
    if source is None:
        raise ValueError(f"the {kind} output needs the source image")
    if kind == OutputKind.CUTOUT:
        alpha = _resized(result.mask, result.original_size, Image.Resampling.BILINEAR)
        cutout = Image.fromarray(source, "RGB").convert("RGBA")
        cutout.putalpha(alpha)
        return cutout
    if kind == OutputKind.OVERLAY:
        base = _resized(source, result.colors.shape[:2], Image.Resampling.BILINEAR)
        return Image.blend(base, Image.fromarray(result.colors, "RGB"), OVERLAY_ALPHA)
    raise ValueError(f"unknown output kind {kind!r}")


def write_outputs(result: Segmentation, paths: Mapping[OutputKind, Path], source: np.ndarray | None = None) -> None:
    """Write each requested output kind to its path."""
    for kind, path in paths.items():
        write_png_atomic(render(result, kind, source), path)
