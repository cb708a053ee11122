"""What an input file holds, read from its header once, whatever its name: a still, an animation or a video.

The one place that decides still or clip, and the cheap check every input gets before any network
loads: the file exists, can be read, is not empty, and its header is an image Pillow reads or a
video container PyAV reads. No pixel is decoded. A JPEG's first bytes settle it as a still; the
common video containers' first bytes (``frames.is_video_container``) send it to PyAV; other images
are opened by Pillow (header only), and GIF, PNG (APNG), WebP and TIFF holding more than one frame
are animations. Content Pillow does not know is probed by PyAV from its bytes alone (a file's name
would let FFmpeg guess by extension) and is a video when a video container holds a video stream.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import BinaryIO, Literal

from PIL import Image, UnidentifiedImageError

from animeface_seg.engine.decode import TextChunksTooLarge, decode_errors
from animeface_seg.engine.errors import ImageDecodeError, UnrecognisedImageError
from animeface_seg.engine.frames import import_av, is_video_container, is_video_name, read_head

Content = Literal["still", "animation", "video"]
"""What a file holds, by its header."""

#: Pillow formats whose files may hold many frames, as the clip decoder reads them.
_ANIMATED_FORMATS = frozenset({"GIF", "PNG", "TIFF"})
_JPEG = b"\xff\xd8\xff"
#: What Pillow raises for cut or garbled headers beyond ``decode.decode_errors``' own.
_DAMAGE_ERRORS = (IndexError, TypeError, struct.error)
_PILLOW_ERRORS = (OSError, SyntaxError, ValueError, EOFError, *_DAMAGE_ERRORS)


def sniff(path: str | Path, head: bytes | None = None) -> Content:
    """What the file at ``path`` holds, from its header (``head``: its first bytes, when read already, see
    ``frames.read_head``); raises ``ImageDecodeError`` with a one-line reason (``file is empty (0 bytes)``,
    ``permission denied``, ``not a recognised image or video file``, ...)."""
    if head is None:
        head = read_head(path)
    if not head:
        raise ImageDecodeError("file is empty (0 bytes)")
    if head.startswith(_JPEG):
        return "still"
    if is_video_container(head):  # PyAV confirms it: Pillow need not load every plugin to refuse it
        with decode_errors(path), open(path, "rb") as file:
            return _video_kind(file, path, container=True)
    try:
        with decode_errors(path):
            if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
                return _webp_kind(path)
            return _pillow_kind(path)
    except TextChunksTooLarge:  # a PNG whose text chunks Pillow refuses: the decoder reads it without them
        return "still"
    except UnrecognisedImageError:
        with decode_errors(path), open(path, "rb") as file:
            return _video_kind(file, path)


def _pillow_kind(path: str | Path) -> Content:
    """Still or animation by Pillow's header; a header Pillow refuses as too large is a still (its decoder says so)."""
    try:
        with Image.open(path) as image:
            if image.format not in _ANIMATED_FORMATS:
                return "still"
            try:
                return "animation" if getattr(image, "is_animated", False) else "still"
            except _PILLOW_ERRORS:  # frames past the first cannot be found: the still decoder says what is wrong
                return "still"
    except UnidentifiedImageError:
        raise UnrecognisedImageError("not a recognised image file") from None
    except Image.DecompressionBombError:
        return "still"
    except _DAMAGE_ERRORS as exc:
        raise ImageDecodeError(f"cannot decode image: {exc or type(exc).__name__}") from None


def _video_kind(file: BinaryIO, path: str | Path, container: bool = False) -> Content:
    """``video`` when PyAV finds a video stream in the bytes; else ``UnrecognisedImageError``. Without PyAV, a
    video ``container`` by its first bytes, or a file with a video's name, says which extra reads it."""
    try:
        av = import_av()
    except ImageDecodeError:
        if container or is_video_name(path):
            raise
        raise UnrecognisedImageError("not a recognised image file") from None
    try:
        with av.open(_Nameless(file)) as container:
            if container.streams.video and not _image_demuxer(container.format.name):
                return "video"
    except av.FFmpegError:
        pass
    raise UnrecognisedImageError("not a recognised image or video file")


def _image_demuxer(name: str) -> bool:
    """Whether FFmpeg read the bytes as a picture format (a GIF Pillow refused, say): pictures are Pillow's."""
    return name in ("gif", "apng", "image2", "image2pipe") or name.endswith("_pipe")


class _Nameless:
    """A file's bytes without its name, so FFmpeg probes the content rather than guessing by extension."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file

    def read(self, size: int = -1) -> bytes:
        return self._file.read(size)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()


def _webp_kind(path: str | Path) -> Content:
    """An animation when the WebP file holds two animation frames (``ANMF`` chunks), found by walking its RIFF
    chunks (Pillow would read the whole file to answer)."""
    frames = 0
    with open(path, "rb") as file:
        file.seek(12)
        while frames < 2:
            chunk = file.read(8)
            if len(chunk) < 8:
                break
            size = int.from_bytes(chunk[4:], "little")
            frames += chunk[:4] == b"ANMF"
            file.seek(size + (size & 1), os.SEEK_CUR)
    return "animation" if frames > 1 else "still"
