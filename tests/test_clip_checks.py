"""Clips trust only what was checked (issue 23): encoded videos hold exactly the frames' pixels or the clip is
refused, resume checks a video's frame selection, frame count and wholeness, every container is resumed,
and the counts of a failed or interrupted clip are the frames really in place. Real clips (PyAV, Pillow),
real networks, a real tmpfs for a full disk, a real process for Ctrl-C."""

from __future__ import annotations

import io
import json
import shutil
import signal
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import cli_command, read_gray, read_rgb, signal_when_written
from test_clips import decoded, noise_frames, records, write_animation, write_video

av = pytest.importorskip("av")


def write_sized_video(path: Path, sizes: list[tuple[int, int]], seed: int = 0) -> Path:
    """A Matroska video of JPEG frames (``sizes``: width, height each), so its frames change size as a camera
    switching resolution does; 10 frames per second."""
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mjpeg", rate=10)
        stream.width, stream.height = sizes[0]
        stream.pix_fmt = "yuvj420p"
        for index, (width, height) in enumerate(sizes):
            data = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (height, width, 3), np.uint8)).save(data, "JPEG", quality=90)
            packet = av.Packet(data.getvalue())
            packet.stream, packet.time_base, packet.is_keyframe = stream, Fraction(1, 1000), True
            packet.pts = packet.dts = index * 100
            container.mux(packet)
    return path


def write_pages(path: Path, sizes: list[tuple[int, int]], seed: int = 0) -> Path:
    """A multi-page TIFF whose pages have ``sizes`` (width, height each)."""
    rng = np.random.default_rng(seed)
    pages = [Image.fromarray(rng.integers(0, 256, (h, w, 3), np.uint8)) for w, h in sizes]
    pages[0].save(path, save_all=True, append_images=pages[1:])
    return path


def packets(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for packet in container.demux(video=0) if packet.size)


def video_tag(path: Path) -> dict:
    with av.open(str(path)) as container:
        return json.loads({k.lower(): v for k, v in container.metadata.items()}["animeface-seg"])


def mtimes(folder: Path) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in folder.rglob("*") if path.is_file() and path.suffix != ".jsonl"}


