"""Turning segmentation results into PNG images, and an input's set of PNG files written all or nothing.

``render`` makes the image of each output kind (as its record in ``batch/kinds`` draws it); ``write_outputs``
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

from animeface_seg.batch.kinds import kind_named
from animeface_seg.batch.naming import OutputKind
from animeface_seg.batch.store import LOCAL, OutputStore
from animeface_seg.batch.tempfiles import Writer
from animeface_seg.engine.segmentor import Segmentation

#: zlib level for every PNG: 1 is several times faster than Pillow's default 6 and the
#: flat-coloured maps stay small; the outputs are intermediate data, not archives.
PNG_COMPRESS_LEVEL = 1


def render(result: Segmentation, kind: OutputKind, source: np.ndarray | None = None) -> Image.Image:
    """The image of one output ``kind`` (``map``, ``mask``, ``cutout``, ...), drawn by its registered record
    (``batch/kinds``); raises when the kind needs the decoded ``source`` and none is given."""
    record = kind_named(kind)
    if record.needs_source and source is None:
        raise ValueError(f"the {kind} output needs the source image")
    return record.render(result, source)


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
