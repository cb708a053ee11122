"""Turning segmentation results into PNG images, and an input's set of PNG files written all or nothing.

``render`` makes the image of each output kind on the engine's pixel grid; ``write_outputs``
writes an input's whole set through ``tempfiles.write_set``, so its outputs appear together or
not at all (see ``tempfiles.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePath
from typing import BinaryIO

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from animeface_seg.batch.naming import CLASS_KINDS, OutputKind
from animeface_seg.batch.store import LOCAL, OutputStore
from animeface_seg.batch.tempfiles import Writer
from animeface_seg.engine.geometry import host as geometry
from animeface_seg.engine.segmentor import Segmentation

#: zlib level for every PNG: 1 is several times faster than Pillow's default 6 and the
#: flat-coloured maps stay small; the outputs are intermediate data, not archives.
PNG_COMPRESS_LEVEL = 1
#: Weight of the colour map in ``--overlay`` images (the rest is the source image).
OVERLAY_ALPHA = 0.5


def _mask_at(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The uint8 mask at ``size`` on the engine's pixel grid (``geometry.resize_mask``)."""
    if mask.shape == tuple(size):
        return mask
    resized = geometry.resize_mask(mask.astype(np.float32), size)
    return np.clip(np.round(resized), 0, 255).astype(np.uint8)


def _source_at(source: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The source at ``size`` resized as the networks saw it (``geometry.resize_uint8``)."""
    if source.shape[:2] == tuple(size):
        return source
    return geometry.resize_uint8(source, size)


def render(result: Segmentation, kind: OutputKind, source: np.ndarray | None = None) -> Image.Image:
    """The image for one output kind: ``map``, ``mask``, ``cutout``, ``overlay`` or a class name.

    A class mask (``hair``, ...) is 255 where the class map has that class, on the map's own grid.
    ``cutout`` is the source at its original size with the mask as alpha; ``overlay`` blends
    the map over the source at the map's size. Both need the decoded ``source`` and use the
    engine's geometry, so map, mask, cutout and overlay share one pixel grid.
    """
    if kind == OutputKind.MAP:
        return Image.fromarray(result.colors, "RGB")
    if kind == OutputKind.MASK:
        return Image.fromarray(result.mask, "L")
    if kind in CLASS_KINDS:
        return Image.fromarray(result.class_mask(str(kind)), "L")
    if source is None:
        raise ValueError(f"the {kind} output needs the source image")
    if kind == OutputKind.CUTOUT:
        cutout = Image.fromarray(source, "RGB").convert("RGBA")
        cutout.putalpha(Image.fromarray(_mask_at(result.mask, result.original_size), "L"))
        return cutout
    if kind == OutputKind.OVERLAY:
        base = Image.fromarray(_source_at(source, result.colors.shape[:2]), "RGB")
        return Image.blend(base, Image.fromarray(result.colors, "RGB"), OVERLAY_ALPHA)
    raise ValueError(f"unknown output kind {kind!r}")


def encode_png(image: Image.Image, stream: BinaryIO, info: PngInfo | None = None) -> None:
    """Encode ``image`` as PNG into ``stream``, with the text chunks ``info``."""
    image.save(stream, format="PNG", compress_level=PNG_COMPRESS_LEVEL, pnginfo=info)


def write_outputs(result: Segmentation, paths: Mapping[OutputKind, PurePath], source: np.ndarray | None = None,
                  info: PngInfo | None = None, store: OutputStore = LOCAL) -> None:
    """Write every requested output kind to its path in ``store``, each with the text chunks ``info``
    (the run's signature): all of them, or (on any failure, which is raised) none."""
    store.write_set({path: _rendered(result, kind, source, info) for kind, path in paths.items()})


def _rendered(result: Segmentation, kind: OutputKind, source: np.ndarray | None, info: PngInfo | None) -> Writer:
    """Render only when written, so one input's images are not all held at once."""
    return lambda stream: encode_png(render(result, kind, source), stream, info)
