"""``--runtime reference`` feeds the networks exactly what the original feeds them: OpenCV's own resize.

The expected inputs are built here the way the original (comfyui_controlnet_aux ``HWC3`` and
``resize_image_with_pad``) builds them, with ``cv2`` directly, never through the code under test.
"""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from animeface_seg.engine.inputs import as_rgb
from animeface_seg.engine.palette import colorize
from conftest import make_image, read_gray, read_rgb

#: The test extra installs OpenCV; without it only the refusal is tested.
needs_cv2 = pytest.mark.skipif(importlib.util.find_spec("cv2") is None, reason="cv2 is not installed")


def _original_hwc3(image: np.ndarray) -> np.ndarray:
    """The original's ``HWC3``: gray repeated to three channels, alpha over white in float32, truncated."""
    if image.ndim == 2:
        return np.stack([image] * 3, axis=2)
    if image.shape[2] == 4:
        color = image[..., :3].astype(np.float32)
        alpha = image[..., 3:4].astype(np.float32) / 255.0
        return (color * alpha + 255.0 * (1.0 - alpha)).clip(0, 255).astype(np.uint8)
    return image


def _original_input(image: np.ndarray, resolution: int = 512) -> tuple[np.ndarray, tuple[int, int]]:
    """The original's padded network input (H_pad, W_pad, 3) and its size before padding:
    ``resize_image_with_pad`` with INTER_CUBIC."""
    import cv2

    image = _original_hwc3(image)
    height, width = image.shape[:2]
    k = float(resolution) / float(min(height, width))
    h, w = int(np.round(float(height) * k)), int(np.round(float(width) * k))
    resized = cv2.resize(image, (w, h), interpolation=cv2.INTER_CUBIC if k > 1 else cv2.INTER_AREA)
    pad_h, pad_w = int(np.ceil(h / 64.0) * 64 - h), int(np.ceil(w / 64.0) * 64 - w)
    return np.pad(resized, [[0, pad_h], [0, pad_w], [0, 0]], mode="edge"), (h, w)


def _picture(height: int, width: int, channels: int, seed: int) -> np.ndarray:
    """Gradients and edges under seeded noise: every resize's rounding shows somewhere."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 // max(width - 1, 1), yy * 255 // max(height - 1, 1), (xx ^ yy) & 255], axis=-1)
    noisy = np.clip(base + rng.integers(-40, 41, base.shape), 0, 255).astype(np.uint8)
    if channels == 1:
        return noisy[..., 1]
    if channels == 4:
        alpha = np.clip((xx * 7 + yy * 3) % 300, 0, 255).astype(np.uint8)
        return np.concatenate([noisy, alpha[..., None]], axis=2)
    return noisy


def _network_input(segmentor, image: np.ndarray) -> np.ndarray:
    """What the reference runtime hands the networks for ``image``, as (H_pad, W_pad, 3)."""
    return segmentor.prepare(as_rgb(image)).pixels.permute(1, 2, 0).cpu().numpy()


#: (height, width, channels): enlarge and shrink, square and not, whole and fractional factors,
#: the size itself, gray and RGBA.
SIZES = [
    (64, 64, 3), (100, 100, 3), (256, 256, 3), (200, 300, 3), (37, 100, 3), (257, 401, 3), (500, 600, 3),
    (511, 700, 3), (512, 700, 3), (1024, 1024, 3), (1536, 1536, 3), (1536, 1024, 3), (2048, 1024, 3),
    (1000, 1000, 3), (700, 513, 3), (1023, 2047, 3), (900, 1600, 3), (1656, 1000, 3), (768, 1024, 3),
    (600, 800, 1), (200, 300, 1), (600, 500, 4), (900, 700, 4), (129, 1031, 4),
]


@needs_cv2
@pytest.mark.parametrize("height, width, channels", SIZES, ids=[f"{h}x{w}x{c}" for h, w, c in SIZES])
def test_reference_network_input_is_opencvs_resize_bit_for_bit(runtime_segmentor, height, width, channels):
    segmentor = runtime_segmentor("reference")
    image = _picture(height, width, channels, seed=height * 7 + width)
    ours, theirs = _network_input(segmentor, image), _original_input(image)[0]
    assert ours.shape == theirs.shape
    assert np.array_equal(ours, theirs), f"{int((ours != theirs).sum())} values differ"


@needs_cv2
def test_reference_network_input_on_many_random_sizes(runtime_segmentor):
    segmentor = runtime_segmentor("reference")
    rng = np.random.default_rng(23)
    for _ in range(30):
        height, width = (int(n) for n in rng.integers(24, 1400, 2))
        image = _picture(height, width, 3, seed=height + width)
        ours, theirs = _network_input(segmentor, image), _original_input(image)[0]
        assert np.array_equal(ours, theirs), (height, width, int((ours != theirs).sum()))


@needs_cv2
def test_the_command_runs_the_networks_on_opencvs_input(run_cli, runtime_segmentor, tmp_path):
    """Through the command: map and mask are the networks' on the original's input, not on a resize
    within a level of it (the noise makes the two differ on hundreds of values)."""
    image = _picture(257, 401, 3, seed=5)
    (tmp_path / "in").mkdir()
    Image.fromarray(image).save(tmp_path / "in" / "a.png")
    proc = run_cli(str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--size", "processed", "--device", "cpu",
                   "--runtime", "reference")
    assert proc.returncode == 0 and "device: cpu, fp32, reference;" in proc.stderr, proc.stderr
    segmentor = runtime_segmentor("reference")
    padded, (h, w) = _original_input(image)
    pixels = torch.from_numpy(np.ascontiguousarray(padded.transpose(2, 0, 1)))[None]
    with torch.inference_mode():
        classes, mask = segmentor.forward(pixels)
    expected_mask = (mask[0, :h, :w] * 255.0).clamp_(0, 255).to(torch.uint8).numpy()
    assert np.array_equal(read_rgb(tmp_path / "out" / "a.png"), colorize(classes[0, :h, :w].numpy()))
    assert np.array_equal(read_gray(tmp_path / "out" / "a_mask.png"), expected_mask)


def test_reference_without_opencv_is_refused_before_anything_loads(run_cli, tmp_path, monkeypatch):
    from animeface_seg import Segmentor
    from animeface_seg.engine.runtimes.select import RuntimeChoiceError, choose

    monkeypatch.setitem(sys.modules, "cv2", None)  # an install without the extra
    nothing = tmp_path / "no-weights"
    nothing.mkdir()
    fix = "pip install 'animeface-seg[reference]'"
    with pytest.raises(RuntimeChoiceError, match=r"OpenCV is not installed: pip install 'animeface-seg\[reference\]'"):
        Segmentor.from_pretrained(weights_dir=nothing, device="cpu", runtime="reference")  # before seeking weights
    make_image(tmp_path / "in" / "a.png", (64, 96))
    proc = run_cli(str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--device", "cpu", "--runtime", "reference",
                   "--weights-dir", str(nothing), weights=False)
    assert proc.returncode == 2 and fix in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()
    assert choose("auto", "cpu", "fp32") == "onnxruntime"  # the default install needs no OpenCV
