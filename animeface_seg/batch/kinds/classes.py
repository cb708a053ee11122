"""One mask per face-part class (``--class-masks``), named as the class: 255 where the map has it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from animeface_seg.batch.kinds.record import Kind, Renderer
from animeface_seg.engine.palette import CLASS_NAMES

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from animeface_seg.engine.segmentor import Segmentation


def _class_renderer(name: str) -> Renderer:
    """Renders class ``name``'s mask as 8-bit gray on the map's own grid."""
    def render(result: Segmentation, source: np.ndarray | None = None) -> Image.Image:
        from PIL import Image

        return Image.fromarray(result.class_mask(name), "L")

    return render


#: The class mask kinds, in palette order: asked for by name only (``select(named=...)``).
CLASS_KINDS: tuple[Kind, ...] = tuple(Kind(name, suffix=f"_{name}", folder=name, render=_class_renderer(name))
                                      for name in CLASS_NAMES)
