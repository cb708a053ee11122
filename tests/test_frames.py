"""Frames of clips: videos made here with PyAV (H.264, VP9, MPEG-4), animated GIF/APNG/WebP and
multi-page TIFF made with Pillow; every frame in order, converted like stills, upright, in flat
memory, and cut files fail with how far they got."""

from __future__ import annotations

import functools
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import MAX_TEXT_CHUNK, PngInfo

from animeface_seg.engine import memory
from animeface_seg.engine.decode import load_rgb
from animeface_seg.engine.errors import ImageDecodeError
from animeface_seg.engine.frames import ClipDecodeError, is_video_container, open_frames
from animeface_seg.engine.sniff import sniff
from animeface_seg.engine.memory import MemoryBudgetError
from test_clips import cut_inside_frame

av = pytest.importorskip("av")

#: Distinct flat colours, one per frame, far apart even after 4:2:0 chroma and lossy coding.
COLOURS = [(230, 20, 20), (20, 230, 20), (20, 20, 230), (230, 230, 20), (230, 20, 230), (20, 230, 230),
           (240, 240, 240), (20, 20, 20)]
H264 = "libx264" if "libx264" in av.codecs_available else "mpeg4"


def solid(colour: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> np.ndarray:
    """An H x W x 3 frame of one colour (``size`` is width, height)."""
    return np.full((size[1], size[0], 3), colour, np.uint8)


def write_video(path: Path, frames, codec: str, fps: int = 10, rotation: int | None = None,
                options: dict | None = None) -> Path:
    """Encode RGB arrays into a video file with PyAV, 4:2:0."""
    frames = list(frames)
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w", options=options or {}) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for array in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode())
    return path


def pyav_rgb24(path: Path) -> list[np.ndarray]:
    """Every frame as PyAV's own ``rgb24`` conversion gives it (no rotation applied)."""
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def read_all(source, **options):
    with open_frames(source, **options) as clip:
        return clip.info, list(clip)


@pytest.mark.parametrize("name, codec", [("clip.mp4", H264), ("CLIP.MOV", H264), ("clip.mkv", H264),
                                         ("clip.webm", "libvpx-vp9"), ("clip.AVI", "mpeg4")])
def test_video_frames_in_display_order_as_pyav_rgb24(tmp_path, name, codec):
    path = write_video(tmp_path / name, (solid(c, (66, 46)) for c in COLOURS), codec)  # rows PyAV pads
    assert sniff(path) == "video"
    info, frames = read_all(path)
    assert [f.number for f in frames] == list(range(1, 9))
    assert [f.time for f in frames] == pytest.approx([i / 10 for i in range(8)])
    for frame, colour in zip(frames, COLOURS):
        assert frame.image.shape == (46, 66, 3) and frame.image.dtype == np.uint8
        assert frame.image.flags.c_contiguous and frame.image.flags.writeable
        assert np.abs(frame.image.reshape(-1, 3).mean(0) - colour).max() < 12, (frame.number, colour)
    reference = pyav_rgb24(path)
    assert len(reference) == 8 and all(np.array_equal(f.image, r) for f, r in zip(frames, reference))
    assert info.fps == pytest.approx(10) and info.duration == pytest.approx(0.8)
    assert info.frame_count == (None if name.endswith(("mkv", "webm")) else 8)


def test_rotation_from_the_display_matrix_is_applied(tmp_path):
    image = solid((20, 20, 20), (64, 32))
    image[:8, :8] = 240  # a light corner at the top left of the coded frame
    path = write_video(tmp_path / "phone.mp4", [image] * 3, H264, rotation=90)
    _, frames = read_all(path)
    coded = pyav_rgb24(path)[0]
    assert coded.shape == (32, 64, 3) and coded[:8, :8].mean() > 200
    for frame in frames:
        upright = frame.image
        # 90 degrees counterclockwise: tall, and the top-left corner comes to the bottom left
        assert upright.shape == (64, 32, 3) and upright.flags.c_contiguous
        assert upright[-8:, :8].mean() > 200 and upright[:8, :8].mean() < 60
        assert np.array_equal(upright, np.rot90(coded, 1))


def save_animation(path: Path, frames: list[Image.Image], **options) -> Path:
    frames[0].save(path, save_all=True, append_images=frames[1:], **options)
    return path


@pytest.mark.parametrize("name, options", [
    ("anim.gif", {"duration": 100, "loop": 0}),
    ("anim.png", {"duration": 100}),
    ("anim.webp", {"duration": 100, "lossless": True}),
    ("pages.tiff", {}),
])
def test_animation_frames_are_every_frame_in_order(tmp_path, name, options):
    path = save_animation(tmp_path / name, [Image.fromarray(solid(c)) for c in COLOURS[:5]], **options)
    assert sniff(path) == "animation"
    info, frames = read_all(path)
    assert info.frame_count == 5 and [f.number for f in frames] == [1, 2, 3, 4, 5]
    assert [tuple(f.image[10, 10]) for f in frames] == COLOURS[:5]
    times = [f.time for f in frames]
    assert times == ([None] * 5 if name.endswith("tiff") else pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4]))