def test_every_encoded_kind_decodes_to_its_frames_and_the_cutout_alpha_follows_the_mask(run_cli, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_video(folder / "clip.mp4", noise_frames(3, seed=21), fps=5)
    out = tmp_path / "out"
    result = run_cli(str(folder), "-o", str(out), "--encode", "both", "--cutout", "--overlay", "--class-masks",
                     "hair,face", "--json", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert records(result.stdout)["clip.mp4"]["frames"] == 3
    lossless = {"clip.mkv": ("", "rgb24"), "clip_mask.mkv": ("_mask", "gray"), "clip_overlay.mkv": ("_overlay", "rgb24"),
                "clip_hair.mkv": ("_hair", "gray"), "clip_face.mkv": ("_face", "gray")}
    for video, (suffix, layout) in lossless.items():
        _, arrays = decoded(out / video, layout)
        reader = read_rgb if layout == "rgb24" else read_gray
        assert len(arrays) == 3, video
        for number, array in enumerate(arrays, 1):
            assert np.array_equal(array, reader(out / "clip" / f"{number:06d}{suffix}.png")), (video, number)
    with av.open(str(out / "clip_cutout.webm")) as container:  # FFmpeg's own vp9 decoder drops the alpha plane
        decoder = av.CodecContext.create("libvpx-vp9", "r")
        frames = [frame for packet in container.demux(video=0) if packet.size for frame in decoder.decode(packet)]
    assert len(frames) == 3
    for number, frame in enumerate(frames, 1):
        alpha = frame.to_ndarray(format="rgba")[..., 3].astype(int)
        mask = read_gray(out / "clip" / f"{number:06d}_mask.png").astype(int)
        assert mask.std() > 20  # a mask with real structure, so a dropped or constant alpha cannot pass
        assert np.abs(alpha - mask).mean() < 6, number
        with Image.open(out / "clip" / f"{number:06d}_cutout.png") as png:
            assert np.array_equal(np.array(png)[..., 3], mask.astype(np.uint8))


def test_a_clip_whose_frames_change_size_is_refused_alone_never_rescaled(run_cli, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    sizes = [(40, 32), (40, 32), (32, 40)]
    write_pages(folder / "pages.tiff", sizes, seed=22)
    write_sized_video(folder / "camera.mkv", sizes, seed=23)
    write_animation(folder / "fine.gif", noise_frames(2, (40, 32), seed=24), loop=0)
    out = tmp_path / "both"
    result = run_cli(str(folder), "-o", str(out), "--encode", "both", "--keep-background", "--json", "--device", "cpu")
    assert result.returncode == 1, result.stderr
    found = records(result.stdout)
    for name in ("pages.tiff", "camera.mkv"):
        record, stem = found[name], Path(name).stem
        assert (record["status"], record["frames"], record["outputs"]) == ("error", 2, {}), record
        assert record["error"] == ("frame 3 is 32x40, the clip's first frame 40x32: a video holds one frame size, so "
                                   "this clip cannot be encoded without rescaling; 2 frames written, no video written "
                                   "(write its frames as PNGs with --encode frames)"), record["error"]
        assert sorted(p.name for p in (out / stem).iterdir()) == ["000001.png", "000002.png"]
        assert not (out / f"{stem}.mkv").exists()
    assert (found["fine.gif"]["status"], found["fine.gif"]["frames"]) == ("ok", 2)
    _, arrays = decoded(out / "fine.mkv", "rgb24")
    assert [np.array_equal(a, read_rgb(out / "fine" / f"{n:06d}.png")) for n, a in enumerate(arrays, 1)] == [True] * 2

    only = tmp_path / "video"
    result = run_cli(str(folder), "-o", str(only), "--encode", "video", "--keep-background", "--json", "--device", "cpu")
    found = records(result.stdout)
    for name in ("pages.tiff", "camera.mkv"):
        assert (found[name]["status"], found[name]["frames"]) == ("error", 0)
        assert found[name]["error"].endswith("without rescaling; no video written (write its frames as PNGs with "
                                             "--encode frames)")
    assert sorted(p.name for p in only.iterdir() if p.suffix != ".jsonl") == ["fine.mkv"]

    frames = tmp_path / "frames"
    result = run_cli(str(folder / "pages.tiff"), "-o", str(frames), "--keep-background", "--json", "--device", "cpu")
    assert (records(result.stdout)["pages.tiff"]["frames"], result.returncode) == (3, 0), result.stderr
    assert [read_rgb(frames / "pages" / f"{n:06d}.png").shape[:2] for n in (1, 2, 3)] == [(32, 40), (32, 40), (40, 32)]


def test_resume_remakes_a_video_made_with_another_frame_selection(run_cli, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_animation(folder / "anim.gif", noise_frames(5, (32, 32), seed=25), loop=0)
    out = tmp_path / "out"
    base = (str(folder), "-o", str(out), "--encode", "video", "--keep-background", "--json", "--device", "cpu")
    assert run_cli(*base, "--frame-step", "2").returncode == 0
    assert packets(out / "anim.mkv") == 3 and video_tag(out / "anim.mkv")["frame_step"] == 2

    again = run_cli(*base, "--skip-existing")
    record = records(again.stdout)["anim.gif"]
    assert (record["status"], record["frames"]) == ("ok", 5), again.stderr
    assert record["reason"] == "anim.mkv was made with other settings: frame_step 2 (now 1)"
    assert packets(out / "anim.mkv") == 5 and video_tag(out / "anim.mkv")["frame_step"] == 1

    times = mtimes(out)
    done = run_cli(*base, "--skip-existing")
    assert {k: records(done.stdout)["anim.gif"][k] for k in ("status", "reason", "frames")} == {
        "status": "skipped", "reason": "already done", "frames": 5}
    assert mtimes(out) == times


def test_resume_remakes_a_video_holding_other_frames_or_cut_short(run_cli, tmp_path):
    frames = noise_frames(4, (32, 32), seed=26)
    for name, count in (("short", 2), ("in", 4)):
        (tmp_path / name).mkdir()
        write_animation(tmp_path / name / "anim.gif", frames[:count], loop=0)
    args = ("--encode", "video", "--keep-background", "--json", "--device", "cpu", "--skip-existing")
    assert run_cli(str(tmp_path / "short"), "-o", str(tmp_path / "short_out"), *args).returncode == 0
    out = tmp_path / "out"
    assert run_cli(str(tmp_path / "in"), "-o", str(out), *args).returncode == 0
    _, whole = decoded(out / "anim.mkv", "rgb24")
    assert len(whole) == 4

    shutil.copyfile(tmp_path / "short_out" / "anim.mkv", out / "anim.mkv")  # same settings record, 2 frames
    result = run_cli(str(tmp_path / "in"), "-o", str(out), *args)
    record = records(result.stdout)["anim.gif"]
    assert (record["status"], record["frames"], record["reason"]) == (
        "ok", 4, "anim.mkv holds 2 frames, this run writes 4"), result.stderr
    _, arrays = decoded(out / "anim.mkv", "rgb24")
    assert len(arrays) == 4 and all(np.array_equal(a, b) for a, b in zip(arrays, whole))

    data = (out / "anim.mkv").read_bytes()
    (out / "anim.mkv").write_bytes(data[: len(data) * 3 // 5])  # a copy cut short
    result = run_cli(str(tmp_path / "in"), "-o", str(out), *args)
    record = records(result.stdout)["anim.gif"]
    assert (record["status"], record["frames"]) == ("ok", 4), (record, result.stderr)
    assert record["reason"].startswith("anim.mkv ")
    _, arrays = decoded(out / "anim.mkv", "rgb24")
    assert len(arrays) == 4 and all(np.array_equal(a, b) for a, b in zip(arrays, whole))


def test_encode_both_resumes_every_container(run_cli, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_video(folder / "a.mkv", noise_frames(2, seed=27))
    write_video(folder / "b.webm", noise_frames(2, seed=28), codec="libvpx-vp9")
    write_video(folder / "c.mp4", noise_frames(2, seed=29))
    write_video(folder / "d.avi", noise_frames(2, seed=30), codec="mpeg4")
    write_animation(folder / "e.gif", noise_frames(2, seed=31), loop=0)
    out = tmp_path / "out"
    args = (str(folder), "-o", str(out), "--encode", "both", "--keep-background", "--json", "--device", "cpu",
            "--skip-existing")
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    assert {name: r["frames"] for name, r in records(first.stdout).items()} == dict.fromkeys(
        ("a.mkv", "b.webm", "c.mp4", "d.avi", "e.gif"), 2)
    times = mtimes(out)
    assert len(times) == 5 * 3  # two frames and a video each
    again = run_cli(*args)
    assert {name: (r["status"], r["reason"], r["frames"]) for name, r in records(again.stdout).items()} == dict.fromkeys(
        ("a.mkv", "b.webm", "c.mp4", "d.avi", "e.gif"), ("skipped", "already done", 2))
    assert mtimes(out) == times


@pytest.fixture
def small_disk(tmp_path):
    """A 224 KB tmpfs: room for a few frames of a clip, not for all of them or its videos."""
    mount = tmp_path / "out" / "disk"
    mount.mkdir(parents=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=224k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs here (the test needs root): {done.stderr.decode()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.parametrize("encode", ["video", "both"])
def test_a_full_disk_counts_only_the_frames_really_in_place(run_cli, small_disk, tmp_path, encode):
    (tmp_path / "in" / "disk").mkdir(parents=True)
    write_animation(tmp_path / "in" / "disk" / "clip.gif", noise_frames(4, (160, 120), seed=32), loop=0)
    out = small_disk.parent  # OUT/disk, where the clip's outputs go, is the small disk
    result = run_cli(str(tmp_path / "in"), "-o", str(out), "--encode", encode, "--overlay", "--cutout", "--json",
                     "--device", "cpu")
    assert result.returncode == 1, result.stderr
    record = records(result.stdout)["clip.gif"]
    assert record["status"] == "error" and "No space left on device" in record["error"], record
    left = sorted(p.name for p in small_disk.rglob("*") if p.is_file())
    assert not [name for name in left if name.startswith(".") or name.endswith((".mkv", ".webm"))], left
    whole = [n for n in range(1, 5) if all((small_disk / "clip" / f"{n:06d}{s}.png").is_file()
                                            for s in ("", "_mask", "_cutout", "_overlay"))]
    if encode == "video":
        assert (record["frames"], left) == (0, [])
        assert record["error"].endswith("; no video written")
    else:
        assert whole == list(range(1, len(whole) + 1)) and len(left) == 4 * len(whole), left
        assert record["frames"] == len(whole) < 4
        assert record["error"].endswith(f"; {len(whole)} frame{'s' * (len(whole) != 1)} written, no video written")


@pytest.mark.parametrize("encode", ["frames", "video"])
def test_ctrl_c_counts_the_frames_of_the_cut_clip_that_are_in_place(weights_dir, tmp_path, encode):
    (tmp_path / "in").mkdir()
    write_animation(tmp_path / "in" / "clip.gif", noise_frames(12, (32, 32), seed=33), loop=0)
    out = tmp_path / "out"
    args = [*cli_command(), str(tmp_path / "in"), "-o", str(out), "--keep-background", "--device", "cpu",
            "--encode", encode, "--weights-dir", str(weights_dir)]
    pattern = "clip/000002.png" if encode == "frames" else ".clip.mkv.animeface-seg-*.tmp"  # the video begun
    proc = signal_when_written(args, out, pattern, signal.SIGINT)
    assert proc.returncode == 130, proc.stderr
    summary = proc.stderr.strip().splitlines()[-1]
    if encode == "video":  # a video cut short is dropped: nothing of the clip is in place
        assert sorted(p.name for p in out.rglob("*") if p.suffix != ".jsonl") == [], list(out.rglob("*"))
        assert summary.endswith("; interrupted, 1 clip cut short (0 frames in place), 0 not started"), summary
        return
    whole = sorted(p.name for p in (out / "clip").iterdir())
    assert whole == [f"{n:06d}.png" for n in range(1, len(whole) + 1)] and 2 <= len(whole) < 12, whole
    assert summary.startswith(f"processed 0 ({len(whole)} frames of clips), skipped 0, failed 0 in "), summary
    assert summary.endswith(f"; interrupted, 1 clip cut short ({len(whole)} frames in place), 0 not started"), summary


@pytest.fixture(scope="module")
def finished_clips(run_cli, tmp_path_factory):
    """A 2-frame clip run to the end as frames and as a video, with the settings the resumes below change."""
    root = tmp_path_factory.mktemp("finished")
    (root / "in").mkdir()
    write_animation(root / "in" / "anim.gif", noise_frames(2, (32, 32), seed=34), loop=0)
    for encode in ("frames", "video"):
        result = run_cli(str(root / "in"), "-o", str(root / encode), "--encode", encode, "--keep-background",
                         "--device", "cpu")
        assert result.returncode == 0, result.stderr
    return root


@pytest.fixture(scope="module")
def other_weights(reference, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("other-weights")
    subprocess.run([sys.executable, str(reference / "make_checkpoints.py"), str(folder),
                    "--seed", "1"], check=True, capture_output=True)
    return folder


@pytest.mark.parametrize("encode", ["frames", "video"])
@pytest.mark.parametrize("change, reason", [
    (("--size", "processed"), "size 'original' (now 'processed')"),
    (("--class-masks", "hair"), None),
    (("--layout", "by-kind"), None),
    (("--runtime", "torch", "--weights-dir", "OTHER"), "other UNet weights"),
])
def test_a_clip_resumed_with_a_changed_setting_is_made_again(run_cli, finished_clips, other_weights, tmp_path,
                                                              encode, change, reason):
    out = tmp_path / "out"
    shutil.copytree(finished_clips / encode, out)
    own_weights = "OTHER" not in change
    change = tuple(str(other_weights) if arg == "OTHER" else arg for arg in change)
    result = run_cli(str(finished_clips / "in"), "-o", str(out), "--encode", encode, "--keep-background",
                     "--skip-existing", "--json", "--device", "cpu", *change, weights=own_weights)
    record = records(result.stdout)["anim.gif"]
    assert (record["status"], record["frames"]) == ("ok", 2), (record, result.stderr)
    if reason is not None:
        made = "anim.mkv" if encode == "video" else "000001.png"
        assert record["reason"] == f"{made} was made with other settings: {reason}"
    again = run_cli(str(finished_clips / "in"), "-o", str(out), "--encode", encode, "--keep-background",
                    "--skip-existing", "--json", "--device", "cpu", *change, weights=own_weights)
    assert records(again.stdout)["anim.gif"]["status"] == "skipped"
