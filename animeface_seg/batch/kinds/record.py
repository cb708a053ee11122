"""What one output kind is: its name, where its files go, how it is rendered, encoded and what it costs.

Each kind is one ``Kind`` record; the registry (``batch/kinds/__init__.py``) holds them, and every
layer that writes, names, encodes, reviews or budgets an output asks the record instead of naming
the kind. Nothing heavy is imported here: renderers import numpy and Pillow when they run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from animeface_seg.engine.segmentor import Segmentation

#: Makes a kind's image from a result and (for kinds that need it) the decoded source image.
Renderer = Callable[["Segmentation", "np.ndarray | None"], "Image.Image"]
#: Answers whether a run with these options (``remove_background``, ``cutout``, ...) writes a kind.
Wanted = Callable[[Mapping[str, bool]], bool]


@dataclass(frozen=True)
class VideoFormat:
    """How a clip's frames of one kind are encoded (``--encode video|both``): container, codec, pixel formats."""

    suffix: str
    """The video's file suffix (``.mkv``)."""
    container: str
    """PyAV's (FFmpeg's) container format name (``matroska``)."""
    codec: str
    gray: str
    """Pixel format of a one-channel image (a mask)."""
    colour: str
    """Pixel format of a colour image (RGB or RGBA)."""
    options: Mapping[str, str] = field(default_factory=dict)
    """The encoder's options."""

    def pixel_format(self, image: np.ndarray) -> str:
        """The stream's pixel format for frames like ``image``."""
        return self.gray if image.ndim == 2 else self.colour


#: Lossless FFV1 in Matroska: every class colour and mask value decodes back exactly.
LOSSLESS = VideoFormat(".mkv", "matroska", "ffv1", gray="gray", colour="bgr0")
#: VP9 with alpha in WebM: what browsers and editors play with transparency (lossy, like any web video).
WEB_ALPHA = VideoFormat(".webm", "webm", "libvpx-vp9", gray="yuva420p", colour="yuva420p",
                        options={"crf": "20", "b": "0"})


def always(options: Mapping[str, bool]) -> bool:
    """Every run writes the kind (the map)."""
    return True


def by_name(options: Mapping[str, bool]) -> bool:
    """No option writes the kind: only naming it does (``select(named=...)``, the class masks)."""
    return False


def when(option: str) -> Wanted:
    """A run writes the kind when ``option`` is on (``when("cutout")``: ``--cutout``)."""
    return lambda options: bool(options.get(option))


def unless(option: str) -> Wanted:
    """A run writes the kind unless ``option`` is on."""
    return lambda options: not options.get(option)


@dataclass(frozen=True)
class Kind:
    """One output kind and its behaviour; its ``name`` is the string records and manifests store."""

    name: str
    suffix: str
    """Added to the input's stem in the ``mirror`` layout (``_mask``: ``OUT/a/b_mask.png``)."""
    folder: str
    """Its own tree under OUT in the ``by-kind`` layout (``masks``: ``OUT/masks/a/b.png``)."""
    render: Renderer
    """The kind's image of one result on the engine's pixel grid."""
    wanted: Wanted = by_name
    """Whether a run with given options writes it (``always``, ``when(option)``, ``unless(option)``, ``by_name``)."""
    needs_mask: bool = False
    """Rendering needs the character mask, which only a run that removes the background computes."""
    needs_source: bool = False
    """Rendering needs the decoded source image, so it is kept until the result is written."""
    render_bytes_per_pixel: int = 0
    """Memory rendering it takes beyond the results, per source pixel (``engine/memory.py``'s writing step)."""
    video: VideoFormat = LOSSLESS
    exact_colours: bool = False
    """Its review thumbnail keeps every colour exactly (nearest-neighbour, PNG): a colour map."""