@pytest.mark.parametrize("name", ["anim.gif", "anim.png", "anim.webp", "pages.tiff"])
def test_transparent_frames_are_composited_over_white_after_disposal(tmp_path, name):
    """Frame 1 fills the left half, frame 2 the right half over a transparent rest: with 'keep the
    previous frame' disposal both halves show in frame 2; a TIFF page, or a WebP key frame (Pillow writes
    no other kind with alpha intact), shows only its own."""
    first, second = Image.new("RGBA", (40, 20), (0, 0, 0, 0)), Image.new("RGBA", (40, 20), (0, 0, 0, 0))
    first.paste((200, 0, 0, 255), (0, 0, 20, 20))
    second.paste((0, 0, 200, 255), (20, 0, 40, 20))
    options = {"tiff": {}, "gif": {"disposal": 1}, "png": {"disposal": 0, "blend": 1}, "webp": {"lossless": True, "kmax": 1}}
    path = save_animation(tmp_path / name, [first, second], duration=50, **options[name.rsplit(".", 1)[1]])
    _, frames = read_all(path)
    assert tuple(frames[0].image[5, 5]) == (200, 0, 0) and tuple(frames[0].image[5, 30]) == (255, 255, 255)
    assert tuple(frames[1].image[5, 30]) == (0, 0, 200)
    kept = (255, 255, 255) if name.endswith(("tiff", "webp")) else (200, 0, 0)
    assert tuple(frames[1].image[5, 5]) == kept


@pytest.mark.parametrize("name", ["one.gif", "one.webp", "one.tiff", "one.png"])
def test_a_single_frame_file_stays_a_still_and_decodes_as_one(tmp_path, name):
    path = tmp_path / name
    Image.fromarray(solid((10, 120, 250))).save(path, **({"lossless": True} if name.endswith("webp") else {}))
    assert sniff(path) == "still"
    _, frames = read_all(path)
    assert len(frames) == 1 and np.array_equal(frames[0].image, load_rgb(path))


def test_the_header_decides_still_animation_or_video_whatever_the_name(tmp_path):
    """Content, not extension: a GIF named .webp or .png is an animation, a video named .jpg or .png a video,
    a one-frame GIF a still; what is neither (text, nothing, a cut header) fails with the decoder's words."""
    frames = [Image.fromarray(solid(c)) for c in COLOURS[:3]]
    gif = save_animation(tmp_path / "anim.gif", frames, duration=40)
    video = write_video(tmp_path / "clip.mp4", (solid(c) for c in COLOURS[:3]), H264)
    named = {"gif.webp": gif, "gif.png": gif, "video.jpg": video, "video.PNG": video, "video.gif": video}
    for name, content in named.items():
        (tmp_path / name).write_bytes(content.read_bytes())
    Image.fromarray(solid((1, 2, 3))).save(tmp_path / "photo.jpg")
    Image.fromarray(solid((1, 2, 3))).save(tmp_path / "jpeg.gif", format="JPEG")
    save_animation(tmp_path / "still.gif", frames[:1])
    Image.fromarray(solid((1, 2, 3))).save(tmp_path / "still.webp", lossless=True)
    save_animation(tmp_path / "moving.webp", frames, duration=40, lossless=True)
    text = PngInfo()  # text chunks Pillow's header reader refuses (an embedded workflow): the decoder drops them
    text.add_itxt("workflow", "x" * 2 * MAX_TEXT_CHUNK, zip=True)
    Image.fromarray(solid((1, 2, 3))).save(tmp_path / "workflow.png", pnginfo=text)
    kinds = {path.name: sniff(path) for path in sorted(tmp_path.iterdir())}
    assert kinds == {"anim.gif": "animation", "clip.mp4": "video", "gif.png": "animation", "gif.webp": "animation",
                     "jpeg.gif": "still", "moving.webp": "animation", "photo.jpg": "still", "still.gif": "still",
                     "still.webp": "still", "video.PNG": "video", "video.gif": "video", "video.jpg": "video",
                     "workflow.png": "still"}
    for name in ("gif.webp", "video.jpg"):  # and the clip decoder reads each by its content too
        with open_frames(tmp_path / name) as clip:
            assert len(list(clip)) == 3
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image\n" * 50)
    (tmp_path / "text.mkv").write_text("not a video\n" * 50)
    (tmp_path / "notes.txt").write_text("FFmpeg reads text by this name as a video of characters\n" * 50)
    (tmp_path / "cut.gif").write_bytes(b"GIF89a not really")  # FFmpeg's GIF reader takes it: not a video
    heads = {b"\0\0\0\x18ftypisom": True, b"\0\0\0\x14ftypqt  ": True, b"\x1aE\xdf\xa3\x9fB\x86\x81\x01B\xf7\x81": True,
             b"RIFF\0\0\0\0AVI ": True, b"\0\0\0\x1cftypavif": False, b"\0\0\0\x18ftypheic": False,
             b"RIFF\0\0\0\0WEBP": False, b"GIF89a\0\0\0\0\0\0": False}  # AVIF and HEIF pictures are boxed like MP4
    assert {head: is_video_container(head) for head in heads} == heads
    unknown = "not a recognised image or video file"
    for name, message in [("empty.png", "file is empty (0 bytes)"), ("missing.gif", "file not found"),
                          ("text.png", unknown), ("text.mkv", unknown), ("notes.txt", unknown), ("cut.gif", unknown)]:
        with pytest.raises(ImageDecodeError, match=re.escape(message)):
            sniff(tmp_path / name)


