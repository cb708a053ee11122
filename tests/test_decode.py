"""Decoding: every file kind becomes the 8-bit RGB the reference sees, or fails with a reason."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from animeface_seg.engine.decode import ImageDecodeError, composite_over_white, load_rgb


def _save(image: Image.Image, path, **kwargs):
    image.save(path, **kwargs)
    return path


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = (255, 0, 0)  # left half red
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = _save(image, tmp_path / "rot.jpg", exif=exif, quality=95)
    out = load_rgb(path)
    assert out.shape == (40, 20, 3)
    assert out[5, 10, 0] > 200 and out[35, 10, 0] < 60  # red half now on top


def test_grayscale_palette_and_16bit(tmp_path):
    gray = _save(Image.fromarray(np.full((8, 8), 77, np.uint8), "L"), tmp_path / "g.png")
    assert (load_rgb(gray) == 77).all() and load_rgb(gray).shape == (8, 8, 3)
    pal = Image.fromarray(np.full((8, 8, 3), (10, 200, 30), np.uint8)).convert("P", palette=Image.Palette.ADAPTIVE)
    assert (load_rgb(_save(pal, tmp_path / "p.png"))[0, 0] == (10, 200, 30)).all()
    sixteen = Image.fromarray(np.full((8, 8), 65535 // 2, np.uint16))
    out = load_rgb(_save(sixteen, tmp_path / "s.png"))
    assert out.dtype == np.uint8 and abs(int(out[0, 0, 0]) - 127) <= 1


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red in CMYK
    out = load_rgb(_save(cmyk, tmp_path / "c.jpg"))
    assert out.shape == (8, 8, 3) and out[4, 4, 0] > 200 and out[4, 4, 1] < 60


def test_alpha_is_composited_over_white_like_the_reference(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = (100, 50, 0)
    rgba[..., 3] = [[0, 64, 128, 255]] * 4
    out = load_rgb(_save(Image.fromarray(rgba, "RGBA"), tmp_path / "a.png"))
    color = rgba[..., :3].astype(np.float32)
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    expected = (color * alpha + 255.0 * (1.0 - alpha)).clip(0, 255).astype(np.uint8)
    assert (out == expected).all() and (composite_over_white(rgba) == expected).all()
    assert tuple(out[0, 0]) == (255, 255, 255) and tuple(out[0, 3]) == (100, 50, 0)


def test_gray_with_alpha_and_palette_transparency(tmp_path):
    gray = np.full((4, 4), 40, np.uint8)
    alpha = np.array([[0, 64, 128, 255]] * 4, np.uint8)
    la = load_rgb(_save(Image.fromarray(np.stack([gray, alpha], -1), "LA"), tmp_path / "la.png"))
    # 40 * a + 255 * (1 - a) in float32, truncated: white where transparent, the gray where opaque.
    assert la[0].tolist() == [[255] * 3, [201] * 3, [147] * 3, [40] * 3]

    # A palette image whose index 1 is fully transparent (tRNS), the others opaque: that index becomes white.
    indices = np.array([[0, 1, 2, 1]] * 4, np.uint8)
    palette = Image.fromarray(indices, "P")
    palette.putpalette([200, 10, 10, 0, 0, 0, 10, 200, 10] + [0] * (256 * 3 - 9))
    path = _save(palette, tmp_path / "p.png", transparency=1)
    with Image.open(path) as reread:
        assert reread.mode == "P" and reread.info.get("transparency") == 1  # the case really is on disk
    assert load_rgb(path)[0].tolist() == [[200, 10, 10], [255, 255, 255], [10, 200, 10], [255, 255, 255]]

    # A gray image with a transparent gray level (tRNS on L): only that level becomes white.
    path = _save(Image.fromarray(np.array([[0, 9, 0, 9]] * 4, np.uint8), "L"), tmp_path / "l.png", transparency=9)
    assert load_rgb(path)[0].tolist() == [[0, 0, 0], [255, 255, 255], [0, 0, 0], [255, 255, 255]]


def test_gif_first_frame(tmp_path):
    frames = [Image.new("RGB", (6, 6), c) for c in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    out = load_rgb(path)
    assert out[0, 0, 0] > 200 and out[0, 0, 2] < 60


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "empty"),
        (b"this is not an image at all", "not a recognised image"),
    ],
)
def test_unreadable_files_give_reasons(tmp_path, content, reason):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ImageDecodeError, match=reason):
        load_rgb(path)


def test_truncated_file_fails(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(buffer, "PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageDecodeError, match="cannot decode"):
        load_rgb(path)


def test_pixel_limit(tmp_path):
    path = _save(Image.new("RGB", (100, 50)), tmp_path / "big.png")
    with pytest.raises(ImageDecodeError, match="100x50 = 5,000 pixels, over the limit of 4,999"):
        load_rgb(path, max_pixels=4999)
    assert load_rgb(path, max_pixels=5000).shape == (50, 100, 3)


def test_extremely_elongated_image_is_refused_before_allocation():
    import torch

    from animeface_seg.engine.errors import ImageShapeError
    from animeface_seg.engine.geometry.device import prepare

    with pytest.raises(ImageShapeError, match="with its short side at 512 it would be processed at"):
        prepare(torch.zeros(3, 4, 5000, dtype=torch.uint8))
    assert prepare(torch.zeros(3, 40, 500, dtype=torch.uint8)).shape == (3, 512, 6400)


def test_api_arrays_follow_the_file_rules():
    from animeface_seg.engine.inputs import as_rgb as _as_rgb_array

    gray = np.full((3, 5), 40, np.uint8)
    assert _as_rgb_array(gray).shape == (3, 5, 3) and (_as_rgb_array(gray) == 40).all()
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 3] = [[0, 128], [255, 64]]
    assert (_as_rgb_array(rgba) == composite_over_white(rgba)).all()
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    assert (_as_rgb_array(rgb) == rgb).all()
    for bad in (np.zeros((2, 2), np.float32), np.zeros((2, 2, 1), np.uint8)):
        with pytest.raises(ValueError, match="arrays must be uint8"):
            _as_rgb_array(bad)
