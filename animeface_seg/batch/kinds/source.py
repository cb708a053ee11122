"""Kinds drawn over the decoded source image: the cutout (``--cutout``) and the overlay (``--overlay``).

Both use the engine's geometry, so map, mask, cutout and overlay share one pixel grid.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from animeface_seg.batch.kinds.record import WEB_ALPHA, Kind, when

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from animeface_seg.engine.segmentor import Segmentation

#: Weight of the colour map in ``--overlay`` images (the rest is the source image).
OVERLAY_ALPHA = 0.5
#: Bytes per source pixel rendering either takes beyond the results: the cutout's RGB and RGBA images and its
#: float mask at the original size, the overlay's copies (fitted on measurements, docs/memory.md: 31.6 bytes a
#: pixel measured at 5000x5000, rounded up with a margin).
RENDER_BYTES_PER_PIXEL = 26


def _mask_at(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The uint8 mask at ``size`` on the engine's pixel grid (``geometry.resize_mask``)."""
    import numpy as np

    from animeface_seg.engine.geometry import host as geometry

    if mask.shape == tuple(size):
        return mask
    resized = geometry.resize_mask(mask.astype(np.float32), size)
    return np.clip(np.round(resized), 0, 255).astype(np.uint8)


def _source_at(source: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The source at ``size`` resized as the networks saw it (``geometry.resize_uint8``)."""
    from animeface_seg.engine.geometry import host as geometry

    if source.shape[:2] == tuple(size):
        return source
    return geometry.resize_uint8(source, size)


def render_cutout(result: Segmentation, source: np.ndarray) -> Image.Image:
    """The source at its original size with the mask as alpha."""
    from PIL import Image

    cutout = Image.fromarray(source, "RGB").convert("RGBA")
    cutout.putalpha(Image.fromarray(_mask_at(result.mask, result.original_size), "L"))
    return cutout


def render_overlay(result: Segmentation, source: np.ndarray) -> Image.Image:
    """The map blended over the source at the map's size."""
    from PIL import Image

    base = Image.fromarray(_source_at(source, result.colors.shape[:2]), "RGB")
    return Image.blend(base, Image.fromarray(result.colors, "RGB"), OVERLAY_ALPHA)


CUTOUT = Kind("cutout", suffix="_cutout", folder="cutouts", render=render_cutout, wanted=when("cutout"),
              needs_mask=True, needs_source=True, render_bytes_per_pixel=RENDER_BYTES_PER_PIXEL, video=WEB_ALPHA)
OVERLAY = Kind("overlay", suffix="_overlay", folder="overlays", render=render_overlay, wanted=when("overlay"),
               needs_source=True, render_bytes_per_pixel=RENDER_BYTES_PER_PIXEL)