def test_without_pyav_a_video_by_content_or_name_names_the_extra(tmp_path, monkeypatch):
    video = write_video(tmp_path / "clip.mp4", (solid(c) for c in COLOURS[:2]), H264)
    (tmp_path / "video.jpg").write_bytes(video.read_bytes())
    (tmp_path / "text.mkv").write_text("not a video\n")
    (tmp_path / "text.png").write_text("not an image\n")
    monkeypatch.setitem(sys.modules, "av", None)  # the video extra not installed
    for name in ("clip.mp4", "video.jpg", "text.mkv"):
        with pytest.raises(ImageDecodeError, match=re.escape("videos need PyAV: pip install 'animeface-seg[video]'")):
            sniff(tmp_path / name)
    with pytest.raises(ImageDecodeError, match="^not a recognised image file$"):
        sniff(tmp_path / "text.png")


def test_frame_step_numbers_frames_by_source_frame(tmp_path):
    gif = save_animation(tmp_path / "a.gif", [Image.fromarray(solid(c)) for c in COLOURS[:7]], duration=40)
    video = write_video(tmp_path / "a.mp4", (solid(c) for c in COLOURS[:7]), H264)
    for path in (gif, video):
        with open_frames(path, step=3) as clip:
            frames = list(clip)
            assert clip.frames_decoded == 7
        assert [f.number for f in frames] == [1, 4, 7]
        for frame in frames:
            assert np.abs(frame.image.reshape(-1, 3).mean(0) - COLOURS[frame.number - 1]).max() < 12


def test_a_file_object_is_read_as_animation_or_video(tmp_path):
    video = write_video(tmp_path / "a.webm", (solid(c) for c in COLOURS[:3]), "libvpx-vp9")
    gif = save_animation(tmp_path / "a.gif", [Image.fromarray(solid(c)) for c in COLOURS[:3]], duration=40)
    for path in (video, gif):
        info, frames = read_all(io.BytesIO(path.read_bytes()))
        assert len(frames) == 3 and info.format in ("GIF", "matroska,webm")


