"""A clip's results encoded as videos (``--encode video|both``): one file per output kind, written atomically.

Each kind's record says how (``Kind.video``): the map, the masks and the overlay go losslessly into
FFV1 in Matroska (``bgr0`` for colour, ``gray`` for masks), so every class colour and mask value
decodes back exactly; the cutout goes into VP9 with alpha (``yuva420p``) in WebM, lossy like any
web video. Frames keep the source's timestamps (in milliseconds, as Matroska stores them) and the
stream its frame rate. Each file is written under a locked temporary name (``tempfiles.locked_temp``)
and renamed into place once the whole clip is encoded: a clip's videos appear together and complete,
or not at all. A video holds one frame size: a clip whose frames change size is refused
(``FrameSizeChange``), never rescaled. Each video carries what it was made with as a container tag:
the run's settings record and the frame selection (``video_record``); ``--skip-existing`` trusts a
video only when that matches and its packets, counted without decoding, are the frames this run
would write (``video_stale_reason``).
"""

from __future__ import annotations

import json
import os
import threading
from contextlib import ExitStack
from fractions import Fraction
from pathlib import Path

import numpy as np

from animeface_seg.batch.kinds import kind_named
from animeface_seg.batch.naming import OutputKind
from animeface_seg.batch.signature import KEY, Signature, differences
from animeface_seg.batch.tempfiles import locked_temp
from animeface_seg.batch.writers import render
from animeface_seg.engine.errors import EngineError
from animeface_seg.engine.frames import import_av, video_packets
from animeface_seg.engine.segmentor import Segmentation

#: Timestamps are counted in milliseconds, Matroska's own unit.
_TIME_BASE = Fraction(1, 1000)
#: Frame rate written when the source gives none (animations) and frames carry no times.
_DEFAULT_FPS = 25


class FrameSizeChange(EngineError):
    """A clip's frames change size: a video holds one size, and rescaling would change the classes' pixels."""

    def __init__(self, number: int, size: tuple[int, int], first: tuple[int, int]) -> None:
        super().__init__(f"frame {number} is {size[1]}x{size[0]}, the clip's first frame {first[1]}x{first[0]}: "
                         "a video holds one frame size, so this clip cannot be encoded without rescaling",
                         setting="encode")


def video_record(signature: Signature, frame_step: int) -> dict:
    """What a clip's videos are made with: the settings record of its frames and the frame selection."""
    return {**signature.record(), "frame_step": frame_step}


class ClipEncoder:
    """Encodes one clip's frames, in order, into one video per output kind; thread-safe.

    ``add`` takes frames in any order (writers finish out of order) and encodes each as soon as the
    frames before it are in; ``finish`` closes the files and renames them into place; ``abort``
    removes them.
    """

    def __init__(self, paths: dict[OutputKind, Path], fps: float | None, record: dict) -> None:
        self.paths = paths
        self.fps = fps
        self.tag = json.dumps(record, sort_keys=True)
        self._size: tuple[int, int] | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._pending: dict[int, tuple[Segmentation, np.ndarray | None, float | None]] = {}
        self._next = 0
        self._last_pts = -1
        self._stack = ExitStack()
        self._files: dict[OutputKind, tuple[Path, object, object]] = {}

    def admit(self, number: int, size: tuple[int, int]) -> None:
        """Check frame ``number``'s source size (height, width), in clip order, before it is segmented: raises
        ``FrameSizeChange`` when it differs from the first frame's."""
        if self._size is None:
            self._size = size
        elif size != self._size:
            raise FrameSizeChange(number, size, self._size)

    def add(self, index: int, result: Segmentation, source: np.ndarray | None, time: float | None) -> None:
        """Frame ``index`` (0, 1, ... in clip order) with its result, its source (for cutout and overlay) and
        its time in seconds; raises when it cannot be encoded."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the clip's videos were dropped")
            self._pending[index] = (result, source, time)
            while self._next in self._pending:
                self._encode(*self._pending.pop(self._next))
                self._next += 1

    def _encode(self, result: Segmentation, source: np.ndarray | None, time: float | None) -> None:
        av = import_av()
        pts = round(time * 1000) if time is not None else round(self._next * 1000 / (self.fps or _DEFAULT_FPS))
        pts = max(pts, self._last_pts + 1)
        self._last_pts = pts
        for kind, path in self.paths.items():
            image = np.asarray(render(result, kind, source))
            if kind not in self._files:
                self._open(kind, path, image)
            _, container, stream = self._files[kind]
            if image.shape[:2] != (stream.height, stream.width):  # never let the encoder rescale it
                raise ValueError(f"the {kind} image of a frame is {image.shape[1]}x{image.shape[0]}, its video "
                                 f"{stream.width}x{stream.height}; a video holds one frame size")
            layout = "gray" if image.ndim == 2 else ("rgba" if image.shape[2] == 4 else "rgb24")
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format=layout)
            frame = frame.reformat(format=stream.pix_fmt)
            frame.pts, frame.time_base = pts, _TIME_BASE
            container.mux(stream.encode(frame))

    def _open(self, kind: OutputKind, path: Path, image: np.ndarray) -> None:
        av = import_av()
        video = kind_named(kind).video
        tmp, _ = self._stack.enter_context(locked_temp(path))
        container = av.open(str(tmp), "w", format=video.container)
        self._stack.callback(container.close)
        container.metadata[KEY] = self.tag
        rate = Fraction(self.fps).limit_denominator(1001) if self.fps else _DEFAULT_FPS
        stream = container.add_stream(video.codec, rate=rate, options=dict(video.options))
        stream.pix_fmt = video.pixel_format(image)
        stream.height, stream.width = image.shape[:2]
        stream.codec_context.time_base = stream.time_base = _TIME_BASE
        self._files[kind] = (tmp, container, stream)

    def finish(self) -> None:
        """Flush every encoder and rename every file into place, all or none; raises on a failure."""
        placed: list[Path] = []
        with self._lock, self._stack:
            self._closed = True
            try:
                for kind, (tmp, container, stream) in self._files.items():
                    container.mux(stream.encode())
                    container.close()
                for kind, (tmp, _, _) in self._files.items():
                    os.replace(tmp, self.paths[kind])
                    placed.append(self.paths[kind])
            except BaseException:
                for path in placed:
                    path.unlink(missing_ok=True)
                raise

    def abort(self) -> None:
        """Drop the files being written (the clip failed)."""
        with self._lock:
            self._closed = True
            self._stack.close()


def video_stale_reason(paths: dict[OutputKind, Path], record: dict, frames: int) -> str | None:
    """Why a clip's videos must be made again, or None when each exists, was made with ``record``
    (``video_record``) and reads to its end whole with exactly ``frames`` frames (packets, not decoded)."""
    av = import_av()
    for path in paths.values():
        if not path.is_file():
            return f"{path.name} is missing"
        try:
            with av.open(str(path)) as container:
                text = {key.lower(): value for key, value in container.metadata.items()}.get(KEY)
            found = json.loads(text) if text else None
            count = video_packets(path)
        except (OSError, av.FFmpegError, EngineError, ValueError) as exc:
            return f"{path.name} cannot be read whole ({exc})"
        if not isinstance(found, dict):
            return f"{path.name} has no animeface-seg record (made by an older version or another tool)"
        if found != record:
            return f"{path.name} was made with other settings: {differences(found, record)}"
        if count != frames:
            return f"{path.name} holds {count} frame{'s' * (count != 1)}, this run writes {frames}"
    return None
