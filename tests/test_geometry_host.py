"""``geometry.host`` (numpy) against ``geometry.device`` (torch on the CPU): the same rule, the same numbers.

Area shrinks, class maps and padding are exact everywhere. Bicubic and bilinear follow the fused multiply-adds
of torch's x86-64 AVX2/AVX-512 kernels, so they are compared bit for bit there and within a bound elsewhere.
"""

from __future__ import annotations

import platform
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
import torch

from animeface_seg.engine import geometry
from animeface_seg.engine.errors import ImageShapeError
from animeface_seg.engine.geometry import device, host

#: Where torch's kernels are the ones ``geometry.host`` reproduces (its Linux x86-64 builds with AVX2 or later).
EXACT = (sys.platform == "linux" and platform.machine() == "x86_64"
         and torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """torch's results do not depend on its thread count; one thread keeps the comparison quick on small machines."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def _device_resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return device.resize_uint8(torch.from_numpy(image).permute(2, 0, 1), size).permute(1, 2, 0).numpy()


def _device_prepare(image: np.ndarray) -> np.ndarray:
    return device.prepare(torch.from_numpy(image).permute(2, 0, 1)).numpy()


def _assert_same_pixels(ours: np.ndarray, theirs: np.ndarray, exact: bool) -> None:
    assert ours.dtype == theirs.dtype == np.uint8 and ours.shape == theirs.shape
    if exact:
        assert np.array_equal(ours, theirs), f"{np.count_nonzero(ours != theirs)} values differ"
    else:  # torch's baseline or non-x86 builds round the products the x86 ones fuse
        difference = np.abs(ours.astype(np.int16) - theirs.astype(np.int16))
        assert difference.max() <= 1 and np.count_nonzero(difference) <= 1e-3 * difference.size


def test_importing_host_geometry_leaves_torch_unloaded():
    code = "import sys, animeface_seg.engine.geometry.host; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(("shape", "size", "factors"), [
    ((1024, 1536), (512, 768), (2, 2)),
    ((1536, 1536), (512, 512), (3, 3)),
    ((1024, 1536), (512, 512), (2, 3)),
    ((3072, 1536), (512, 256), (6, 6)),
])
def test_whole_factor_shrinks_are_exact(shape, size, factors):
    assert geometry.whole_factors(*shape, *size) == factors
    image = _image(*shape)
    ours = host.resize_uint8(image, size)
    assert np.array_equal(ours, _device_resize(image, size))
    # Every block's sum divided once: the mean of the first block, rounded as the rule says.
    block = image[:factors[0], :factors[1], 0].astype(np.int64).sum()
    area = factors[0] * factors[1]
    expected = (block + 2) >> 2 if factors == (2, 2) else int(np.round(np.float32(block) * (np.float32(1) / area)))
    assert ours[0, 0, 0] == expected


# (height, width) of the original: fractional area shrinks, then bicubic enlargements.
SHRINKS = [(600, 800), (720, 1280), (1000, 1000), (513, 600), (2000, 3000), (1001, 700)]
ENLARGES = [(200, 300), (100, 100), (700, 511), (900, 64), (37, 53)]


@pytest.mark.parametrize("shape", SHRINKS + ENLARGES)
def test_prepare_equals_the_device_path(shape):
    image = _image(*shape, seed=shape[0])
    ours = host.prepare(image)
    assert ours.shape == (3, *geometry.padded_size(*shape)) and ours.flags.c_contiguous
    _assert_same_pixels(ours, _device_prepare(image), exact=shape in SHRINKS or EXACT)
    h, w = geometry.processed_size(*shape)
    assert np.array_equal(ours[:, h:], np.repeat(ours[:, h - 1:h], ours.shape[1] - h, axis=1))
    assert np.array_equal(ours[:, :, w:], np.repeat(ours[:, :, w - 1:w], ours.shape[2] - w, axis=2))


@pytest.mark.parametrize(("shape", "size"), [
    ((300, 400), (350, 333)),   # taller, narrower: bicubic shrinks the columns
    ((400, 300), (400, 250)),   # same height: bicubic on the columns alone
    ((301, 203), (301, 203)),   # same size: returned as is
    ((64, 48), (1100, 90)),
])
def test_resize_to_any_size(shape, size):
    image = _image(*shape, seed=7)
    ours = host.resize_uint8(image, size)
    if size == shape:
        assert ours is image
    _assert_same_pixels(ours, _device_resize(image, size), exact=EXACT)


def test_bicubic_overshoot_is_clamped():
    image = np.zeros((20, 30, 3), dtype=np.uint8)
    image[:, 15:] = 255  # a hard edge: bicubic rings below 0 and above 255 on its two sides
    ours = host.resize_uint8(image, (60, 90))
    assert ours.min() == 0 and ours.max() == 255
    _assert_same_pixels(ours, _device_resize(image, (60, 90)), exact=EXACT)


def test_views_of_larger_images():
    image = _image(900, 1300, seed=3)[50:-50, 100:-3:2][..., ::-1]  # strided, reversed channels
    assert np.array_equal(host.prepare(image), _device_prepare(np.ascontiguousarray(image)))


def test_prepare_checks_the_shape_first():
    with pytest.raises(ImageShapeError):
        host.prepare(np.zeros((10, 100_000, 3), dtype=np.uint8))
    with pytest.raises(ImageShapeError):
        host.prepare(np.zeros((0, 10, 3), dtype=np.uint8))


@pytest.mark.parametrize("channels", [None, 1, 3])
def test_pad_edge_repeats_the_last_row_and_column(channels):
    shape = (5, 7) if channels is None else (5, 7, channels)
    image = np.arange(np.prod(shape), dtype=np.int32).reshape(shape)
    ours = host.pad_edge(image, (8, 11))
    chw = torch.from_numpy(image[..., None] if channels is None else image).permute(2, 0, 1)
    theirs = device.pad_edge(chw, (8, 11)).permute(1, 2, 0).numpy()
    assert np.array_equal(ours, theirs[..., 0] if channels is None else theirs)
    assert host.pad_edge(image, (5, 7)) is image


@pytest.mark.parametrize(("shape", "size"), [
    ((512, 683), (700, 934)), ((512, 683), (200, 267)), ((683, 512), (1111, 833)),
    ((512, 512), (1000, 1000)), ((512, 768), (512, 300)), ((768, 512), (100, 3000)),
])
@pytest.mark.parametrize("dtype", [np.uint8, np.int64])
def test_resize_classes_equals_the_device_path(shape, size, dtype):
    classes = np.random.default_rng(1).integers(0, 7, size=shape).astype(dtype)
    ours = host.resize_classes(classes, size)
    assert ours.dtype == dtype
    assert np.array_equal(ours, device.resize_classes(torch.from_numpy(classes), size).numpy())
    assert host.resize_classes(classes, shape) is classes


def _mask(shape: tuple[int, int], seed: int = 2) -> np.ndarray:
    """A network-like mask: smooth blobs, saturated to exactly 0 and 1 over large areas, soft in between."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((shape[0] // 32 + 2, shape[1] // 32 + 2))
    rows = np.linspace(0, coarse.shape[0] - 1.001, shape[0])
    cols = np.linspace(0, coarse.shape[1] - 1.001, shape[1])
    smooth = coarse[rows.astype(int)][:, cols.astype(int)] + 0.05 * rng.standard_normal(shape)
    return np.clip((smooth - 0.3) * 3, 0, 1).astype(np.float32)


MASK_SIZES = [
    ((512, 683), (700, 934)),     # enlarge
    ((683, 512), (1111, 833)),    # enlarge, tall
    ((512, 683), (200, 267)),     # shrink: antialiased
    ((683, 512), (300, 225)),     # shrink, tall
    ((512, 512), (300, 900)),     # rows shrink (antialiased both ways), columns enlarge
    ((512, 512), (900, 300)),     # rows enlarge, columns shrink (no antialiasing)
    ((512, 768), (512, 1000)),    # columns only
    ((2048, 512), (100, 40)),     # a strong shrink: many taps
    ((20, 30), (40, 50)),         # a small output: torch's one-pass kernel
    ((30, 20), (30, 60)),
]


@pytest.mark.parametrize(("shape", "size"), MASK_SIZES)
def test_resize_mask_equals_the_device_path(shape, size):
    mask = _mask(shape)
    ours = host.resize_mask(mask, size)
    theirs = device.resize_mask(torch.from_numpy(mask), size).numpy()
    assert ours.dtype == np.float32 and ours.shape == size
    if EXACT:
        assert np.array_equal(ours, theirs), f"max difference {np.abs(ours - theirs).max()}"
    else:
        assert np.abs(ours - theirs).max() <= 1e-4
    random = np.random.default_rng(5).random(shape, dtype=np.float32)  # no exact 0s and 1s
    difference = np.abs(host.resize_mask(random, size) - device.resize_mask(torch.from_numpy(random), size).numpy())
    assert difference.max() == 0 if EXACT else difference.max() <= 1e-4


@pytest.mark.parametrize(("shape", "size"), MASK_SIZES + [((512, 683), (512, 683))])
def test_mask_levels_equal_the_whole_array_path(shape, size):
    mask = _mask(shape, seed=3)
    levels, mean = host.mask_levels(mask, size)
    resized = host.resize_mask(mask, size)
    assert levels.dtype == np.uint8 and levels.shape == size
    assert np.array_equal(levels, (resized * np.float32(255)).clip(0, 255).astype(np.uint8))
    theirs = device.resize_mask(torch.from_numpy(mask), size)
    assert abs(mean - float(theirs.mean())) <= 1e-6
    if EXACT:
        assert np.array_equal(levels, (theirs * 255.0).clamp_(0, 255).to(torch.uint8).numpy())
    assert np.array_equal(mask, _mask(shape, seed=3))  # the input is left alone


def test_crops_of_padded_network_outputs():
    processed, original = (512, 683), (1000, 1334)
    padded = _mask((576, 704), seed=6)
    classes = np.random.default_rng(6).integers(0, 7, size=(576, 704)).astype(np.uint8)
    mask = geometry.crop(padded, processed)  # a view whose rows are not contiguous
    levels, mean = host.mask_levels(mask, original)
    theirs = device.resize_mask(geometry.crop(torch.from_numpy(padded), processed), original)
    assert abs(mean - float(theirs.mean())) <= 1e-6
    if EXACT:
        assert np.array_equal(levels, (theirs * 255.0).clamp_(0, 255).to(torch.uint8).numpy())
    ours = host.resize_classes(geometry.crop(classes, processed), original)
    assert np.array_equal(ours, device.resize_classes(geometry.crop(torch.from_numpy(classes), processed),
                                                      original).numpy())


def test_mask_levels_work_in_bands():
    mask = _mask((512, 683), seed=4)
    size = (4000, 5333)
    tracemalloc.start()
    try:
        levels, mean = host.mask_levels(mask, size)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    float_copy = 4 * size[0] * size[1]  # 85 MB, which the whole-array path would hold
    assert peak - levels.nbytes < 16 * 2**20 < float_copy
    rows = slice(1990, 2010)  # across a band boundary
    whole = host.resize_mask(mask, size)
    assert np.array_equal(levels[rows], (whole[rows] * np.float32(255)).clip(0, 255).astype(np.uint8))
    assert abs(mean - whole.mean(dtype=np.float64)) <= 1e-9


def test_fused_multiply_add_rounds_once():
    # x * w + c lies just below the float32 midpoint between 1 + 2**-23 and 1 + 2**-22; summed in float64 first it
    # lands on that midpoint, which rounds to even (1 + 2**-22): a fused multiply-add gives 1 + 2**-23.
    x = np.array([1 + 2.0**-23, -(1 + 2.0**-23), 1.0], dtype=np.float32)
    w = np.array([(1 - 2.0**-23) * 2.0**-24, (1 - 2.0**-23) * 2.0**-24, 2.0**-24], dtype=np.float32)
    c = np.array([1 + 2.0**-23, -(1 + 2.0**-23), 1 + 2.0**-23], dtype=np.float32)
    naive = (x.astype(np.float64) * w + c).astype(np.float32)
    assert naive[0] == np.float32(1 + 2.0**-22)
    # The last sum is exactly the midpoint: it rounds to even, fused or not.
    assert host._fma(x, w, c).tolist() == [1 + 2.0**-23, -(1 + 2.0**-23), 1 + 2.0**-22]
