"""Decoding image files into 8-bit RGB arrays, the way the reference preprocessor sees them.

EXIF orientation is applied, grayscale/palette/CMYK/16-bit images become RGB, and an alpha
channel is composited over white with the reference's float32 formula.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from animeface_seg.engine.errors import EngineError, ImageDecodeError, UnrecognisedImageError

#: Default limit on width x height, against decompression bombs (about a 16k x 16k image).
#: Checked on every open, from the header, before any pixel is decoded. Pillow's own global
#: limit (``PIL.Image.MAX_IMAGE_PIXELS``) still applies on top: this module never changes it.
DEFAULT_MAX_PIXELS = 268_435_456


def composite_over_white(rgba: np.ndarray) -> np.ndarray:
    """Composite an HxWx4 uint8 image over white: ``rgb*a + 255*(1-a)``, truncated to uint8."""
    color = rgba[..., :3].astype(np.float32)
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    return (color * alpha + 255.0 * (1.0 - alpha)).clip(0, 255).astype(np.uint8)


def _high_bit_depth_to_8bit(image: Image.Image) -> Image.Image:
    """Scale 16/32-bit integer or float grayscale to 8 bits (Pillow's convert would clip)."""
    values = np.asarray(image)
    if image.mode == "F":
        scaled = values * 255.0 if float(np.nanmax(values, initial=0.0)) <= 1.0 else values
    else:
        scaled = values.astype(np.float64) / 257.0
    return Image.fromarray(np.nan_to_num(scaled).clip(0, 255).round().astype(np.uint8), "L")


def has_alpha(image: Image.Image) -> bool:
    """Whether an opened image has transparency to composite over white (an alpha band or a transparent colour)."""
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode in ("P", "L", "RGB") and "transparency" in image.info
    )


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """Convert an opened PIL image (first frame) to an HxWx3 uint8 RGB array."""
    image = ImageOps.exif_transpose(image) or image
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        image = _high_bit_depth_to_8bit(image)
    if has_alpha(image):
        return composite_over_white(np.asarray(image.convert("RGBA")))
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.array(image)  # a writable copy, so torch can share it without warnings


def load_rgb(source: str | Path | BinaryIO, max_pixels: int | None = DEFAULT_MAX_PIXELS,
             before_load: Callable[[Image.Image], None] | None = None) -> np.ndarray:
    """Open an image file and return it as an HxWx3 uint8 RGB array.

    ``before_load`` sees the opened image (header read, no pixel decoded yet) and may refuse it
    by raising an ``EngineError`` (the memory budget does). Raises ``ImageDecodeError`` with a
    one-line reason for empty, truncated, corrupt, non-image or oversized files. A PNG whose text
    chunks (an embedded workflow, say) exceed Pillow's limits is read without them: they say
    nothing about the pixels.
    """
    try:
        return _load_rgb(source, max_pixels, before_load)
    except TextChunksTooLarge:
        return _load_rgb(io.BytesIO(_without_text_chunks(_read_all(source))), max_pixels, before_load)


class TextChunksTooLarge(ImageDecodeError):
    """Pillow refused a PNG's text chunks (over ``MAX_TEXT_CHUNK`` / ``MAX_TEXT_MEMORY``), not its pixels."""


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TEXT_CHUNKS = {b"tEXt", b"zTXt", b"iTXt"}


def _read_all(source: str | Path | BinaryIO) -> bytes:
    if isinstance(source, (str, Path)):
        return Path(source).read_bytes()
    source.seek(0)
    return source.read()


def _without_text_chunks(data: bytes) -> bytes:
    """A PNG's bytes with every text chunk left out (other chunks, pixels included, as they are)."""
    if not data.startswith(_PNG_SIGNATURE):
        return data
    kept = [_PNG_SIGNATURE]
    at = len(_PNG_SIGNATURE)
    while at + 8 <= len(data):
        end = at + 12 + int.from_bytes(data[at:at + 4], "big")
        if data[at + 4:at + 8] not in _TEXT_CHUNKS:
            kept.append(data[at:end])
        at = end
    return b"".join(kept)


def _load_rgb(source: str | Path | BinaryIO, max_pixels: int | None,
              before_load: Callable[[Image.Image], None] | None) -> np.ndarray:
    with decode_errors(source):
        with Image.open(source) as image:
            check_pixels(*image.size, max_pixels)
            if before_load is not None:
                before_load(image)
            image.seek(0)
            image.load()
            return to_rgb_array(image)


@contextmanager
def decode_errors(source: str | Path | BinaryIO, what: str = "image") -> Iterator[None]:
    """Turn what Pillow (or PyAV) and the file system raise while opening and decoding ``source`` into
    ``ImageDecodeError``s with a one-line reason; ``EngineError``s pass through unchanged. ``what``
    names the kind of file in the reason (``cannot decode video: ...``)."""
    try:
        yield
    except EngineError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"refused as a decompression bomb by Pillow's own limit: {exc}",
                               setting="max_pixels") from None
    except UnidentifiedImageError:
        if isinstance(source, (str, Path)) and Path(source).stat().st_size == 0:
            raise ImageDecodeError("file is empty (0 bytes)") from None
        raise UnrecognisedImageError("not a recognised image file") from None
    except FileNotFoundError:
        raise ImageDecodeError("file not found") from None
    except PermissionError:
        raise ImageDecodeError("permission denied") from None
    except IsADirectoryError:
        raise ImageDecodeError("is a directory") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, ValueError) and ("MAX_TEXT" in reason or "text chunks" in reason):
            raise TextChunksTooLarge(f"cannot decode {what}: {reason}") from None
        raise ImageDecodeError(f"cannot decode {what}: {reason}") from None


def check_pixels(width: int, height: int, max_pixels: int | None) -> None:
    """Raise ``ImageDecodeError`` when ``width`` x ``height`` is over ``max_pixels`` (``None``: no limit)."""
    if max_pixels is not None and width * height > max_pixels:
        raise ImageDecodeError(
            f"image is {width}x{height} = {width * height:,} pixels, over the limit of {max_pixels:,}",
            setting="max_pixels",
        )