@pytest.mark.parametrize("name, codec, options", [
    ("cut.mkv", H264, None),
    ("cut.webm", "libvpx-vp9", None),
    ("cut.avi", "mpeg4", None),
    ("cut.mp4", H264, {"movflags": "faststart"}),
])
def test_a_cut_video_fails_saying_how_many_frames_were_decoded(tmp_path, name, codec, options):
    rng = np.random.default_rng(0)  # noise, so every frame takes room and a cut loses frames
    full = write_video(tmp_path / f"full-{name}", (rng.integers(0, 256, (64, 64, 3), np.uint8) for _ in range(30)),
                       codec, options=options)
    data = full.read_bytes()
    cut = tmp_path / name
    cut.write_bytes(data[: len(data) // 2])
    with open_frames(cut) as clip, pytest.raises(ClipDecodeError) as failure:
        for _ in clip:
            pass
    decoded = failure.value.frames_decoded
    assert 0 < decoded < 30 and decoded == clip.frames_decoded
    assert f"{decoded} frames" in str(failure.value) and "\n" not in str(failure.value)


def test_an_mp4_cut_before_its_index_fails_at_open(tmp_path):
    full = write_video(tmp_path / "full.mp4", (solid(c) for c in COLOURS), H264)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[:-200])  # the index (moov) comes last
    with pytest.raises(ClipDecodeError, match="cannot decode video") as failure:
        open_frames(cut)
    assert failure.value.frames_decoded == 0


def test_a_cut_apng_fails_saying_how_many_frames_were_decoded(tmp_path):
    rng = np.random.default_rng(1)
    frames = [Image.fromarray(rng.integers(0, 256, (40, 40, 3), np.uint8)) for _ in range(10)]
    data = save_animation(tmp_path / "full.png", frames, duration=40).read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(cut_inside_frame(data, 6))
    with open_frames(cut) as clip, pytest.raises(ClipDecodeError, match=r"frame 6 cannot be decoded") as failure:
        list(clip)
    assert failure.value.frames_decoded == clip.frames_decoded == 5


@pytest.mark.parametrize("name", ["big.mp4", "big.gif"])
def test_limits_refuse_a_clip_before_any_frame_is_decoded(tmp_path, name):
    frames = [solid(c, (320, 240)) for c in COLOURS[:2]]
    if name.endswith("mp4"):
        path = write_video(tmp_path / name, frames, H264)
    else:
        path = save_animation(tmp_path / name, [Image.fromarray(f) for f in frames], duration=40)
    refused = r"^image is 320x240 = 76,800 pixels, over the limit of 10,000$"
    with pytest.raises(ImageDecodeError, match=refused) as failure:
        open_frames(path, max_pixels=10_000)
    assert type(failure.value) is ImageDecodeError and failure.value.setting == "max_pixels"
    seen = []
    budget = memory.fixed_budget(memory.parse_size("1M"))
    hook = functools.partial(memory.check, budget=budget)
    with pytest.raises(MemoryBudgetError, match="320x240"):
        open_frames(path, before_load=lambda *args, **kw: (seen.append((args, kw)), hook(*args, **kw)))
    assert seen[0][0][:2] == (320, 240)
    assert seen[0][1] == {"alpha": False}
    with open_frames(path, before_load=functools.partial(memory.check, budget=memory.fixed_budget(0))) as clip:
        assert len(list(clip)) == 2


def test_missing_empty_and_non_video_files_are_one_line_errors(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.mov").write_text("not a video\n" * 50)
    for name, error, message in [("missing.mp4", ImageDecodeError, r"^file not found$"),
                                 ("empty.mp4", ImageDecodeError, r"^file is empty \(0 bytes\)$"),
                                 ("text.mov", ClipDecodeError, r"^cannot decode video: ")]:
        with pytest.raises(error, match=message) as failure:
            open_frames(tmp_path / name)
        assert type(failure.value) is error, name


_PEAK = """
import resource, sys
from animeface_seg.engine.frames import open_frames
with open_frames(sys.argv[1]) as clip:
    count = sum(1 for _ in clip)
print(count, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_kib(path: Path) -> tuple[int, int]:
    """Frames read and peak resident memory (KiB) of a fresh process decoding ``path``."""
    proc = subprocess.run([sys.executable, "-c", _PEAK, str(path)], capture_output=True, text=True, check=True,
                          env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    count, peak = map(int, proc.stdout.split())
    return count, peak


def test_memory_stays_flat_for_a_ten_times_longer_clip(tmp_path):
    ramp = np.add.outer(np.arange(240), np.arange(320)).astype(np.uint8)
    frames = [np.stack([np.roll(ramp, 8 * i, axis=1)] * 3, axis=-1) for i in range(10)]
    short = write_video(tmp_path / "short.avi", (frames[i % 10] for i in range(30)), "mpeg4")
    long = write_video(tmp_path / "long.avi", (frames[i % 10] for i in range(300)), "mpeg4")
    (short_count, short_peak), (long_count, long_peak) = peak_kib(short), peak_kib(long)
    assert (short_count, long_count) == (30, 300)
    # holding the frames would take 270 x 225 KiB = 59 MiB more
    assert long_peak - short_peak < 12 * 1024, json.dumps({"short": short_peak, "long": long_peak})


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
@pytest.mark.parametrize("name", ["cut.gif", "cut.tiff"])
def test_cut_gif_and_tiff_fail_as_decode_errors(tmp_path, name):
    rng = np.random.default_rng(3)
    frames = [Image.fromarray(rng.integers(0, 256, (40, 40, 3), np.uint8)) for _ in range(10)]
    data = save_animation(tmp_path / f"full-{name}", frames, duration=40).read_bytes()
    cut = tmp_path / name
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ClipDecodeError, match="cannot be decoded|cannot decode image") as failure:
        with open_frames(cut) as clip:
            list(clip)
    # the seeded frames are alike in size: half the file ends inside frame 5 of the GIF, frame 6 of the TIFF
    assert failure.value.frames_decoded == {"cut.gif": 4, "cut.tiff": 5}[name] and "\n" not in str(failure.value)
