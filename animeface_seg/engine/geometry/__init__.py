"""The geometry rule: resize so the short side is 512, pad to multiples of 64 by edge replication;
then crop the padding and bring results back to the size asked for.

This module holds the rule itself (sizes, limits, resampling taps and grids) and imports no torch.
Two implementations carry it out on the same numbers:

- ``geometry.host``: numpy arrays in the host's memory, for the ONNX runtimes and the writers
  (a CPU run that never imports torch starts seconds sooner);
- ``geometry.device``: torch tensors on the segmentor's device (CUDA, or torch on the CPU).

Both build their resampling from ``area_taps`` and ``nearest_index`` below, so they agree
(``tests/test_geometry_host.py`` checks them against each other). A third, ``geometry.opencv``, is the
``reference`` runtime's resize: ``cv2.resize`` itself, as the original calls it (the optional
``reference`` extra); the two above stay within a level of it.
"""

from __future__ import annotations

import math
import sys

import numpy as np

from animeface_seg.engine.errors import ImageShapeError

#: Short side of the image the networks see.
RESOLUTION = 512
#: Padded sides are multiples of this (the UNet needs 32, the reference pads to 64).
PAD_MULTIPLE = 64
#: Largest network input accepted (64 times 512x512): a very elongated image would otherwise
#: become a strip hundreds of thousands of pixels long once its short side is 512.
MAX_PADDED_PIXELS = 64 * RESOLUTION * RESOLUTION
#: Float working memory of one band of the area shrink, in bytes (both implementations work in bands).
SHRINK_CHUNK_BYTES = 16 * 2**20


def processed_size(height: int, width: int, resolution: int = RESOLUTION) -> tuple[int, int]:
    """Size (H', W') with the short side equal to ``resolution``, rounded half to even."""
    k = float(resolution) / float(min(height, width))
    return int(round(height * k)), int(round(width * k))


def padded_size(height: int, width: int, resolution: int = RESOLUTION) -> tuple[int, int]:
    """Size of the network input for an original image of ``height`` x ``width``."""
    h, w = processed_size(height, width, resolution)
    return math.ceil(h / PAD_MULTIPLE) * PAD_MULTIPLE, math.ceil(w / PAD_MULTIPLE) * PAD_MULTIPLE


def check_shape(height: int, width: int, resolution: int = RESOLUTION) -> None:
    """Raise ``ImageShapeError`` for an image without pixels, or when the network input would exceed
    ``MAX_PADDED_PIXELS``."""
    if height < 1 or width < 1:
        raise ImageShapeError(f"image is {width}x{height}: it has no pixels")
    h, w = padded_size(height, width, resolution)
    if h * w > MAX_PADDED_PIXELS:
        raise ImageShapeError(
            f"image is {width}x{height}: with its short side at {resolution} it would be processed at "
            f"{w}x{h}, more than the {MAX_PADDED_PIXELS:,} pixels allowed; crop it to a less elongated shape"
        )


def area_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Source indices (int64) and weights (float32), each (n_out, taps), of exact area averaging
    (OpenCV INTER_AREA) from ``n_in`` samples to ``n_out``; computed in float64, then rounded once."""
    scale = n_in / n_out
    taps = math.ceil(scale) + 1
    start = np.arange(n_out, dtype=np.float64) * scale
    first = np.floor(start).astype(np.int64)
    index = first[:, None] + np.arange(taps, dtype=np.int64)[None, :]
    lo = np.maximum(start[:, None], index.astype(np.float64))
    hi = np.minimum(start[:, None] + scale, index.astype(np.float64) + 1)
    weight = (np.clip(hi - lo, 0, None) / scale).astype(np.float32)
    return np.minimum(index, n_in - 1), weight


def whole_factors(height: int, width: int, h: int, w: int) -> tuple[int, int] | None:
    """The (row, column) shrink factors when both are whole numbers, else None.

    OpenCV's test, reproduced in the same double arithmetic: ``1 / (dst / src)`` within
    DBL_EPSILON of an integer on both axes (and, here, the sizes divide exactly).
    """
    if h > height or w > width:
        return None
    fy, fx = 1.0 / (h / height), 1.0 / (w / width)
    iy, ix = round(fy), round(fx)
    exact = abs(fy - iy) < sys.float_info.epsilon and abs(fx - ix) < sys.float_info.epsilon
    return (iy, ix) if exact and iy * h == height and ix * w == width else None


def resize_method(height: int, width: int, h: int, w: int) -> tuple[str, tuple[int, int] | None]:
    """How the rule brings an image of ``height`` x ``width`` to ``h`` x ``w``: ``("same", None)``;
    ``("whole", factors)``, OpenCV's exact block averages for whole-number shrink factors
    (``whole_factors``); ``("area", None)``, area averaging for any other shrink (``area_taps``);
    ``("bicubic", None)`` to enlarge (as OpenCV's INTER_CUBIC, within a level)."""
    if (h, w) == (height, width):
        return "same", None
    factors = whole_factors(height, width, h, w)
    if factors is not None:
        return "whole", factors
    return ("area", None) if h < height else ("bicubic", None)


def nearest_index(n_in: int, n_out: int) -> np.ndarray:
    """Source index (int64) of each of ``n_out`` samples, centre-aligned: ``floor((i + 0.5) * n_in / n_out)``,
    computed exactly in integers (the grid of bilinear align_corners=False and of nearest-exact)."""
    i = np.arange(n_out, dtype=np.int64)
    return np.minimum((2 * i + 1) * n_in // (2 * n_out), n_in - 1)


def crop(array, size: tuple[int, int]):
    """Remove the bottom/right padding of a (..., H_pad, W_pad) network output (array or tensor), keeping ``size``."""
    return array[..., : size[0], : size[1]]
