"""The geometry rule (``geometry``) on numpy arrays, bit for bit as ``geometry.device`` computes it with torch on
an x86 CPU with AVX2 or AVX-512, so a CPU run of the ONNX runtimes never imports torch (1.8 s)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from animeface_seg.engine.geometry import (RESOLUTION, SHRINK_CHUNK_BYTES, area_taps, check_shape, nearest_index,
                                           padded_size, processed_size, resize_method)

# torch's bicubic and bilinear kernels are C++ that the compiler contracts into fused multiply-adds (one
# rounding for x * w + c) in a fixed pattern, the same in its x86-64 AVX2 and AVX-512 builds; ``_fma``
# reproduces one exactly and each computation below follows its kernel's pattern. torch's baseline build (CPUs
# without AVX2), and other compilers, round the products instead: their masks differ from these by up to about
# 2e-5 and their bicubic pixels, rarely, by one level. The area shrinks are separate tensor operations: exact.

_F32 = np.float32
#: torch's bicubic constant (``get_cubic_upsample_coefficients``), as OpenCV's INTER_CUBIC.
_CUBIC_A = _F32(-0.75)
#: Up to this output height + width, torch resizes a float image bilinearly without antialiasing in one
#: pass over the four corners (``cpu_upsample_linear_channels_last``), not in two.
_SMALL_BILINEAR = 128
#: The antialiased kernel's loop over taps is vectorised 4 taps at a time, products rounded then added in
#: order; the taps left over are fused.
_VECTOR_TAPS = 4
#: Working memory of one band of rows, well under ``SHRINK_CHUNK_BYTES``: numpy's fresh buffers of several MB
#: (page faults, huge pages) cost more than the arithmetic on them; bands of about 2 MB measured fastest.
_BAND_BYTES = SHRINK_CHUNK_BYTES // 8
#: Low 29 bits of a float64 holding a float32 midpoint (the 29 bits a float32 lacks: a 1, then zeros).
_LOW_BITS, _MIDPOINT = np.int64((1 << 29) - 1), np.int64(1 << 28)


def _fma(x: np.ndarray, w: np.ndarray, c: np.ndarray, out: np.ndarray | None = None,
         wide: np.ndarray | None = None, exact: bool = False) -> np.ndarray:
    """``x * w + c`` rounded once to float32 (into ``out``), for float32 or uint8 operands that broadcast together.

    The product is exact in float64 and the sum rounded to float64 first (``wide``: a float64 scratch buffer of
    shape (2, *result)); that double rounding errs only when it lands on a float32 midpoint, and those sums
    are nudged toward the exact one (unless the caller knows every float64 sum to be ``exact``).
    """
    shape = np.broadcast_shapes(np.shape(x), np.shape(w), np.shape(c))
    out = np.empty(shape, dtype=_F32) if out is None else out
    product, wide_sum = np.empty((2, *shape)) if wide is None else wide
    np.multiply(x, np.asarray(w, dtype=np.float64), out=product)
    np.add(product, c, out=wide_sum)
    np.copyto(out, wide_sum, casting="same_kind")
    if exact:
        return out
    bits = wide_sum.view(np.int64)
    ties = np.flatnonzero(np.equal(np.bitwise_and(bits, _LOW_BITS, out=bits), _MIDPOINT))
    if ties.size:
        p, addend = np.take(product, ties), np.take(np.broadcast_to(c, shape), ties).astype(np.float64)
        tied = p + addend
        lost = tied - p
        error = (p - (tied - lost)) + (addend - lost)  # the exact sum is tied + error
        np.put(out, ties, np.where(error == 0, tied, np.nextafter(tied, np.copysign(np.inf, error))))
    return out


def _band_rows(row_bytes: int, taps: int) -> int:
    """Output rows per band: their working memory stays near ``_BAND_BYTES``."""
    return max(1, _BAND_BYTES // (row_bytes * taps))


def _exact_pixel_sums(weight: np.ndarray) -> bool:
    """Whether every sum of uint8 pixels times ``weight`` (products, partial sums, and their float32 roundings)
    is exact in float64: all are multiples of the last bit of the smallest weight, and below 2^53 of them."""
    nonzero = np.abs(weight[weight != 0]).astype(np.float64)
    if not nonzero.size:
        return True
    quantum = 2.0 ** (math.floor(math.log2(nonzero.min())) - 23)
    return 255 * float(np.abs(weight).sum(axis=1, dtype=np.float64).max()) * (1 + 2.0 ** -20) < 2.0 ** 53 * quantum


def _weighted_sum(x: np.ndarray, axis: int, index: np.ndarray, weight: np.ndarray,
                  fused: bool | np.ndarray) -> np.ndarray:
    """Float32 ``sum_t x.take(index[:, t], axis) * weight[:, t]`` in torch's arithmetic: the taps in column
    order, tap 0's product rounded, then each tap either fused in (``fused``, or ``fused[:, t]`` per output)
    or added as a rounded product. Buffers are reused across taps: fresh large arrays cost page faults."""
    fused = np.broadcast_to(fused, index.shape)
    exact = x.dtype == np.uint8 and _exact_pixel_sums(weight)
    shape = list(x.shape)
    shape[axis] = index.shape[0]
    broadcast = [1] * x.ndim
    broadcast[axis] = index.shape[0]
    term, product = np.empty(shape, dtype=x.dtype), np.empty(shape, dtype=_F32)
    out, spare, wide = np.empty(shape, dtype=_F32), np.empty(shape, dtype=_F32), np.empty((2, *shape))
    for t in range(index.shape[1]):
        np.take(x, index[:, t], axis=axis, out=term, mode="clip")
        w, fuse = weight[:, t].reshape(broadcast), fused[:, t].reshape(broadcast)
        if t == 0:
            np.multiply(term, w, out=out)
        elif not fuse.any():
            np.add(out, np.multiply(term, w, out=product), out=out)
        else:
            _fma(term, w, out, spare, wide, exact)
            if not fuse.all():
                np.add(out, np.multiply(term, w, out=product), out=product)
                np.copyto(spare, product, where=~fuse)
            out, spare = spare, out
    return out


def _to_uint8(x: np.ndarray) -> np.ndarray:
    """``round_().clamp_(0, 255).to(uint8)`` of a float32 array (rounded half to even, in place)."""
    return np.clip(np.rint(x, out=x), 0, 255, out=x).astype(np.uint8)


def _area_whole_factor(image: np.ndarray, factors: tuple[int, int]) -> np.ndarray:
    """``device.area_whole_factor`` on an (H, W, C) uint8 array: exact block sums, divided once as OpenCV."""
    fy, fx = factors
    height, width, c = image.shape
    sums = image[::fy, ::fx].astype(np.uint16 if fy * fx * 255 < 2**16 else np.int32)
    for dy in range(fy):
        for dx in range(fx):
            if dy or dx:
                sums += image[dy::fy, dx::fx]
    if (fy, fx) == (2, 2):
        return ((sums + 2) >> 2).astype(np.uint8)
    return _to_uint8(sums.astype(_F32) * (_F32(1) / _F32(fy * fx)))


def _area_shrink(image: np.ndarray, h: int, w: int) -> np.ndarray:
    """``device._area_shrink`` on an (H, W, C) uint8 array: rows then columns, each product and sum rounded
    (separate tensor operations there), a band of output rows at a time."""
    height, width, c = image.shape
    index, weight = area_taps(height, h)
    cols = (*area_taps(width, w), False) if w < width else None
    out = np.empty((h, w if cols is not None else width, c), dtype=np.uint8)
    step = _band_rows(4 * c * width, index.shape[1])
    for start in range(0, h, step):
        band = slice(start, min(h, start + step))
        first, last = int(index[band].min()), int(index[band].max())
        part = _weighted_sum(image[first:last + 1], 0, index[band] - first, weight[band], False)
        if cols is not None:
            part = _weighted_sum(part, 1, *cols)
        out[band] = _to_uint8(part)
    return out


def _source_index(n_in: int, n_out: int) -> np.ndarray:
    """torch's float32 source coordinate of each output sample (align_corners=False): ``scale * (i + 0.5) - 0.5``
    with ``scale = n_in / n_out``, fused."""
    scale = _F32(n_in) / _F32(n_out)
    return _fma(np.arange(n_out, dtype=_F32) + _F32(0.5), scale, _F32(-0.5))


def _floor_and_lambda(src: np.ndarray, n_in: int) -> tuple[np.ndarray, np.ndarray]:
    """torch's ``guard_index_and_lambda``: the floor index (at most ``n_in - 1``) and the float32 fraction in [0, 1]."""
    first = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    return first, np.clip(src - first.astype(_F32), _F32(0), _F32(1))


