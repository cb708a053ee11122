"""Small pictures of sources and outputs for the review page, kept in a hidden folder of OUT.

A thumbnail is named by a digest of the absolute path it shows, so any file name works and two
files never share one; it is made again only when the file is newer than it. A clip's thumbnail
shows its first frame (an animation's through Pillow, a video's through PyAV). Outputs never
start with ``.``, so ``OUT/.animeface-seg-review/`` can never meet one, and discovery skips it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from animeface_seg.batch.tempfiles import write_set
from animeface_seg.engine.decode import DEFAULT_MAX_PIXELS, to_rgb_array
from animeface_seg.engine.errors import ImageDecodeError
from animeface_seg.engine.frames import open_frames

#: The review page's own folder in OUT.
REVIEW_FOLDER = ".animeface-seg-review"
#: Longest side of a thumbnail, in pixels.
THUMB_SIZE = 160


def thumbnail(file: Path, out_dir: Path, *, exact_colours: bool = False,
              max_pixels: int = DEFAULT_MAX_PIXELS) -> str | None:
    """The thumbnail of ``file`` as a path relative to ``out_dir`` (made if missing or older than the file).

    ``exact_colours`` (colour maps): nearest-neighbour scaling and PNG, so every pixel keeps a
    palette colour; otherwise smooth scaling and JPEG. ``None`` when the file is missing,
    unreadable or over ``max_pixels``: the page then shows that there is no picture.
    """
    digest = hashlib.sha256(os.fsencode(os.path.abspath(file))).hexdigest()[:32]
    relative = f"{REVIEW_FOLDER}/thumbs/{digest[:2]}/{digest}.{'png' if exact_colours else 'jpg'}"
    target = out_dir / relative
    try:
        if target.stat().st_mtime_ns >= file.stat().st_mtime_ns:
            return relative
    except FileNotFoundError:
        pass
    except OSError:
        return None
    try:
        picture = _first_picture(file, max_pixels)
        if picture is None:
            return None
        picture.thumbnail((THUMB_SIZE, THUMB_SIZE), Image.Resampling.NEAREST if exact_colours
                          else Image.Resampling.BILINEAR)
        options = {"format": "PNG"} if exact_colours else {"format": "JPEG", "quality": 80}
        write_set({target: lambda stream: picture.save(stream, **options)})
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError, ImageDecodeError):
        return None
    return relative


def _first_picture(file: Path, max_pixels: int) -> Image.Image | None:
    """The first picture of ``file`` (a still, an animation's or a video's first frame); ``None`` over ``max_pixels``."""
    try:
        image = Image.open(file)
    except UnidentifiedImageError:  # no picture Pillow knows: a video, read by content
        with open_frames(file, max_pixels=max_pixels) as clip:
            frame = next(iter(clip), None)
        return None if frame is None else Image.fromarray(frame.image)
    with image:
        if image.width * image.height > max_pixels:
            return None
        image.draft("RGB", (THUMB_SIZE, THUMB_SIZE))  # JPEG: decode at a reduced scale
        return Image.fromarray(to_rgb_array(image))
