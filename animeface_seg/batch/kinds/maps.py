"""The two kinds every run starts from: the colour-coded face-part map and the character mask."""

from __future__ import annotations

from typing import TYPE_CHECKING

from animeface_seg.batch.kinds.record import Kind, always, when

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from animeface_seg.engine.segmentor import Segmentation


def render_map(result: Segmentation, source: np.ndarray | None = None) -> Image.Image:
    """The colour map as RGB."""
    from PIL import Image

    return Image.fromarray(result.colors, "RGB")


def render_mask(result: Segmentation, source: np.ndarray | None = None) -> Image.Image:
    """The character mask as 8-bit gray."""
    from PIL import Image

    return Image.fromarray(result.mask, "L")


MAP = Kind("map", suffix="", folder="maps", render=render_map, wanted=always, exact_colours=True)
#: Only a run that removes the background computes a mask (``--keep-background`` writes none).
MASK = Kind("mask", suffix="_mask", folder="masks", render=render_mask, wanted=when("remove_background"),
            needs_mask=True)