def _cubic_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices (int64) and float32 weights, each (n_out, 4), of torch's CPU bicubic (A = -0.75,
    align_corners=False, borders clamped) as ``HelperInterpCubic.compute_indices_weights``, in the order its
    unrolled kernel sums them (source offsets 0, -1, +1, +2: the second product fused into the first), all fused."""
    first, t = _floor_and_lambda(_source_index(n_in, n_out), n_in)
    a = _CUBIC_A

    def near(x: np.ndarray) -> np.ndarray:  # cubic_convolution1, |x| <= 1
        return _fma(x, a + 2, -(a + 3)) * x * x + 1

    def far(x: np.ndarray) -> np.ndarray:  # cubic_convolution2, 1 < |x| < 2
        return _fma(_fma(x, a, -5 * a), x, 8 * a) * x - 4 * a

    weight = np.stack([near(t), far(t + 1), near(1 - t), far((1 - t) + 1)], axis=1)
    index = np.clip(first[:, None] + np.array([0, -1, 1, 2]), 0, n_in - 1)
    return index, weight, np.ones(index.shape, dtype=bool)


def _bicubic(image: np.ndarray, h: int, w: int) -> np.ndarray:
    """torch's CPU ``interpolate(mode="bicubic", align_corners=False)`` of an (H, W, C) uint8 array in float32,
    rounded to uint8: columns (torch's inner sum) then rows, a band of output rows at a time."""
    height, width, c = image.shape
    index, weight, fused = _cubic_taps(height, h)
    cols = _cubic_taps(width, w)
    out = np.empty((h, w, c), dtype=np.uint8)
    step = _band_rows(8 * c * w, index.shape[1])
    for start in range(0, h, step):
        band = slice(start, min(h, start + step))
        first, last = int(index[band].min()), int(index[band].max())
        part = _weighted_sum(image[first:last + 1], 1, *cols)
        out[band] = _to_uint8(_weighted_sum(part, 0, index[band] - first, weight[band], fused[band]))
    return out


def resize_uint8(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an (H, W, 3) uint8 image to ``size`` by ``geometry.resize_method``, exactly as
    ``device.resize_uint8`` does on the CPU."""
    height, width = image.shape[:2]
    method, factors = resize_method(height, width, *size)
    if method == "same":
        return image
    if method == "whole":
        return _area_whole_factor(image, factors)
    return _area_shrink(image, *size) if method == "area" else _bicubic(image, *size)


def pad_edge(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Pad an (h, w, ...) array at the bottom and right to ``size`` by repeating the last row/column."""
    h, w = image.shape[:2]
    if (h, w) == tuple(size):
        return image
    return np.pad(image, [(0, size[0] - h), (0, size[1] - w)] + [(0, 0)] * (image.ndim - 2), mode="edge")


def prepare(image: np.ndarray, resolution: int = RESOLUTION) -> np.ndarray:
    """Turn an (H, W, 3) uint8 image into the padded network input, a C-contiguous (3, H_pad, W_pad) uint8
    array equal to ``device.prepare`` of the same pixels."""
    height, width = image.shape[:2]
    check_shape(height, width, resolution)
    resized = resize_uint8(image, processed_size(height, width, resolution))
    return np.ascontiguousarray(pad_edge(resized, padded_size(height, width, resolution)).transpose(2, 0, 1))


def resize_classes(classes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bring an (h, w) class map to ``size`` by centre-aligned nearest neighbour (``device.resize_classes``)."""
    h, w = classes.shape[-2:]
    if (h, w) == tuple(size):
        return classes
    return np.take(np.take(classes, nearest_index(h, size[0]), axis=-2), nearest_index(w, size[1]), axis=-1)


def _linear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices and float32 weights, each (n_out, 2), of torch's bilinear without antialiasing
    (``compute_source_index_and_lambda``: coordinates below 0 clamped to 0), in the order its unrolled kernel
    sums them (the upper neighbour's product, the lower one's fused in)."""
    first, lam = _floor_and_lambda(np.maximum(_source_index(n_in, n_out), _F32(0)), n_in)
    index = np.stack([first + (first < n_in - 1), first], axis=1)
    return index, np.stack([lam, 1 - lam], axis=1), np.ones(index.shape, dtype=bool)


def _antialias_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices and float32 weights, each (n_out, taps), of torch's antialiased bilinear (a triangle widened by
    the shrink factor, normalised) in the float32 and float64 steps of ``_compute_indices_min_size_weights_aa``,
    taps past an output's span weighing 0; and which taps it fuses: its loop adds rounded products
    ``_VECTOR_TAPS`` at a time after the first tap, then fuses the ones left over."""
    scale = _F32(n_in) / _F32(n_out)
    support = max(scale, _F32(1))
    taps = math.ceil(support) * 2 + 1
    center = (float(scale) * (np.arange(n_out, dtype=np.float64) + 0.5)).astype(_F32)
    invscale = float(_F32(1.0 / float(scale))) if scale >= 1 else 1.0
    lo = np.maximum(np.trunc((center - support).astype(np.float64) + 0.5).astype(np.int64), 0)
    hi = np.minimum(np.trunc((center + support).astype(np.float64) + 0.5).astype(np.int64), n_in)
    span = np.clip(hi - lo, 0, taps)
    index = lo[:, None] + np.arange(taps)
    x = np.abs((((index.astype(_F32) - center[:, None]).astype(np.float64) + 0.5) * invscale).astype(_F32))
    weight = np.where((x < 1) & (np.arange(taps) < span[:, None]), 1 - x, _F32(0))
    total = np.zeros(n_out, dtype=_F32)
    for t in range(taps):
        total += weight[:, t]
    weight = np.divide(weight, total[:, None], out=weight, where=total[:, None] != 0)
    fused = np.arange(taps) > (span[:, None] - 1) // _VECTOR_TAPS * _VECTOR_TAPS
    return np.minimum(index, n_in - 1), weight, fused


def _small_bilinear(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """torch's one-pass bilinear for small outputs: the four corners weighted by products of the row and column
    weights, summed as its unrolled kernel (corner (lower row, upper column)'s product, then (lower, lower),
    (upper, lower), (upper, upper) fused in)."""
    (rows, wr, _), (cols, wc, _) = _linear_taps(mask.shape[0], size[0]), _linear_taps(mask.shape[1], size[1])
    corners = [(np.take(np.take(mask, rows[:, r], axis=0), cols[:, c], axis=1), wr[:, r, None] * wc[None, :, c])
               for r, c in ((1, 0), (1, 1), (0, 1), (0, 0))]  # column 0 of the taps is the upper neighbour
    out = corners[0][0] * corners[0][1]
    for corner, w in corners[1:]:
        out = _fma(corner, w, out)
    return out


def _mask_bands(mask: np.ndarray, size: tuple[int, int]) -> Iterator[tuple[slice, np.ndarray]]:
    """Yield (rows, values): ``resize_mask`` of an (h, w) float32 mask a band of output rows at a time, each
    band a fresh float32 array computed exactly as the whole would be."""
    h, w = mask.shape
    if size[0] >= h and size[0] + size[1] <= _SMALL_BILINEAR and (h, w) != tuple(size):
        yield slice(0, size[0]), _small_bilinear(mask, size)
        return
    make_taps = _antialias_taps if size[0] < h else _linear_taps
    rows = make_taps(h, size[0]) if size[0] != h else None
    cols = make_taps(w, size[1]) if size[1] != w else None
    step = _band_rows(8 * size[1], 2 if rows is None else rows[0].shape[1])
    for start in range(0, size[0], step):
        band = slice(start, min(size[0], start + step))
        if rows is None:
            part = mask[band]
        else:
            index, weight, fused = (array[band] for array in rows)
            first, last = int(index.min()), int(index.max())
            part = mask[first:last + 1]
        # torch resamples the columns first (its inner sum, or its horizontal pass), then the rows.
        if cols is not None:
            part = _weighted_sum(part, 1, *cols)
        if rows is not None:
            part = _weighted_sum(part, 0, index - first, weight, fused)
        yield band, part if rows is not None or cols is not None else part.astype(_F32)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bring an (h, w) float32 mask to ``size`` exactly as ``device.resize_mask`` on the CPU: bilinear with
    pixel centres aligned, antialiased when the height shrinks."""
    if mask.shape == tuple(size):
        return mask
    out = np.empty(size, dtype=_F32)
    for band, values in _mask_bands(mask, size):
        out[band] = values
    return out


def mask_levels(mask: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, float]:
    """The (h, w) float32 mask in [0, 1] at ``size`` (``resize_mask``) as uint8 levels, ``m * 255`` clamped and
    truncated, and the mean of the resized mask; in bands, never a float copy of the whole output."""
    levels = np.empty(size, dtype=np.uint8)
    total = 0.0
    for band, values in _mask_bands(mask, size):
        total += float(values.sum(dtype=np.float64))
        levels[band] = np.clip(np.multiply(values, _F32(255), out=values), 0, 255, out=values).astype(np.uint8)
    return levels, total / (size[0] * size[1])
