#!/usr/bin/env python3
"""Frames per second of animeface-seg on a video clip, against splitting the clip into PNGs first.

Makes a SECONDS-long SIZE x SIZE H.264 clip at FPS frames per second (a figure moving over a
gradient, with noise), then measures:
  (d) decoding alone: every frame through ``engine.frames`` as the command reads clips (frames/s),
  (e) the command on the clip itself, ``animeface-seg clip.mp4 -o OUT`` (frames/s over the whole
      process, start-up included; peak RSS),
  (f) the usual workaround: decode the clip to PNGs with PyAV, then run the command on that folder
      (frames/s over both steps together; each step's time; peak RSS of the command),
and prints a table with the ratio (e)/(f). Both command runs check that every frame was written.

    python benchmarks/clips.py --device cpu --json docs/clips-cpu.json
    python benchmarks/clips.py --seconds 1 --size 256 --keep-background     # a quick look

Without --weights-dir it uses seeded stand-in weights from shared/reference (same architecture,
same cost as the real ones). Record the machine's load (``uptime``) beside any figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from animeface_seg.engine.frames import open_frames
from throughput import stand_in_weights


def make_clip(path: Path, seconds: float, size: int, fps: int) -> int:
    """An H.264 clip (MPEG-4 Part 2 where PyAV lacks libx264) of a disc moving over a gradient; its frame count."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size]
    background = np.stack([x * 200 // size + 30, y * 180 // size + 40, np.full_like(x, 150)], -1).astype(np.int16)
    count = round(seconds * fps)
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(count):
            cx, cy = size * (0.3 + 0.4 * i / max(count - 1, 1)), size * 0.5
            disc = (x - cx) ** 2 + (y - cy) ** 2 < (size * 0.2) ** 2
            frame = np.where(disc[..., None], np.array([240, 210, 190], np.int16), background)
            frame = (frame + rng.integers(-6, 7, frame.shape)).clip(0, 255).astype(np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return count


def decode_rate(path: Path) -> float:
    """(d) frames/s of decoding the clip to RGB arrays, one at a time."""
    start = time.perf_counter()
    with open_frames(path) as clip:
        count = sum(1 for _ in clip)
    return count / (time.perf_counter() - start)


def split_to_pngs(path: Path, folder: Path) -> float:
    """Decode the clip to numbered PNGs with PyAV (the workaround's first step); seconds taken."""
    folder.mkdir(parents=True)
    start = time.perf_counter()
    with av.open(str(path)) as container:
        for number, frame in enumerate(container.decode(video=0), 1):
            frame.to_image().save(folder / f"{number:06d}.png")
    return time.perf_counter() - start


def run_command(target: Path, out: Path, weights: Path, args: argparse.Namespace) -> dict:
    """The command on ``target`` as its own process: wall seconds and peak RSS."""
    cmd = [sys.executable, "-m", "animeface_seg", str(target), "-o", str(out), "--weights-dir", str(weights),
           "--device", args.device] + (["--keep-background"] if args.keep_background else [])
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    stderr = proc.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"command failed on {target}:\n{stderr}")
    return {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024}


def written_maps(folder: Path) -> int:
    """Frame maps (``000001.png``, no kind suffix) below ``folder``."""
    return sum(1 for path in folder.rglob("*.png") if path.stem.isdigit())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--size", type=int, default=512, help="width and height of the clip")
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--keep-background", action="store_true", help="map only (no mask network)")
    ap.add_argument("--weights-dir", type=Path, help="default: seeded stand-ins from shared/reference")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-clips-"))
    weights = args.weights_dir or stand_in_weights(work / "weights")
    clip = work / "clip.mp4"
    frames = make_clip(clip, args.seconds, args.size, args.fps)

    decoded = decode_rate(clip)
    direct = run_command(clip, work / "out-clip", weights, args)
    split_s = split_to_pngs(clip, work / "pngs")
    folder = run_command(work / "pngs", work / "out-pngs", weights, args)
    for out in ("out-clip", "out-pngs"):
        if written_maps(work / out) != frames:
            raise SystemExit(f"{out}: {written_maps(work / out)} of {frames} frame maps written")

    e_rate = frames / direct["wall_s"]
    f_rate = frames / (split_s + folder["wall_s"])
    figures = {
        "clip": f"{args.seconds:g} s, {args.size}x{args.size}, {args.fps} fps, {frames} frames",
        "device": args.device, "keep_background": args.keep_background,
        "cpu": platform.processor() or platform.machine(), "load_average": os.getloadavg(),
        "d_decode_frames_per_s": decoded,
        "e_clip_frames_per_s": e_rate, "e_wall_s": direct["wall_s"], "e_peak_rss_mb": direct["peak_rss_mb"],
        "f_split_and_folder_frames_per_s": f_rate, "f_split_s": split_s, "f_folder_wall_s": folder["wall_s"],
        "f_peak_rss_mb": folder["peak_rss_mb"], "e_over_f": e_rate / f_rate,
    }
    print(f"clip: {figures['clip']}; device {args.device}; load average {figures['load_average']}")
    print(f"(d) decoding alone            {decoded:8.1f} frames/s")
    print(f"(e) command on the clip       {e_rate:8.2f} frames/s  ({direct['wall_s']:.1f} s, "
          f"peak RSS {direct['peak_rss_mb']:.0f} MB)")
    print(f"(f) PNGs, then the folder     {f_rate:8.2f} frames/s  ({split_s:.1f} s + {folder['wall_s']:.1f} s, "
          f"peak RSS {folder['peak_rss_mb']:.0f} MB)")
    print(f"(e)/(f)                       {e_rate / f_rate:8.2f}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
