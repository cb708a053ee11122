"""The geometry rule and its inverse: resize so the short side is 512, pad to multiples of 64 by
edge replication; then crop the padding and bring results back to the size asked for.

All tensor work here runs on whatever device the input tensor lives on, in batched-friendly
separable passes; the network input is uint8 (the reference quantises the resized image).
"""

from __future__ import annotations

import math
import sys

import torch
import torch.nn.functional as F

from animeface_seg.engine.errors import ImageShapeError

#: Short side of the image the networks see.
RESOLUTION = 512
#: Padded sides are multiples of this (the UNet needs 32, the reference pads to 64).
PAD_MULTIPLE = 64
#: Largest network input accepted (64 times 512x512): a very elongated image would otherwise
#: become a strip hundreds of thousands of pixels long once its short side is 512.
MAX_PADDED_PIXELS = 64 * RESOLUTION * RESOLUTION
#: Float working memory of one band of the area shrink (see ``_area_shrink``), in bytes.
_SHRINK_CHUNK_BYTES = 16 * 2**20


def processed_size(height: int, width: int, resolution: int = RESOLUTION) -> tuple[int, int]:
    """Size (H', W') with the short side equal to ``resolution``, rounded half to even."""
    k = float(resolution) / float(min(height, width))
    return int(round(height * k)), int(round(width * k))


def padded_size(height: int, width: int, resolution: int = RESOLUTION) -> tuple[int, int]:
    """Size of the network input for an original image of ``height`` x ``width``."""
    h, w = processed_size(height, width, resolution)
    return math.ceil(h / PAD_MULTIPLE) * PAD_MULTIPLE, math.ceil(w / PAD_MULTIPLE) * PAD_MULTIPLE


def _area_taps(n_in: int, n_out: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Source indices and weights (n_out, taps) of exact area averaging (OpenCV INTER_AREA)."""
    scale = n_in / n_out
    taps = math.ceil(scale) + 1
    start = torch.arange(n_out, dtype=torch.float64) * scale
    first = start.floor().long()
    index = first[:, None] + torch.arange(taps)[None, :]
    lo = torch.maximum(start[:, None], index.double())
    hi = torch.minimum(start[:, None] + scale, index.double() + 1)
    weight = ((hi - lo).clamp(min=0) / scale).float()
    index = index.clamp(max=n_in - 1)
    return index.to(device), weight.to(device)


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
    """Resize a (3, H, W) uint8 tensor to ``size``: area when shrinking, bicubic when enlarging.

    Shrinking by whole-number factors is exactly OpenCV's INTER_AREA (``area_whole_factor``);
    other factors and enlarging match OpenCV's INTER_AREA / INTER_CUBIC, which the reference
    uses, to within 1 level.
    """
    _, height, width = image.shape
    h, w = size
    if (h, w) == (height, width):
        return image
    factors = whole_factors(height, width, h, w)
    if factors is not None:
        return area_whole_factor(image, factors)
    if h < height:
        return _area_shrink(image, h, w)
    out = F.interpolate(image[None].float(), size=(h, w), mode="bicubic", align_corners=False)[0]
    return out.round_().clamp_(0, 255).to(torch.uint8)


def _area_shrink(image: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Area shrink of a (3, H, W) uint8 tensor, a band of output rows at a time.

    Each output row depends only on its own source rows, so the float intermediates never
    exceed about ``_SHRINK_CHUNK_BYTES`` per band plus the uint8 output, however large the
    image; the arithmetic per element is that of one whole-image pass, so results are identical.
    """
    _, height, width = image.shape
    index, weight = _area_taps(height, h, torch.device("cpu"))
    cols = _area_taps(width, w, image.device) if w < width else None
    out = torch.empty((3, h, w if cols is not None else width), dtype=torch.uint8, device=image.device)
    step = max(1, _SHRINK_CHUNK_BYTES // (12 * width * index.shape[1]))
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


def crop(tensor: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Remove the bottom/right padding of a (..., H_pad, W_pad) network output, keeping ``size``."""
    return tensor[..., : size[0], : size[1]]


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


def nearest_index(n_in: int, n_out: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Source index of each of ``n_out`` samples, centre-aligned: ``floor((i + 0.5) * n_in / n_out)``,
    computed exactly in integers (the grid of bilinear align_corners=False and of nearest-exact)."""
    i = torch.arange(n_out, device=device)
    return ((2 * i + 1) * n_in).div_(2 * n_out, rounding_mode="floor").clamp_(max=n_in - 1)


def resize_nearest(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Centre-aligned nearest-neighbour resize of a (..., h, w) tensor of any dtype (class maps stay exact)."""
    h, w = image.shape[-2:]
    rows = nearest_index(h, size[0], image.device)
    cols = nearest_index(w, size[1], image.device)
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
