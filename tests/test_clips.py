"""Clips end to end: videos and animated images in a folder give folders of frames, each frame as the
command segments the same picture saved as a still; records, failures, resume, sampling, layouts,
the watch mode's source, the Ray engine's refusal, the library's stream, and frames in flight that
do not grow with the clip. Clips are made here with PyAV and Pillow, a few frames each (every frame
runs the real networks)."""

from __future__ import annotations

import os
import queue
import threading
from pathlib import Path, PurePath

import numpy as np
import pytest
from PIL import Image

from animeface_seg.engine.frames import open_frames
import record_schema
from conftest import read_gray, read_rgb

av = pytest.importorskip("av")

H264 = "libx264" if "libx264" in av.codecs_available else "mpeg4"


def noise_frames(count: int, size: tuple[int, int] = (64, 48), seed: int = 0) -> list[np.ndarray]:
    """``count`` different H x W x 3 frames (``size`` is width, height)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size[1], size[0], 3), np.uint8) for _ in range(count)]


def write_video(path: Path, frames: list[np.ndarray], codec: str = H264, fps: int = 10) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for array in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode())
    return path


def write_animation(path: Path, frames: list[np.ndarray], **options) -> Path:
    images = [Image.fromarray(frame) for frame in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=100, **options)
    return path


def cut_inside_frame(data: bytes, frame: int) -> bytes:
    """An APNG's bytes cut half way through the image data of ``frame`` (from 1): the frames before it stay whole."""
    position, controls = 8, 0
    while position < len(data):
        length, kind = int.from_bytes(data[position:position + 4], "big"), data[position + 4:position + 8]
        controls += kind == b"fcTL"
        if controls == frame and kind in (b"IDAT", b"fdAT"):
            return data[: position + 8 + length // 2]
        position += 12 + length
    raise ValueError(f"the APNG has no frame {frame}")


def records(stdout: str) -> dict[str, dict]:
    """``--json`` records by input file name, each checked against the record schema."""
    return {Path(r["input"]).name: r for r in record_schema.records(stdout)}


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """A video (3 frames), an animated GIF and an animated WebP (2 frames each) and a still, in one folder."""
    folder = tmp_path_factory.mktemp("clips")
    write_video(folder / "clip.mp4", noise_frames(3, seed=1))
    write_animation(folder / "anim.gif", noise_frames(2, seed=2), loop=0)
    write_animation(folder / "moving.webp", noise_frames(2, seed=3), lossless=True)
    Image.fromarray(noise_frames(1, seed=4)[0]).save(folder / "still.png")
    return folder


@pytest.fixture(scope="module")
def clip_run(run_cli, clips, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    result = run_cli(str(clips), "-o", str(out), "--json", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    return out, records(result.stdout), result.stderr


def test_clips_give_frame_folders_and_records(clip_run):
    out, found, stderr = clip_run
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [
        "anim/000001.png", "anim/000001_mask.png", "anim/000002.png", "anim/000002_mask.png",
        "clip/000001.png", "clip/000001_mask.png", "clip/000002.png", "clip/000002_mask.png",
        "clip/000003.png", "clip/000003_mask.png",
        "moving/000001.png", "moving/000001_mask.png", "moving/000002.png", "moving/000002_mask.png",
        "still.png", "still_mask.png"]
    clip = found["clip.mp4"]
    assert clip["status"] == "ok" and clip["outputs"] == {"map": str(out / "clip"), "mask": str(out / "clip")}
    assert clip["frames"] == 3 and clip["fps"] == pytest.approx(10) and clip["duration"] == pytest.approx(0.3)
    assert clip["original_size"] == {"width": 64, "height": 48}
    assert sum(clip["class_fractions"].values()) == pytest.approx(1, abs=1e-4) and 0 < clip["mask_coverage"] < 1
    for name in ("anim.gif", "moving.webp"):
        assert (found[name]["status"], found[name]["frames"], found[name]["fps"], found[name]["duration"]) == (
            "ok", 2, None, None)
    still = found["still.png"]
    assert (still["frames"], still["fps"], still["duration"]) == (None, None, None)
    assert still["outputs"] == {"map": str(out / "still.png"), "mask": str(out / "still_mask.png")}
    assert "processed 4 (7 frames of clips)" in stderr


def test_each_frame_equals_the_command_on_that_frame_saved_as_a_still(run_cli, clips, clip_run, tmp_path):
    out, _, _ = clip_run
    stills = tmp_path / "stills"
    for name in ("clip.mp4", "anim.gif", "moving.webp"):
        (stills / Path(name).stem).mkdir(parents=True)
        with open_frames(clips / name) as clip:
            for frame in clip:
                Image.fromarray(frame.image).save(stills / Path(name).stem / f"{frame.number:06d}.png")
    result = run_cli(str(stills), "-o", str(tmp_path / "out"), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    for still in sorted(stills.rglob("*.png")):
        relative = still.relative_to(stills).with_suffix("")
        mine = out / relative
        theirs = tmp_path / "out" / relative
        assert np.array_equal(read_rgb(mine.with_suffix(".png")), read_rgb(theirs.with_suffix(".png"))), relative
        mask = f"{relative.name}_mask.png"
        assert np.array_equal(read_gray(mine.with_name(mask)), read_gray(theirs.with_name(mask))), relative


def test_first_frame_takes_one_picture_per_file(run_cli, clips, clip_run, tmp_path):
    out, _, _ = clip_run
    result = run_cli(str(clips / "clip.mp4"), str(clips / "anim.gif"), "-o", str(tmp_path), "--first-frame",
                     "--json", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["anim.png", "anim_mask.png", "clip.png", "clip_mask.png"]
    assert all(r["frames"] is None for r in records(result.stdout).values())
    for name in ("clip", "anim"):
        assert np.array_equal(read_rgb(tmp_path / f"{name}.png"), read_rgb(out / name / "000001.png"))
        assert np.array_equal(read_gray(tmp_path / f"{name}_mask.png"), read_gray(out / name / "000001_mask.png"))


def test_frame_step_numbers_by_source_frame_in_the_by_kind_layout_with_class_masks(run_cli, tmp_path):
    (tmp_path / "in").mkdir()
    anim = write_animation(tmp_path / "in" / "anim.gif", noise_frames(5, seed=5), loop=0)
    out = tmp_path / "out"
    result = run_cli(str(anim), "-o", str(out), "--frame-step", "2", "--layout", "by-kind", "--keep-background",
                     "--class-masks", "hair", "--json", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [
        "hair/anim/000001.png", "hair/anim/000003.png", "hair/anim/000005.png",
        "maps/anim/000001.png", "maps/anim/000003.png", "maps/anim/000005.png"]
    record = records(result.stdout)["anim.gif"]
    assert record["frames"] == 3
    assert record["outputs"] == {"map": str(out / "maps" / "anim"), "hair": str(out / "hair" / "anim")}
    hair = read_gray(out / "hair" / "anim" / "000003.png")
    colours = read_rgb(out / "maps" / "anim" / "000003.png")
    assert np.array_equal(hair == 255, (colours == (0, 0, 255)).all(-1))


def test_a_cut_clip_fails_alone_saying_how_many_frames_were_written(run_cli, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    full = write_animation(tmp_path / "full.png", noise_frames(6, (40, 40), seed=6))
    (folder / "cut.png").write_bytes(cut_inside_frame(full.read_bytes(), 4))
    write_animation(folder / "fine.gif", noise_frames(2, seed=7), loop=0)
    out = tmp_path / "out"
    result = run_cli(str(folder), "-o", str(out), "--keep-background", "--json", "--device", "cpu")
    assert result.returncode == 1, result.stderr
    found = records(result.stdout)
    cut = found["cut.png"]
    written = sorted(p.name for p in (out / "cut").iterdir())
    assert (cut["status"], cut["outputs"], cut["frames"]) == ("error", {}, 3)
    assert written == ["000001.png", "000002.png", "000003.png"]
    assert cut["error"].startswith("frame 4 cannot be decoded (") and cut["error"].endswith(
        "3 frames decoded before it; 3 frames written"), cut["error"]
    assert found["fine.gif"]["status"] == "ok" and found["fine.gif"]["frames"] == 2


def test_skip_existing_skips_a_finished_clip_and_finishes_a_cut_one(run_cli, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_video(folder / "clip.mkv", noise_frames(3, seed=8))  # Matroska: the header does not count frames
    write_animation(folder / "anim.gif", noise_frames(2, seed=9), loop=0)  # GIF: it does
    out = tmp_path / "out"
    args = (str(folder), "-o", str(out), "--keep-background", "--json", "--device", "cpu", "--skip-existing")
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    files = sorted(out.rglob("*.png"))
    assert len(files) == 5
    times = {path: path.stat().st_mtime_ns for path in files}

    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    found = records(again.stdout)
    assert {name: (r["status"], r["reason"], r["frames"]) for name, r in found.items()} == {
        "clip.mkv": ("skipped", "already done", 3), "anim.gif": ("skipped", "already done", 2)}
    assert {path: path.stat().st_mtime_ns for path in files} == times

    (out / "clip" / "000003.png").unlink()  # a run cut short after two frames
    (out / "anim" / "000002.png").unlink()
    resumed = run_cli(*args)
    assert resumed.returncode == 0, resumed.stderr
    found = records(resumed.stdout)
    assert (found["clip.mkv"]["status"], found["clip.mkv"]["frames"]) == ("ok", 3)
    assert found["clip.mkv"]["reason"] == "resumed: 2 frames already done, 1 made"
    assert (found["anim.gif"]["status"], found["anim.gif"]["reason"]) == ("ok", "resumed: 1 frame already done, 1 made")
    for path in files:
        if path.name == "000003.png" or path == out / "anim" / "000002.png":
            assert path.is_file()
        else:
            assert path.stat().st_mtime_ns == times[path], path


def test_watch_source_hands_over_a_clip_once_it_has_settled(tmp_path):
    pytest.importorskip("watchfiles")
    from animeface_seg.batch.kinds import select
    from animeface_seg.batch.spec import OutputSpec
    from animeface_seg.integrations.watch import DropFolders

    src = tmp_path / "in"
    src.mkdir()
    drop = DropFolders([str(src)], OutputSpec(tmp_path / "out", select()), settle=0.3)
    drop.start()
    got: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: [got.put(job) for job in drop.jobs()], daemon=True)
    reader.start()
    try:
        write_animation(tmp_path / "anim.gif", noise_frames(2), loop=0)
        os.replace(tmp_path / "anim.gif", src / "anim.gif")
        write_video(tmp_path / "clip.mp4", noise_frames(2))
        os.replace(tmp_path / "clip.mp4", src / "clip.mp4")
        jobs = sorted((got.get(timeout=60), got.get(timeout=60)), key=lambda job: job.source.name)
        assert [(job.relative, job.kind.streams_frames, job.error) for job in jobs] == [
            (PurePath("anim"), True, None), (PurePath("clip"), True, None)]
    finally:
        drop.stop()
        reader.join(timeout=60)


def test_watch_with_first_frame_hands_over_new_clips_as_pictures(tmp_path):
    """With --first-frame a file dropped while watching is one picture, as it is in the first scan."""
    pytest.importorskip("watchfiles")
    from animeface_seg.batch.kinds import select
    from animeface_seg.batch.spec import OutputSpec
    from animeface_seg.integrations.watch import DropFolders

    src = tmp_path / "in"
    src.mkdir()
    drop = DropFolders([str(src)], OutputSpec(tmp_path / "out", select(), first_frame=True), settle=0.3)
    drop.start()
    got: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: [got.put(job) for job in drop.jobs()], daemon=True)
    reader.start()
    try:
        write_animation(tmp_path / "anim.gif", noise_frames(2), loop=0)
        os.replace(tmp_path / "anim.gif", src / "anim.gif")
        job = got.get(timeout=60)
        assert (job.relative, job.kind.streams_frames, job.error) == (PurePath("anim"), False, None)
    finally:
        drop.stop()
        reader.join(timeout=60)


def test_ray_refuses_clips_before_it_starts(run_cli, clips, tmp_path):
    pytest.importorskip("ray")
    result = run_cli(str(clips), "-o", str(tmp_path / "out"), "--engine", "ray")
    assert result.returncode == 2
    assert "--engine ray takes no videos or animated images" in result.stderr and "--first-frame" in result.stderr
    assert not (tmp_path / "out").exists()


def test_frame_step_and_first_frame_together_are_refused(run_cli, clips, tmp_path):
    result = run_cli(str(clips), "-o", str(tmp_path), "--first-frame", "--frame-step", "2")
    assert result.returncode == 2 and "drop one" in result.stderr


def test_stream_segments_an_iterator_in_order_without_holding_it(segmentor_keep):
    frames = noise_frames(5, seed=10) + noise_frames(2, (48, 64), seed=11)
    taken = []

    def lazily():
        for frame in frames:
            taken.append(frame)
            yield frame

    results = segmentor_keep.stream(lazily(), batch_size=2)
    first = next(results)
    assert len(taken) <= 2  # only the first batch was read
    rest = list(results)
    alone = segmentor_keep(frames, batch_size=2)
    assert [r.colors.shape for r in [first, *rest]] == [r.colors.shape for r in alone]
    assert all(np.array_equal(a.colors, b.colors) for a, b in zip([first, *rest], alone))


def test_frames_in_flight_do_not_grow_with_the_clip(segmentor_keep, tmp_path, monkeypatch):
    from animeface_seg.batch.discovery import Job
    from animeface_seg.batch.inputs import ANIMATION
    from animeface_seg.batch.kinds import select
    from animeface_seg.batch.pipeline import process
    from animeface_seg.batch.settings import RunSettings
    from animeface_seg.batch.spec import OutputSpec
    from animeface_seg.batch.stages import Stages

    count = 16
    gif = write_animation(tmp_path / "long.gif", noise_frames(count, (32, 32), seed=12), loop=0)
    lock = threading.Lock()
    state = {"decoded": 0, "written": 0, "most": 0, "reported": 0}
    clip_items, write = Stages.clip_items, Stages.write

    def counted_items(self, clip, tally):
        for item in clip_items(self, clip, tally):
            with lock:
                state["decoded"] += 1
                state["most"] = max(state["most"], state["decoded"] - state["written"])
            yield item

    def counted_write(self, item, result):
        try:
            return write(self, item, result)
        finally:
            with lock:
                state["written"] += 1

    class Progress:
        opened = None

        def clip_opened(self, job, frames):
            self.opened = frames

        def frame_done(self, job, written):
            state["reported"] += written

    monkeypatch.setattr(Stages, "clip_items", counted_items)
    monkeypatch.setattr(Stages, "write", counted_write)
    progress = Progress()
    spec = OutputSpec(tmp_path / "out", select(remove_background=False))
    settings = RunSettings.decide(spec, "cpu", batch_size=1, workers=1)
    outcomes = list(process([Job(gif, PurePath("long"), kind=ANIMATION)], segmentor_keep, settings, progress))
    assert [(o.status, o.frames) for o in outcomes] == [("ok", count)], outcomes[0].error
    assert progress.opened == count and state["reported"] == count
    # at most 3 frames waiting for the networks (decode slots), 1 on them, 3 being written (write slots)
    assert state["most"] <= 7 < count, state


def decoded(path: Path, layout: str) -> tuple[list[float], list[np.ndarray]]:
    """Every frame's time and pixels of an encoded video."""
    with av.open(str(path)) as container:
        frames = [(frame.time, frame.to_ndarray(format=layout)) for frame in container.decode(video=0)]
    return [time for time, _ in frames], [array for _, array in frames]


def test_encoded_videos_round_trip_losslessly_with_source_times_and_resume(run_cli, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_video(folder / "clip.mp4", noise_frames(3, seed=13), fps=5)
    out = tmp_path / "out"
    args = (str(folder), "-o", str(out), "--encode", "both", "--cutout", "--class-masks", "hair", "--json",
            "--device", "cpu")
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    record = records(result.stdout)["clip.mp4"]
    assert record["outputs"] == {**{kind: str(out / "clip") for kind in ("map", "mask", "cutout", "hair")},
                                 "map_video": str(out / "clip.mkv"), "mask_video": str(out / "clip_mask.mkv"),
                                 "cutout_video": str(out / "clip_cutout.webm"), "hair_video": str(out / "clip_hair.mkv")}
    for video, suffix, layout in (("clip.mkv", "", "rgb24"), ("clip_mask.mkv", "_mask", "gray"),
                                  ("clip_hair.mkv", "_hair", "gray")):
        times, arrays = decoded(out / video, layout)
        assert times == pytest.approx([0.0, 0.2, 0.4])
        reader = read_rgb if layout == "rgb24" else read_gray
        frames = [reader(out / "clip" / f"{n:06d}{suffix}.png") for n in (1, 2, 3)]
        assert all(np.array_equal(a, b) for a, b in zip(arrays, frames)), video
    with av.open(str(out / "clip_cutout.webm")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "vp9" and stream.metadata.get("alpha_mode") == "1"
        assert sum(1 for _ in container.decode(stream)) == 3
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left

    videos = sorted(out.glob("clip*.*"))
    times = {path: path.stat().st_mtime_ns for path in videos}
    again = run_cli(*args, "--skip-existing")
    assert records(again.stdout)["clip.mp4"]["status"] == "skipped", again.stderr
    assert {path: path.stat().st_mtime_ns for path in videos} == times

    only = tmp_path / "only"
    result = run_cli(str(folder), "-o", str(only), "--encode", "video", "--keep-background", "--frame-step", "2",
                     "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in only.iterdir() if p.suffix != ".jsonl") == ["clip.mkv"]  # the manifest aside
    times, arrays = decoded(only / "clip.mkv", "rgb24")
    assert times == pytest.approx([0.0, 0.4]) and len(arrays) == 2


def test_encoded_videos_take_their_place_in_the_output_plan(run_cli, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_animation(folder / "clip.gif", noise_frames(2), loop=0)
    write_animation(folder / "clip_mask.gif", noise_frames(2), loop=0)  # its map video is clip's mask video
    result = run_cli(str(folder), "-o", str(tmp_path / "out"), "--encode", "video")
    assert result.returncode == 2 and "clip_mask.mkv" in result.stderr
    assert not (tmp_path / "out").exists()
