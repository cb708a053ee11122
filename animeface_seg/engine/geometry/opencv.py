"""The geometry rule's resize done by OpenCV itself, as the original preprocessor does it: the ``reference``
runtime's network input, bit for bit (``geometry.host`` and ``geometry.device`` stay within a level of it).

The original (``resize_image_with_pad`` of comfyui_controlnet_aux) calls ``cv2.resize`` on the uint8 HWC image,
``INTER_CUBIC`` when ``k = resolution / min(H, W)`` is above 1, else ``INTER_AREA``. OpenCV is the optional
``reference`` extra (``runtimes/select.py`` refuses the runtime without it); only that runtime imports this.
"""

from __future__ import annotations

import numpy as np

from animeface_seg.engine.geometry import RESOLUTION, check_shape, padded_size, processed_size
from animeface_seg.engine.geometry.host import pad_edge


def resize_uint8(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``cv2.resize`` of an (H, W, C) uint8 image to ``size`` (h, w): bicubic when the short side grows,
    area averaging otherwise, as the original chooses (its ``k > 1``)."""
    import cv2

    height, width = image.shape[:2]
    if (height, width) == tuple(size):
        return image
    enlarge = min(size) > min(height, width)
    return cv2.resize(np.ascontiguousarray(image), (size[1], size[0]),
                      interpolation=cv2.INTER_CUBIC if enlarge else cv2.INTER_AREA)


def prepare(image: np.ndarray, resolution: int = RESOLUTION) -> np.ndarray:
    """Turn an (H, W, 3) uint8 image into the padded network input, a C-contiguous (3, H_pad, W_pad) uint8
    array, resized by OpenCV (``resize_uint8``) and padded as ``geometry.host.prepare`` pads."""
    height, width = image.shape[:2]
    check_shape(height, width, resolution)
    resized = resize_uint8(image, processed_size(height, width, resolution))
    return np.ascontiguousarray(pad_edge(resized, padded_size(height, width, resolution)).transpose(2, 0, 1))
