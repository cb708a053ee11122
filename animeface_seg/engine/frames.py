"""The frames of multi-frame inputs, decoded one at a time: animated GIF, APNG, animated WebP and
multi-page TIFF through Pillow, videos through PyAV.

Each frame becomes an H x W x 3 uint8 RGB array by the rules of stills: an animation's frames as
Pillow composes them (disposal and blending applied), then converted like a still image
(``decode.to_rgb_array``: alpha over white); a video's frames in display order, converted by
PyAV's ``rgb24`` conversion and turned upright by the rotation in the file's display matrix.
Only the current frame is held, so memory does not grow with the length of a clip. PyAV (the
``video`` extra) is imported only when a video is opened.
"""

from __future__ import annotations

import itertools
import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np
from PIL import Image

from animeface_seg.engine.decode import DEFAULT_MAX_PIXELS, check_pixels, decode_errors, has_alpha, to_rgb_array
from animeface_seg.engine.errors import ImageDecodeError, UnrecognisedImageError

#: Video file extensions (compared lower-cased): a folder's files with these names are looked at.
VIDEO_EXTENSIONS: frozenset[str] = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi"})
#: ``ftyp`` brands of pictures (HEIF, AVIF), which share MP4's container.
_PICTURE_BRANDS = frozenset({b"avif", b"avis", b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"})
#: What Pillow raises for cut headers and seeks into garbage, beyond what ``decode.decode_errors`` knows.
_DAMAGE_ERRORS = (IndexError, TypeError, struct.error)
#: Everything Pillow raises for damaged animations.
_PILLOW_ERRORS = (OSError, SyntaxError, ValueError, EOFError, *_DAMAGE_ERRORS)
#: Matroska's per-track ``DURATION`` tag, ``HH:MM:SS.fraction``.
_DURATION_TAG = re.compile(r"^(\d+):(\d{2}):(\d{2}(?:\.\d+)?)$")


class FrameCheck(Protocol):
    """A hook that may refuse frames of a size and Pillow mode by raising an ``EngineError`` before they
    are decoded; ``functools.partial(memory.check, budget=..., ...)`` is one."""

    def __call__(self, width: int, height: int, mode: str, *, alpha: bool) -> None: ...


@dataclass(frozen=True)
class Frame:
    """One decoded frame."""

    number: int
    """Its place in the source, from 1 (with a frame step N: 1, 1+N, 1+2N, ...); it names the frame's outputs."""
    image: np.ndarray
    """H x W x 3 uint8 RGB, upright."""
    time: float | None
    """Seconds from the start of the clip, when the file says (video timestamps, animation frame durations)."""


@dataclass(frozen=True)
class ClipInfo:
    """What a clip's header says, known before any frame is decoded."""

    format: str
    """Pillow's format (``GIF``, ``PNG``, ``WEBP``, ``TIFF``) or the video container (``mov,mp4,...``, ``avi``)."""
    frame_count: int | None
    """Frames the header announces (exact for animations, MP4/MOV and AVI); ``None`` when it does not say
    (Matroska, WebM: then about ``duration * fps``)."""
    fps: float | None
    """Average frames per second of a video; ``None`` for animations."""
    duration: float | None
    """Seconds a video lasts; ``None`` for animations."""


class ClipDecodeError(ImageDecodeError):
    """A clip could not be decoded to its end; ``frames_decoded`` frames were decoded before the failure."""

    def __init__(self, message: str, frames_decoded: int) -> None:
        super().__init__(message)
        self.frames_decoded = frames_decoded


def is_video_name(name: str | os.PathLike[str]) -> bool:
    """Whether a file name has a video extension (any letter case)."""
    return Path(name).suffix.lower() in VIDEO_EXTENSIONS


def is_video_container(head: bytes) -> bool:
    """Whether a file's first 12 bytes open a video container (MP4/MOV's ``ftyp`` box, Matroska/WebM's EBML
    header, AVI's RIFF), so PyAV reads it without Pillow trying first; HEIF and AVIF pictures, boxed like MP4,
    are not."""
    if head[4:8] == b"ftyp":
        return head[8:12] not in _PICTURE_BRANDS
    return head[:4] == b"\x1aE\xdf\xa3" or (head[:4] == b"RIFF" and head[8:12] == b"AVI ")


def read_head(path: str | Path) -> bytes:
    """A file's first 12 bytes (fewer when it is shorter), read without a buffered file object; raises
    ``ImageDecodeError`` with a one-line reason (``file not found``, ``permission denied``, ...)."""
    with decode_errors(path):
        handle = os.open(path, os.O_RDONLY)
        try:
            return os.read(handle, 12)
        finally:
            os.close(handle)


def open_frames(source: str | Path | BinaryIO, *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                before_load: FrameCheck | None = None, step: int = 1) -> Clip:
    """Open a multi-frame file; iterate the returned ``Clip`` (once) for its frames, and close it.

    The content decides, not the name: a video container's file goes to PyAV, any other file (a path or a
    file object) is tried with Pillow, then with PyAV when Pillow does not know it. Only the header is read
    here. ``max_pixels`` and ``before_load`` are checked before the first frame is decoded and again whenever
    the frame size or mode changes; ``step`` takes every ``step``-th frame (1, 1+step, ...). Raises ``ImageDecodeError`` (``ClipDecodeError``
    for a damaged clip) with a one-line reason.
    """
    if step < 1:
        raise ValueError(f"step must be 1 or more, not {step}")
    check = _Check(max_pixels, before_load)
    if isinstance(source, (str, Path)) and is_video_container(_readable_head(source)):
        return _VideoClip(source, check, step)
    position = None if isinstance(source, (str, Path)) else source.tell()
    try:
        return _AnimationClip(source, check, step)
    except UnrecognisedImageError:
        if position is not None:
            source.seek(position)
    return _VideoClip(source, check, step)


def _readable_head(path: str | Path) -> bytes:
    """``read_head``, empty when the file cannot be read (the decoder then says why)."""
    try:
        return read_head(path)
    except ImageDecodeError:
        return b""


class _Check:
    """``max_pixels`` and the ``before_load`` hook, run again only when the frame format changes."""

    def __init__(self, max_pixels: int | None, before_load: FrameCheck | None) -> None:
        self.max_pixels = max_pixels
        self.before_load = before_load
        self.seen: tuple[int, int, str, bool] | None = None

    def __call__(self, width: int, height: int, mode: str, alpha: bool) -> None:
        if (width, height, mode, alpha) == self.seen:
            return
        check_pixels(width, height, self.max_pixels)
        if self.before_load is not None:
            self.before_load(width, height, mode, alpha=alpha)
        self.seen = (width, height, mode, alpha)


class Clip:
    """An opened clip: ``info`` from its header, then its frames, in order, by iterating once.

    ``frames_decoded`` counts the source frames decoded so far (those a frame step passes over
    included), for a record of how far a clip got when it fails. Use it as a context manager, or
    ``close`` it, to release the file.
    """

    info: ClipInfo

    def __init__(self, step: int) -> None:
        self.step = step
        self.frames_decoded = 0
        self._started = False

    def __iter__(self) -> Iterator[Frame]:
        if self._started:
            raise RuntimeError("a clip's frames can be read only once; open it again")
        self._started = True
        return self._frames()

    def _frames(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Clip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _failed(self, reason: str) -> ClipDecodeError:
        done = self.frames_decoded
        return ClipDecodeError(f"frame {done + 1} cannot be decoded ({reason}); "
                               f"{done} frame{'s' * (done != 1)} decoded before it", done)


class _AnimationClip(Clip):
    """GIF, APNG, WebP and TIFF frames through Pillow, each converted like a still."""

    def __init__(self, source: str | Path | BinaryIO, check: _Check, step: int) -> None:
        super().__init__(step)
        self._check = check
        with decode_errors(source):
            try:
                self._image = Image.open(source)
            except _DAMAGE_ERRORS as exc:
                raise ClipDecodeError(f"cannot decode image: {exc or type(exc).__name__}", 0) from None
        try:
            check(*self._image.size, self._image.mode, has_alpha(self._image))
        except BaseException:
            self._image.close()
            raise
        try:
            count = getattr(self._image, "n_frames", 1)
        except _PILLOW_ERRORS:  # the frames cannot all be found: the iteration says where it stops
            count = None
        self.info = ClipInfo(self._image.format or "", count, None, None)

    def _frames(self) -> Iterator[Frame]:
        image = self._image
        start_ms: float | None = 0.0  # where the next frame starts, while every duration so far is known
        for index in itertools.count():
            try:
                image.seek(index)
            except EOFError:
                return
            except _PILLOW_ERRORS as exc:
                raise self._failed(str(exc) or type(exc).__name__) from None
            taken = index % self.step == 0
            if taken:
                self._check(image.width, image.height, image.mode, has_alpha(image))
            try:
                image.load()  # every frame: later frames are drawn over it
                rgb = to_rgb_array(image) if taken else None
            except _PILLOW_ERRORS as exc:
                raise self._failed(str(exc) or type(exc).__name__) from None
            self.frames_decoded += 1
            duration = image.info.get("duration")
            time = None if start_ms is None or duration is None else start_ms / 1000.0
            start_ms = None if time is None else start_ms + float(duration)
            if rgb is not None:
                yield Frame(index + 1, rgb, time)

    def close(self) -> None:
        self._image.close()


def import_av():
    """PyAV, or an ``ImageDecodeError`` naming the extra that installs it."""
    try:
        import av
    except ImportError:
        raise ImageDecodeError("videos need PyAV: pip install 'animeface-seg[video]'") from None
    return av


def video_packets(path: str | Path) -> int:
    """The frames of a video file's first video stream, counted by demuxing its packets without decoding them:
    the count where a header gives none (Matroska, WebM), and a cheap check that a file holds all it should.
    Raises ``ImageDecodeError`` when the file cannot be read to its end whole."""
    av = import_av()
    count = 0
    with decode_errors(path, what="video"):
        try:
            with av.open(str(path)) as container:
                if not container.streams.video:
                    raise ImageDecodeError("the file has no video stream")
                for packet in container.demux(container.streams.video[0]):
                    if packet.is_corrupt:
                        raise ImageDecodeError(f"packet {count + 1} of the video is damaged")
                    count += bool(packet.size)
        except av.FFmpegError as exc:
            if isinstance(exc, OSError):
                raise
            raise ImageDecodeError(f"cannot read the video to its end: {exc.strerror or exc}") from None
    return count


class _VideoClip(Clip):
    """Video frames through PyAV: the first video stream, in display order, ``rgb24``, upright."""

    def __init__(self, source: str | Path | BinaryIO, check: _Check, step: int) -> None:
        super().__init__(step)
        self._av = av = import_av()
        with decode_errors(source, what="video"):
            try:
                self._container = av.open(str(source) if isinstance(source, Path) else source)
            except av.FFmpegError as exc:
                if isinstance(exc, OSError):  # not found, permission denied, a folder: said as for images
                    raise
                if isinstance(source, (str, Path)) and Path(source).stat().st_size == 0:
                    raise ImageDecodeError("file is empty (0 bytes)") from None
                raise ClipDecodeError(f"cannot decode video: {exc.strerror or exc}", 0) from None
        try:
            if not self._container.streams.video:
                raise ImageDecodeError("the file has no video stream")
            self._stream = stream = self._container.streams.video[0]
            if stream.codec_context.width and stream.codec_context.height:  # else known at the first frame
                check(stream.codec_context.width, stream.codec_context.height, "RGB", False)
        except BaseException:
            self._container.close()
            raise
        self._check = check
        rate = stream.average_rate or stream.guessed_rate
        self._stream_duration = _stream_duration(stream)
        container_duration = self._container.duration / 1_000_000 if self._container.duration else None
        self.info = ClipInfo(self._container.format.name, stream.frames or None, float(rate) if rate else None,
                             self._stream_duration or container_duration)

    def _frames(self) -> Iterator[Frame]:
        last_time = None
        decoded = self._container.decode(self._stream)
        while True:
            try:
                frame = next(decoded, None)
            except self._av.FFmpegError as exc:
                raise self._failed(exc.strerror or str(exc)) from None
            if frame is None:
                break
            self.frames_decoded += 1
            last_time = frame.time
            if (self.frames_decoded - 1) % self.step:
                continue
            self._check(frame.width, frame.height, "RGB", False)
            yield Frame(self.frames_decoded, _upright(frame.to_ndarray(format="rgb24"), frame.rotation), frame.time)
        self._check_complete(last_time)

    def _check_complete(self, last_time: float | None) -> None:
        """Raise ``ClipDecodeError`` when the frames end well before the duration the header announces:
        Matroska, WebM and AVI files cut short end without an error from the decoder."""
        fps, expected = self.info.fps, self._stream_duration
        if not fps or not expected:
            return
        start = float(self._stream.start_time * self._stream.time_base) if self._stream.start_time else 0.0
        reached = 0.0 if last_time is None else last_time - start + 1.0 / fps
        if reached < expected - 2.0 / fps:
            done = self.frames_decoded
            raise ClipDecodeError(f"the video ends after {done} frame{'s' * (done != 1)} ({reached:.2f} s) of the "
                                  f"{expected:.2f} s its header announces; the file is truncated or damaged", done)

    def close(self) -> None:
        self._container.close()


def _stream_duration(stream) -> float | None:
    """Seconds the video stream itself lasts, as its container records it (not the longest stream's)."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    match = _DURATION_TAG.match(stream.metadata.get("DURATION", ""))
    if match:
        hours, minutes, seconds = match.groups()
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    return None


def _upright(image: np.ndarray, rotation: float) -> np.ndarray:
    """``image`` turned counterclockwise by ``rotation`` degrees (a display matrix's rotation, a multiple of 90),
    in one contiguous block (PyAV's rows keep their padding)."""
    return np.ascontiguousarray(np.rot90(image, round(rotation / 90) % 4))

