"""The geometry rule (``geometry``) carried out on torch tensors, on whatever device they live on.

Used by the torch runtimes: batched-friendly separable passes, and the network input is uint8
(the reference quantises the resized image). ``geometry.host`` is the same rule on numpy arrays.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from animeface_seg.engine.geometry import (RESOLUTION, SHRINK_CHUNK_BYTES, area_taps, check_shape, nearest_index,
                                           padded_size, processed_size, resize_method)


def _area_taps(n_in: int, n_out: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``geometry.area_taps`` as tensors on ``device``."""
    index, weight = area_taps(n_in, n_out)
    return torch.from_numpy(index).to(device), torch.from_numpy(weight).to(device)


def _area_resize_dim(x: torch.Tensor, dim: int, taps: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Shrink ``x`` along ``dim`` by exact area averaging with ``taps`` (see ``_area_taps``); returns float32."""
    index, weight = taps
    shape = [1] * x.dim()
    shape[dim] = index.shape[0]
    out = None
    for t in range(index.shape[1]):
        term = x.index_select(dim, index[:, t]).float() * weight[:, t].view(shape)
        out = term if out is None else out.add_(term)
    return out


def area_whole_factor(image: torch.Tensor, factors: tuple[int, int]) -> torch.Tensor:
    """Shrink a (C, H, W) uint8 tensor by whole-number factors (fy, fx) exactly as OpenCV's INTER_AREA.

    Each output value comes from the exact integer sum of its fy x fx block, divided once.
    OpenCV's rule (imgproc/src/resize.cpp, ``resizeAreaFast_`` and ``ResizeAreaFastVec``):
    for 2 x 2 blocks ``(sum + 2) >> 2``, i.e. ties rounded half up; for every other pair of
    factors ``saturate_cast<uchar>(sum * scale)`` with ``float scale = 1.f / (fy * fx)``: the
    product in float32, then ``cvRound``, i.e. rounded half to even.
    """
    fy, fx = factors
    c, height, width = image.shape
    h, w = height // fy, width // fx
    sums = image.reshape(c, height, w, fx).sum(-1, dtype=torch.int32)
    sums = sums.reshape(c, h, fy, w).sum(2, dtype=torch.int32)
    if (fy, fx) == (2, 2):
        return ((sums + 2) >> 2).to(torch.uint8)
    scale = torch.tensor(1.0, dtype=torch.float32) / (fy * fx)  # float32 division, like 1.f / area
    return (sums.float() * scale.to(sums.device)).round_().clamp_(0, 255).to(torch.uint8)


def resize_uint8(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a (3, H, W) uint8 tensor to ``size`` by ``geometry.resize_method``: area when shrinking,
    bicubic when enlarging (OpenCV's INTER_AREA exactly for whole factors, else within a level)."""
    _, height, width = image.shape
    method, factors = resize_method(height, width, *size)
    if method == "same":
        return image
    if method == "whole":
        return area_whole_factor(image, factors)
    if method == "area":
        return _area_shrink(image, *size)
    out = F.interpolate(image[None].float(), size=size, mode="bicubic", align_corners=False)[0]
    return out.round_().clamp_(0, 255).to(torch.uint8)


def _area_shrink(image: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Area shrink of a (3, H, W) uint8 tensor, a band of output rows at a time.

    Each output row depends only on its own source rows, so the float intermediates never
    exceed about ``SHRINK_CHUNK_BYTES`` per band plus the uint8 output, however large the
    image; the arithmetic per element is that of one whole-image pass, so results are identical.
    """
    _, height, width = image.shape
    index, weight = _area_taps(height, h, torch.device("cpu"))
    cols = _area_taps(width, w, image.device) if w < width else None
    out = torch.empty((3, h, w if cols is not None else width), dtype=torch.uint8, device=image.device)
    step = max(1, SHRINK_CHUNK_BYTES // (12 * width * index.shape[1]))
    for start in range(0, h, step):
        band = slice(start, min(h, start + step))
        # Only the band's source rows, made contiguous: selecting rows of a strided (H, W, 3) view
        # would otherwise copy the whole image on every call.
        first, last = int(index[band].min()), int(index[band].max())
        rows = image[:, first:last + 1].contiguous()
        taps = ((index[band] - first).to(image.device), weight[band].to(image.device))
        part = _area_resize_dim(rows, 1, taps)
        if cols is not None:
            part = _area_resize_dim(part, 2, cols)
        out[:, band] = part.round_().clamp_(0, 255)
    return out


def resize_classes(classes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bring an (h, w) class map to ``size`` (the inverse of the resize, for the map), on the same
    centre-aligned pixel grid as ``resize_mask``."""
    return classes if tuple(classes.shape[-2:]) == tuple(size) else resize_nearest(classes, size)


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bring an (h, w) float mask to ``size``: bilinear with pixel centres aligned
    (align_corners=False), antialiased when shrinking."""
    h, w = mask.shape[-2:]
    if (h, w) == tuple(size):
        return mask
    return F.interpolate(mask[None, None], size=size, mode="bilinear", align_corners=False,
                         antialias=size[0] < h)[0, 0]


def resize_nearest(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Centre-aligned nearest-neighbour resize of a (..., h, w) tensor of any dtype (class maps stay exact)."""
    h, w = image.shape[-2:]
    rows = torch.from_numpy(nearest_index(h, size[0])).to(image.device)
    cols = torch.from_numpy(nearest_index(w, size[1])).to(image.device)
    return image.index_select(-2, rows).index_select(-1, cols)


def pad_edge(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Pad a (C, h, w) tensor at the bottom and right to ``size`` by repeating the last row/column."""
    _, h, w = image.shape
    if (h, w) == size:
        return image
    rows = torch.arange(size[0], device=image.device).clamp_(max=h - 1)
    cols = torch.arange(size[1], device=image.device).clamp_(max=w - 1)
    return image.index_select(1, rows).index_select(2, cols)


def prepare(image: torch.Tensor, resolution: int = RESOLUTION) -> torch.Tensor:
    """Turn a (3, H, W) uint8 image into the padded (3, H_pad, W_pad) uint8 network input."""
    _, height, width = image.shape
    check_shape(height, width, resolution)
    resized = resize_uint8(image, processed_size(height, width, resolution))
    return pad_edge(resized, padded_size(height, width, resolution))
