"""The resize rules: OpenCV's exact area average for whole-number factors, and one pixel grid
for the map, the mask, the cutout and the overlay at the original size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from animeface_seg.batch.writers import render
from animeface_seg.engine import geometry
from animeface_seg.engine.geometry import device
from animeface_seg.engine.segmentor import Segmentation


def _opencv_area_reference(image: np.ndarray, factor: int) -> np.ndarray:
    """Block means by integer arithmetic alone: sum / area rounded half to even (exact for the
    float32 product OpenCV forms when area is 36: every tie lands exactly on .5)."""
    h, w, c = image.shape[0] // factor, image.shape[1] // factor, image.shape[2]
    sums = image.reshape(h, factor, w, factor, c).astype(np.int64).sum(axis=(1, 3))
    area = factor * factor
    quotient, remainder = np.divmod(sums, area)
    up = (2 * remainder > area) | ((2 * remainder == area) & (quotient % 2 == 1))
    return (quotient + up).astype(np.uint8)


def test_whole_factor_shrink_matches_opencv_on_exact_ties():
    rng = np.random.default_rng(0)
    blocks = rng.integers(40, 216, size=(512, 6, 512, 6, 3))
    sums = blocks.sum(axis=(1, 3))
    tie = rng.random((512, 512, 3)) < 0.5  # half the blocks are pushed onto an exact .5 tie
    blocks[:, 0, :, 0, :] += np.where(tie, (18 - sums) % 36, 0)
    image = blocks.reshape(3072, 3072, 3).astype(np.uint8)
    expected = _opencv_area_reference(image, 6)
    sums = image.reshape(512, 6, 512, 6, 3).astype(np.int64).sum(axis=(1, 3))
    ties = sums % 36 == 18
    assert ties.mean() > 0.45 and ((sums // 36)[ties] % 2 == 0).any() and ((sums // 36)[ties] % 2 == 1).any()

    size = geometry.processed_size(3072, 3072)
    assert size == (512, 512) and geometry.whole_factors(3072, 3072, *size) == (6, 6)
    ours = device.resize_uint8(torch.from_numpy(image).permute(2, 0, 1), size).permute(1, 2, 0).numpy()
    assert np.array_equal(ours, expected)


def test_two_by_two_blocks_round_ties_half_up():
    # OpenCV's 2x2 path is (sum + 2) >> 2: sums 2, 6, 10 -> 1, 2, 3 (half to even would give 0, 2, 2).
    image = np.zeros((4, 6, 3), dtype=np.uint8)
    image[0:2, 0:2, :] = np.array([[1, 1], [0, 0]])[:, :, None]
    image[0:2, 2:4, :] = np.array([[1, 2], [1, 2]])[:, :, None]
    image[0:2, 4:6, :] = np.array([[3, 2], [2, 3]])[:, :, None]
    ours = device.resize_uint8(torch.from_numpy(image).permute(2, 0, 1), (2, 3)).permute(1, 2, 0).numpy()
    assert ours[0, :, 0].tolist() == [1, 2, 3]
    assert (ours[1] == 0).all()


@pytest.mark.parametrize(("source", "target", "factors"), [
    ((1024, 1536), (512, 768), (2, 2)), ((3072, 2048), (768, 512), (4, 4)),
    ((1000, 1000), (512, 512), None), ((600, 800), (512, 683), None), ((300, 200), (768, 512), None),
])
def test_whole_factors_only_for_exact_divisions(source, target, factors):
    assert geometry.processed_size(*source) == target
    assert geometry.whole_factors(*source, *target) == factors


def _map_and_mask(processed: tuple[int, int], box: tuple[int, int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """A sharp rectangle as a class map (class 1 inside) and as a float mask (1 inside)."""
    top, bottom, left, right = box
    classes = torch.zeros(processed, dtype=torch.uint8)
    classes[top:bottom, left:right] = 1
    return classes, classes.float()


def _first_inside(line: np.ndarray) -> int:
    return int(np.argmax(line))


@pytest.mark.parametrize(("processed", "original"), [
    ((512, 683), (200, 267)),   # a small picture: results shrink back to it
    ((512, 683), (700, 934)),   # a large picture: results enlarge
    ((512, 512), (1000, 1000)),
    ((683, 512), (1111, 833)),
])
def test_map_and_mask_share_one_pixel_grid(processed, original):
    box = (101, 377, 57, 411)
    classes, mask = _map_and_mask(processed, box)
    big_map = device.resize_classes(classes, original).numpy()
    big_mask = device.resize_mask(mask, original).numpy()
    for axis, (start, _) in ((0, box[0:2]), (1, box[2:4])):
        n_in, n_out = processed[axis], original[axis]
        edge = start * n_out / n_in  # where the rectangle's edge lies, in original pixels
        line_map = big_map[:, big_map.shape[1] // 2] if axis == 0 else big_map[big_map.shape[0] // 2]
        line_mask = big_mask[:, big_mask.shape[1] // 2] if axis == 0 else big_mask[big_mask.shape[0] // 2]
        map_edge = _first_inside(line_map == 1)
        mask_edge = _first_inside(line_mask >= 0.5)
        # The mask crosses 50% between these two pixel centres, so its edge lies in [mask_edge - 0.5, mask_edge + 0.5].
        assert line_mask[mask_edge - 1] < 0.5 <= line_mask[mask_edge]
        assert abs(map_edge - edge) <= 0.5, (axis, map_edge, edge)
        assert abs((mask_edge) - edge) <= 0.5, (axis, mask_edge, edge)
        assert map_edge == mask_edge


def test_nearest_samples_pixel_centres():
    assert geometry.nearest_index(4, 10).tolist() == [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]
    assert geometry.nearest_index(10, 4).tolist() == [1, 3, 6, 8]
    assert geometry.nearest_index(512, 512).tolist() == list(range(512))


def test_cutout_and_overlay_use_the_same_grid():
    processed, original = (512, 683), (700, 934)
    classes, mask = _map_and_mask(processed, (101, 377, 57, 411))
    colors = np.where(classes.numpy()[..., None] == 1, 255, 0).astype(np.uint8).repeat(3, axis=-1)
    result = Segmentation(classes.numpy(), colors, (mask.numpy() * 255).astype(np.uint8), original, processed,
                          (0.5,) * 7, 0.5)
    source = np.zeros((*original, 3), dtype=np.uint8)
    alpha = np.array(render(result, "cutout", source))[..., 3]
    expected = device.resize_mask(mask, original).mul(255).round().numpy()
    assert np.abs(alpha.astype(int) - expected).max() <= 1
    big_map = device.resize_classes(classes, original).numpy()
    assert ((alpha >= 128) == (big_map == 1)).mean() > 0.999
    source = np.full((*original, 3), 200, dtype=np.uint8)
    overlay = np.array(render(result, "overlay", source))
    assert overlay.shape == (*processed, 3) and (overlay[classes.numpy() == 0] == 100).all()


def test_segmentor_results_at_the_original_size_are_centre_aligned(segmentor):
    from animeface_seg import Segmentor

    original = Segmentor(segmentor.unet, segmentor.isnet, device="cpu", output_size="original", runtime="torch")
    rng = np.random.default_rng(3)
    image = np.full((150, 200, 3), 240, dtype=np.uint8)
    image[30:120, 50:150] = rng.integers(0, 80, size=(90, 100, 3))  # a sharp-edged dark rectangle
    small, big = segmentor([image])[0], original([image])[0]
    h, w = small.processed_size
    rows = (2 * np.arange(150) + 1) * h // 300
    cols = (2 * np.arange(200) + 1) * w // 400
    assert np.array_equal(big.classes, small.classes[rows][:, cols])
    # Computed without the code under test: Pillow's bilinear resize of a float image is centre-aligned and,
    # when shrinking, antialiased (a triangle filter widened by the factor), which is what the README promises.
    # The mask at the original size comes from the float mask, the processed one from its uint8 copy.
    expected = np.asarray(Image.fromarray(small.mask.astype(np.float32), "F").resize((200, 150), Image.BILINEAR))
    # (Measured on this picture: corner-aligned bilinear is off by up to 50 levels, a grid shifted by half an
    # output pixel by 34, bilinear without the antialiasing by 24; the engine's by 0.0002.)
    assert np.abs(big.mask.astype(float) - expected).max() <= 2.0
